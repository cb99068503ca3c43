"""Exit statuses of every `tandem` command: the one place they are defined (README's table)."""

OK = 0
CHECK_FAILED = 1  # the data or the candidate failed a check: anomalies, not blessed, a gate
BAD_INPUT = 2  # bad input or config, reported in one line before any work starts
UNEXPECTED = 3  # anything else: one line, `--verbose` shows the trace
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
