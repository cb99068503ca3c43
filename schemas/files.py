"""Files every floor writes and reads: one atomic writer."""

from __future__ import annotations

import os


def atomic_write(path: str, data: str | bytes, *, encoding: str | None = None) -> None:
    """Write `data` to `path` so a reader sees the old file or the whole new one, never half.

    The data goes to a temporary file beside `path` (same directory, so the rename stays on
    one filesystem), is flushed and fsynced, then `os.replace`s the target. If anything
    raises, the temporary file is removed and the target is left as it was.

    `str` is written in text mode with `encoding` (None: the locale's, as a bare `open(p, "w")`
    does), `bytes` as they are. The file is created as `open` creates one (0o666 less the
    umask), so its mode is the one a plain `open(path, "w")` would have given.
    """
    text = isinstance(data, str)
    tmp = f"{path}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w" if text else "wb", encoding=encoding if text else None) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
