"""Beam in this process: a cheaper path through Beam's pickler.

Every Beam job tandem runs in process (the pipeline's components on the DirectRunner, the
monitor, the replay) ships each DoFn through Beam's dill pickler. On the worker side Beam
loads each DoFn, pickles it again with its windowing, and loads that: on a 500-row pipeline
run about 8,000 bz2 decompressions and 4,700 level-9 compressions of about 1,100 distinct
payloads. Each of those pickler calls also sets the `dill` logger's level twice, and
`Logger.setLevel` clears the level cache of every logger in the process (thousands once
TensorFlow is loaded).

`quicker_pickling` keeps the pickler's bytes exactly as they were and only stops paying twice:
- bz2 compression and decompression, as Beam's pickler calls them, are remembered by content
  (a SHA-1 of the input) in a bounded cache: the same input gives the same bytes;
- dill's trace switch sets the logger's level only when the level changes.

Worker processes (`multi_processing`, a portable runner's workers) are not touched: they run
Beam's own code, and read the same bytes. bench/beam_pickling.py measures the difference
(docs/benchmarks.md, "Pipeline scale").
"""

from __future__ import annotations

import bz2
import collections
import hashlib
import logging
import threading
from collections.abc import Callable

# Remembered bytes, inputs and outputs counted, per cache: a run's distinct payloads fit many
# times over (about 40 MB on the listening pipeline); past it, the oldest are dropped.
CACHE_BYTES = 256 * 2**20


class RememberedBytes:
    """`fn(data, *args, **kwargs) -> bytes` remembered by the SHA-1 of `data` and the arguments,
    the least recently used dropped past `max_bytes`; thread-safe."""

    def __init__(self, fn: Callable[..., bytes], max_bytes: int = CACHE_BYTES):
        self.fn, self.max_bytes = fn, max_bytes
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __call__(self, data, *args, **kwargs) -> bytes:
        key = (hashlib.sha1(data).digest(), len(data), args, tuple(sorted(kwargs.items())))
        with self._lock:
            out = self._items.get(key)
            if out is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return out
        out = self.fn(data, *args, **kwargs)
        size = len(out) + 64
        with self._lock:
            self.misses += 1
            if size <= self.max_bytes and key not in self._items:
                self._items[key] = out
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, dropped = self._items.popitem(last=False)
                    self._bytes -= len(dropped) + 64
        return out


class _RememberingBz2:
    """What Beam's dill pickler sees as its `bz2` module."""

    def __init__(self):
        self.compress = RememberedBytes(bz2.compress)
        self.decompress = RememberedBytes(bz2.decompress)

    def __getattr__(self, name: str):
        return getattr(bz2, name)


def _quiet_trace(log: logging.Logger) -> Callable[[bool], None]:
    """dill's `_trace(boolean)`: the `dill` logger at INFO while tracing, else WARN; the
    level set only when it changes."""

    def _trace(boolean: bool) -> None:
        level = logging.INFO if boolean else logging.WARN
        if log.level != level:
            log.setLevel(level)

    _trace._tandem = True  # type: ignore[attr-defined]
    return _trace


def quicker_pickling() -> None:
    """Installs both (module docstring) in this process; idempotent."""
    import dill._dill
    from apache_beam.internal import dill_pickler

    if not isinstance(dill_pickler.bz2, _RememberingBz2):
        dill_pickler.bz2 = _RememberingBz2()
    if not getattr(dill._dill._trace, "_tandem", False):
        dill._dill._trace = _quiet_trace(dill._dill.log)


def pipeline_options(beam_args: list[str] | None):
    """The options of a Beam job tandem runs itself (the monitor's, the replay's): `beam_args`
    as given, by default the DirectRunner in this process; with `quicker_pickling` and TFDV's
    histograms from arrays (components/histograms.py) installed."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from tandem.components import histograms

    quicker_pickling()
    histograms.install()
    return PipelineOptions(beam_args or ["--direct_running_mode=in_memory"])
