"""Exit statuses of every `tandem` command and the error that means bad input: the one place
they are defined (README's table).

They sit on the ground floor (schemas/) because every floor raises bad input: a module's
own error class subclasses BadInputError, and the CLI maps it, once, to BAD_INPUT."""

OK = 0
CHECK_FAILED = 1  # the data or the candidate failed a check: anomalies, not blessed, a gate
BAD_INPUT = 2  # bad input or config, reported in one line before any work starts
UNEXPECTED = 3  # anything else: one line, `--verbose` shows the trace
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class BadInputError(ValueError):
    """Input or config a command cannot use; the message names it in one line. Any command
    that lets one reach the CLI exits with BAD_INPUT."""
