"""The command line's one error: bad input named in one line, exit status 2.

Modules below the CLI raise their own subclasses of `schemas.exit_status.BadInputError`; this
one is for what only the command line can get wrong (a flag missing, a path of the wrong kind)."""

from tandem.schemas.exit_status import BadInputError


class CommandError(BadInputError):
    """An error reported as one line and exit status 2."""
