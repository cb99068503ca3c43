"""Gateway: which feature-source snapshot a gateway config decorates from, and its history.

`tandem features promote --gateway CONFIG --to SRC` checks the snapshot, records it in a small
history file beside the config, and sends SIGHUP to the gateways running that config; each
switches to the snapshot between requests (`Gateway.switch_source`). `rollback` makes the
previous entry current again the same way. A gateway that starts later reads the history too,
so a restart keeps the promoted snapshot.

    <config>.sources.json    {"current": 2, "history": [{"source", "version", "at"}, ...]}
    <config>.gateways/<pid>  one empty file per running gateway process (removed at exit)

The history holds the last HISTORY_SIZE entries; its first entry is the config's own source,
so the first promote can be rolled back. It is written whole and atomically
(schemas/files.py) under a lock file that exists only while it is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

from tandem.schemas.files import atomic_write
from tandem.serving.gateway.sources import SourceError

HISTORY_SIZE = 20


def history_path(config_path: str) -> str:
    return f"{config_path}.sources.json"


def registry(config_path: str) -> str:
    return f"{config_path}.gateways"


def read_history(config_path: str) -> dict:
    path = history_path(config_path)
    try:
        with open(path) as f:
            history = json.load(f)
    except FileNotFoundError:
        return {"current": -1, "history": []}
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot read the snapshot history {path}: {e}") from None
    return history


def current(config_path: str) -> str | None:
    """The promoted snapshot of this config, None when none was promoted."""
    history = read_history(config_path)
    if history["current"] < 0:
        return None
    return history["history"][history["current"]]["source"]


@contextlib.contextmanager
def _locked(config_path: str):
    lock = f"{history_path(config_path)}.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise SourceError(f"another promote or rollback holds {lock}; if none runs, "
                          "remove it") from None
    os.close(fd)
    try:
        yield
    finally:
        os.remove(lock)


def _entry(spec: str, version: str) -> dict:
    return {"source": spec, "version": version,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def record_promotion(config_path: str, spec: str, version: str, config_spec: str,
                     config_version: str) -> dict:
    """Make `spec` (already checked) the current snapshot; the entry written."""
    with _locked(config_path):
        history = read_history(config_path)
        entries = history["history"][:history["current"] + 1]
        if not entries:
            entries = [_entry(config_spec, config_version)]
        entries.append(_entry(spec, version))
        entries = entries[-HISTORY_SIZE:]
        atomic_write(history_path(config_path), json.dumps(
            {"current": len(entries) - 1, "history": entries}, indent=1) + "\n")
        return entries[-1]


def record_rollback(config_path: str) -> dict:
    """Make the entry before the current one current; the entry now current."""
    with _locked(config_path):
        history = read_history(config_path)
        if history["current"] < 1:
            raise SourceError(f"nothing to roll back to: {history_path(config_path)} "
                              f"{'holds no promotion' if history['current'] < 0 else 'is at its first entry'}")
        history["current"] -= 1
        atomic_write(history_path(config_path), json.dumps(history, indent=1) + "\n")
        return history["history"][history["current"]]


def register(config_path: str, pid: int | None = None) -> str:
    """Announce a running gateway of this config (promote signals it); the file to remove."""
    directory = registry(config_path)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, str(pid or os.getpid()))
    with open(path, "w"):
        pass
    return path


def signal_gateways(config_path: str) -> list[int]:
    """SIGHUP to every registered gateway of this config that still runs; stale entries
    (a gateway killed without its clean-up) are removed."""
    directory = registry(config_path)
    signalled = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if not name.isdigit():
            continue
        pid = int(name)
        if not _runs_gateway(pid):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))
            continue
        os.kill(pid, signal.SIGHUP)
        signalled.append(pid)
    return signalled


def _runs_gateway(pid: int) -> bool:
    """Whether `pid` is still a gateway: the pid of a gateway killed without its clean-up
    may since belong to another process, which SIGHUP would end."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: trust the registry
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return b"serve" in argv and b"gateway" in argv
