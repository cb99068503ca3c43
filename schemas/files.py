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


# Is this file GZIP? The package decides it two ways, and both are kept so no reader changes
# what it reads: by name (a `.gz` suffix) for the TFRecord readers (trainer, model checks,
# preflight, labels, traffic, the loop's request records, the monitor's Beam read), by the
# first bytes for request-log chunks (plain TF Serving warmup files share the reader),
# explain's record and the loop's own-data CSV. The two differ on a `.gz` file that is not
# GZIP and on a GZIP file without the suffix.
GZIP_MAGIC = b"\x1f\x8b"


def gzip_by_name(path: str) -> bool:
    """GZIP by the file's suffix (`.gz`), whatever its bytes are."""
    return path.endswith(".gz")


def gzip_by_magic(head: bytes) -> bool:
    """GZIP by the file's first bytes (the GZIP magic number), whatever its name is."""
    return head[:2] == GZIP_MAGIC


def tfrecord_compression(path: str) -> str:
    """The `compression_type` tf.data/tf.io take for a TFRecord file, decided by its name."""
    return "GZIP" if gzip_by_name(path) else ""
