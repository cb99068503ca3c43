"""Monitor: the one error for input the monitor cannot use, raised by each of its stages."""

from __future__ import annotations

from tandem.schemas.exit_status import BadInputError


class MonitorError(BadInputError):
    """Input the monitor cannot use: the message names it (exit status 2)."""
