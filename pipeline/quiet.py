"""CLI output: keeps known, harmless library noise off the terminal of a non-verbose run.

Libraries log through Python's root logger, and Beam calls `logging.basicConfig()` whenever a
pipeline is built, which prints every record that reaches the root as `INFO:absl:...`. The
runner routes absl's records while a pipeline runs, but a command that runs two pipelines (the
loop: v1, then v2 from the log) logs between them too. `quiet_root_logger` gives the root its
handler first, so basicConfig adds none, and that handler shows errors only.

TensorFlow's `AtomicFunction.__del__` raises a TypeError when it runs during interpreter
teardown (its refcount table is already None). Python prints that as an "Exception ignored
in ... Traceback ..." block, which reads like a crash. It happens in two places:
- in Beam's worker processes as they exit, where no hook inside this process can catch it:
  stderr itself (file descriptor 2, which the workers inherit) is passed through a filter that
  drops exactly those blocks, everything else reaching the terminal unchanged (`--verbose`
  turns the filter off);
- in this process, after the command has returned and the filter is gone, for the functions a
  library still holds when the interpreter clears its modules: `guard_tensorflow_teardown`
  makes `__del__` skip the bookkeeping whose table is already gone, and only then.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading

NOISE_START = b"Exception ignored in: <function AtomicFunction.__del__"
NOISE_END = b"TypeError: 'NoneType' object is not subscriptable"
MAX_BLOCK_LINES = 8  # a block longer than this is not the known one: pass it through


class _RootHandler(logging.StreamHandler):
    """The root logger's handler in a non-verbose run: errors only, on stderr. A record of a
    bad input raised inside a Beam transform (Beam logs the exception with its traceback
    before it reaches the command) is left out: the command says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from tandem.schemas.exit_status import BadInputError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadInputError):
            return False
        return super().filter(record)


def quiet_root_logger() -> None:
    """Records that reach the root logger print only from ERROR up (`--verbose` skips
    this). Idempotent: one handler however often it is called."""
    root = logging.getLogger()
    if any(isinstance(h, _RootHandler) for h in root.handlers):
        return
    handler = _RootHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s"))
    root.addHandler(handler)


ATOMIC_FUNCTION = "tensorflow.python.eager.polymorphic_function.atomic_function"


def guard_tensorflow_teardown() -> None:
    """At exit (before the interpreter clears modules), if TensorFlow was loaded: a function
    deleted once TensorFlow's refcount table is gone (None) is let go quietly. Any other
    error in `AtomicFunction.__del__` still shows."""
    atexit.register(_guard_atomic_function)


def _guard_atomic_function() -> None:
    module = sys.modules.get(ATOMIC_FUNCTION)
    cls = getattr(module, "AtomicFunction", None)
    original = getattr(cls, "__del__", None)
    if original is None or getattr(original, "tandem_guarded", False):
        return
    namespace = module.__dict__

    def __del__(self):  # noqa: N807 - replaces the class's own finalizer
        if namespace.get("RUNTIME_FUNCTION_REFS") is None:
            return  # module teardown: the table this would update no longer exists
        original(self)

    __del__.tandem_guarded = True
    cls.__del__ = __del__


class NoiseDropper:
    """Line by line: holds a line that opens a known noise block until the block either ends
    as the known one (dropped) or turns out to be something else (passed through)."""

    def __init__(self) -> None:
        self._block: list[bytes] | None = None

    def feed(self, line: bytes) -> list[bytes]:
        if self._block is None:
            if line.startswith(NOISE_START):
                self._block = [line]
                return []
            return [line]
        self._block.append(line)
        if line.rstrip(b"\n") == NOISE_END:
            self._block = None
            return []
        if len(self._block) > MAX_BLOCK_LINES:
            return self.flush()
        return []

    def flush(self) -> list[bytes]:
        block, self._block = self._block or [], None
        return block


def drop_teardown_noise(lines: list[bytes]) -> list[bytes]:
    """The lines without the known AtomicFunction teardown blocks."""
    dropper = NoiseDropper()
    kept = [out for line in lines for out in dropper.feed(line)]
    return kept + dropper.flush()


class StderrFilter:
    """Routes file descriptor 2 through `drop_teardown_noise` until `close()`."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self._terminal = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read = read_end
        self._thread = threading.Thread(target=self._pump, daemon=True, name="stderr-filter")
        self._thread.start()

    def _pump(self) -> None:
        dropper = NoiseDropper()
        with os.fdopen(self._read, "rb", buffering=0) as pipe:
            partial = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                *complete, partial = (partial + chunk).split(b"\n")
                out = [kept for line in complete for kept in dropper.feed(line + b"\n")]
                self._write(b"".join(out))
            self._write(b"".join(dropper.flush()) + partial)

    def _write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self._terminal, data):]

    def close(self) -> None:
        """Restore fd 2; whatever children still write afterwards goes straight through."""
        sys.stderr.flush()
        os.dup2(self._terminal, 2)  # drops this process's write end of the pipe
        self._thread.join(timeout=2)
