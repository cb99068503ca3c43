"""The request-log contract: the record layout, and the one writer and one reader every stage uses.

A request log is a set of TFRecord files (GZIP, or plain for TF Serving warmup files) of
`tensorflow.serving.PredictionLog`, the format TF Serving uses for warmup and tfx_bsl's
RunInference emits. One record per gateway request:

    log_metadata.model_spec        name, signature and the version that actually served
    log_metadata.timestamp_secs    when the request arrived
    log_metadata.sampling_config   sampling_rate: the share of requests the log keeps
    log_metadata.request_origin    "tandem/1 " + JSON of tandem's fields (below)
    predict_log.request            the decorated request as model A received it
                                   (inputs["examples"]: serialized tf.Examples); Classify and
                                   Regress requests are classify_log / regress_log
    predict_log.response           model A's response (empty when A failed)

tandem's fields: `id` (the request id), `ids` (one per example: the example's own id feature,
or `<id>/<i>`), `role` ("primary", or "shadow" for model B's answer, a second record written
later with the same id, whose request carries no examples), `verdict` (per example, the
`feature:ANOMALY_TYPE` violations the validator found; `rejected` when the request was
refused), `sources` (the version of each feature source that decorated the request), `error`
(`{code, message}` when the model call failed) and `ms` (the model call's latency).
Stock readers see a valid PredictionLog and ignore `request_origin`.

The writer hands every record to the operating system before it returns (a GZIP sync flush
per record), so a killed writer loses no record it acknowledged; a torn last record is what
a kill can leave, and the reader skips and counts it.

One module past 400 lines on purpose: the layout, its one writer and its one reader sit
together so that no stage can read a record differently from how it was written.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import hashlib
import json
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import google_crc32c

from tandem.schemas.contracts import EXAMPLES_INPUT
from tandem.schemas.exit_status import BadInputError
from tandem.schemas.files import gzip_by_magic

META_PREFIX = "tandem/1 "
PRIMARY, SHADOW = "primary", "shadow"
FILE_SUFFIX = ".tfrecord.gz"


class LogError(BadInputError):
    """A path or file that cannot be read as a request log."""


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One TFRecord frame: length, its masked CRC32C, the data, its masked CRC32C."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", _masked_crc(length)), record,
                     struct.pack("<I", _masked_crc(record))))


def sampled(request_id: str, percent: float) -> bool:
    """Whether a request is logged: a hash of its id, so every replica decides alike."""
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < percent / 100 * 2**64


# ---- the record ---------------------------------------------------------------------------

_LOG_FIELD = {"PredictRequest": "predict_log", "ClassificationRequest": "classify_log",
              "RegressionRequest": "regress_log"}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_LOG_NUMBER = {"predict_log": 6, "classify_log": 2, "regress_log": 3}


def make_record(
    *,
    request,
    response=None,
    request_bytes: bytes | None = None,
    response_bytes: bytes | None = None,
    model_name: str,
    model_version: int,
    signature_name: str,
    request_id: str,
    example_ids: list[str],
    role: str = PRIMARY,
    verdict: dict[str, Any] | None = None,
    sources: dict[str, str] | None = None,
    error: tuple[str, str] | None = None,
    latency_ms: float | None = None,
    sampling_rate: float = 1.0,
    timestamp: float | None = None,
) -> bytes:
    """A serialized PredictionLog in tandem's layout (see the module docstring).

    The request and response are embedded as the bytes they already are (`request_bytes`,
    `response_bytes`, else serialized here): a protobuf message field is its bytes, so the
    record is built by concatenation, without copying the examples through messages."""
    from tensorflow_serving.apis import logging_pb2

    meta = logging_pb2.LogMetadata()
    meta.model_spec.name = model_name
    meta.model_spec.signature_name = signature_name
    if model_version:
        meta.model_spec.version.value = model_version
    meta.timestamp_secs = int(timestamp if timestamp is not None else time.time())
    meta.sampling_config.sampling_rate = sampling_rate
    fields: dict[str, Any] = {"id": request_id, "ids": example_ids, "role": role}
    if verdict:
        fields["verdict"] = verdict
    if sources:
        fields["sources"] = sources
    if error:
        fields["error"] = {"code": error[0], "message": error[1]}
    if latency_ms is not None:
        fields["ms"] = round(latency_ms, 3)
    meta.request_origin = META_PREFIX + json.dumps(fields, separators=(",", ":"), sort_keys=True)
    if request_bytes is None:
        request_bytes = request.SerializeToString(deterministic=True)
    if response_bytes is None and response is not None:
        response_bytes = response.SerializeToString(deterministic=True)
    body = _field(1, request_bytes) + (_field(2, response_bytes) if response_bytes else b"")
    return (_field(1, meta.SerializeToString(deterministic=True))
            + _field(_LOG_NUMBER[_LOG_FIELD[type(request).__name__]], body))


@dataclasses.dataclass
class LogRecord:
    """One request as the log holds it, with tandem's fields parsed."""

    log: Any  # prediction_log_pb2.PredictionLog
    request_id: str
    role: str
    example_ids: list[str]
    verdict: dict[str, Any]
    sources: dict[str, str]
    error: dict[str, str] | None
    latency_ms: float | None
    path: str = ""
    position: int = 0  # the record's place in its file

    @property
    def model_name(self) -> str:
        return self.log.log_metadata.model_spec.name

    @property
    def model_version(self) -> int:
        return self.log.log_metadata.model_spec.version.value

    @property
    def timestamp(self) -> int:
        return self.log.log_metadata.timestamp_secs

    @property
    def sampling_rate(self) -> float:
        return self.log.log_metadata.sampling_config.sampling_rate

    def examples(self) -> list[bytes]:
        """The decorated, serialized tf.Examples of the request, in request order."""
        kind = self.log.WhichOneof("log_type")
        if kind == "predict_log":
            inputs = self.log.predict_log.request.inputs
            if EXAMPLES_INPUT in inputs:
                return list(inputs[EXAMPLES_INPUT].string_val)
            if len(inputs) == 1:
                return list(next(iter(inputs.values())).string_val)
            return []
        if kind in ("classify_log", "regress_log"):
            model_input = getattr(self.log, kind).request.input
            which = model_input.WhichOneof("kind")
            if which is None:
                return []
            examples = getattr(model_input, which).examples
            if which == "example_list_with_context":
                # What the model saw: the context's features, then each example's own, as
                # TF Serving merges them.
                context = model_input.example_list_with_context.context.SerializeToString(
                    deterministic=True)
                return [context + e.SerializeToString(deterministic=True) for e in examples]
            return [e.SerializeToString(deterministic=True) for e in examples]
        return []

    def outputs(self) -> Mapping[str, Any]:
        """The logged answer as arrays, one row per example, whichever API was called: a
        Predict response's output tensors as they are; a Classify response as `scores` and
        `classes` [n, k] (and, for two classes, `probabilities` [n], the second class's
        score, as tandem's binary models answer Predict); a Regress response as `outputs`
        [n]. Empty when nothing answered (a refused or failed request)."""
        import numpy as np

        kind = self.log.WhichOneof("log_type")
        if kind == "predict_log":
            tensors = self.log.predict_log.response.outputs
            return LazyArrays(tensors, _make_ndarray) if tensors else {}
        if kind == "classify_log":
            rows = self.log.classify_log.response.result.classifications
            if not rows:
                return {}
            out: dict[str, Any] = {}
            names = [[c.label.encode() for c in row.classes] for row in rows]
            scores = np.array([[c.score for c in row.classes] for row in rows], np.float32)
            if any(any(row) for row in names):
                out["classes"] = np.array(names, dtype=object)
            if "classes" not in out or scores.any():  # a score of 0 is written as none
                out["scores"] = scores
                if scores.ndim == 2 and scores.shape[1] == 2:
                    out["probabilities"] = scores[:, 1]
            return out
        if kind == "regress_log":
            rows = self.log.regress_log.response.result.regressions
            return {"outputs": np.array([r.value for r in rows], np.float32)} if rows else {}
        return {}

    def rejected_indices(self) -> set[int]:
        return set(range(len(self.example_ids))) if self.verdict.get("rejected") else set()


class LazyArrays(Mapping):
    """Outputs by name as arrays, each built from its source by `build` when first read: a
    reader that wants one output does not pay for the others (a classifier's `classes`
    strings)."""

    def __init__(self, sources, build):
        self._sources, self._build, self._arrays = sources, build, {}

    def __getitem__(self, name: str):
        if name not in self._arrays:
            if name not in self._sources:  # reading a protobuf map's absent key adds it
                raise KeyError(name)
            self._arrays[name] = self._build(self._sources[name])
        return self._arrays[name]

    def __contains__(self, name) -> bool:
        return name in self._sources

    def __iter__(self):
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


def _make_ndarray(tensor):
    import tensorflow as tf

    return tf.make_ndarray(tensor)


def parse_record(data: bytes, path: str = "", position: int = 0) -> LogRecord:
    """A LogRecord from a serialized PredictionLog; logs without tandem's fields (TF Serving
    warmup files) get ids from the file and position."""
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog.FromString(data)
    origin = log.log_metadata.request_origin
    fields: dict[str, Any] = {}
    if origin.startswith(META_PREFIX):
        fields = json.loads(origin[len(META_PREFIX):])
    request_id = fields.get("id") or f"{os.path.basename(path)}:{position}"
    record = LogRecord(
        log=log, request_id=request_id, role=fields.get("role", PRIMARY),
        example_ids=fields.get("ids") or [], verdict=fields.get("verdict") or {},
        sources=fields.get("sources") or {}, error=fields.get("error"),
        latency_ms=fields.get("ms"), path=path, position=position,
    )
    if not record.example_ids:
        record.example_ids = [f"{request_id}/{i}" for i in range(len(record.examples()))]
    return record


def log_place(record: LogRecord, example: int) -> tuple[int, str, int, int]:
    """Where the record's `example`-th example sits in the log. An id logged more than once
    (a client's retry, a request sent again) counts once, and every stage keeps the same
    occurrence: the one with the smallest place, i.e. the first logged by time, then (within
    the same second) by file name, record in the file and example in the request. Time comes
    first because replicas write files of their own, and file names order them only by when
    each file was opened."""
    return record.timestamp, record.path, record.position, example


# ---- the writer ---------------------------------------------------------------------------


class LogWriter:
    """Appends records to rotating GZIP TFRecord files under `directory`.

    Each write is compressed with a sync flush and handed to the operating system before it
    returns; files rotate by size and by age; `fsync_interval_s` > 0 also asks the disk to
    keep what was written that often, from a thread of its own. Local paths use the file descriptor directly;
    other `tf.io.gfile` paths (gs://, s3://) are written through gfile and become visible
    when a file rotates. Thread-safe."""

    def __init__(self, directory: str, *, max_bytes: int = 128 << 20, max_age_s: float = 3600,
                 fsync_interval_s: float = 1.0, prefix: str = "requests",
                 replica: str | None = None, level: int = 1):
        self.directory, self.max_bytes, self.max_age_s = directory, max_bytes, max_age_s
        self.fsync_interval_s, self.prefix, self.level = fsync_interval_s, prefix, level
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}"
        self.local = "://" not in directory
        self._lock = threading.Lock()
        self._handle: Any = None
        self._fd = -1
        self._compressor: Any = None
        self._opened = 0.0
        self._bytes = 0
        self._seq = 0
        self.records = self.bytes_written = 0
        self.files: list[str] = []
        self._stop = threading.Event()
        if self.local and fsync_interval_s > 0:
            threading.Thread(target=self._sync_loop, daemon=True, name="log-fsync").start()
        if self.local:
            os.makedirs(directory, exist_ok=True)
        else:
            import tensorflow as tf

            tf.io.gfile.makedirs(directory)

    def _open(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._seq += 1
        name = f"{self.prefix}-{stamp}-{self.replica}-{self._seq:05d}{FILE_SUFFIX}"
        path = os.path.join(self.directory, name) if self.local else f"{self.directory}/{name}"
        if self.local:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        else:
            import tensorflow as tf

            self._handle = tf.io.gfile.GFile(path, "wb")
        self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, 31)
        self._opened = time.monotonic()
        self._bytes = 0
        self.files.append(path)

    def _emit(self, data: bytes) -> None:
        if self.local:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        else:
            self._handle.write(data)
            self._handle.flush()

    def write(self, record: bytes) -> int:
        """Append one serialized record; returns the compressed bytes written."""
        with self._lock:
            now = time.monotonic()
            if self._compressor is not None and (
                self._bytes >= self.max_bytes or now - self._opened >= self.max_age_s
            ):
                self._close_file()
            if self._compressor is None:
                self._open()
            data = self._compressor.compress(frame(record)) + self._compressor.flush(
                zlib.Z_SYNC_FLUSH)
            self._emit(data)
            self._bytes += len(data)
            self.records += 1
            self.bytes_written += len(data)
            return len(data)

    def _sync_loop(self) -> None:
        """fsync every `fsync_interval_s`, off the write path (an fsync can take
        milliseconds; a write only hands bytes to the OS)."""
        while not self._stop.wait(self.fsync_interval_s):
            with self._lock:
                fd = os.dup(self._fd) if self._fd >= 0 else -1
            if fd >= 0:
                try:
                    os.fsync(fd)
                except OSError:
                    pass  # the next rotation's fsync reports a broken disk
                finally:
                    os.close(fd)

    def _close_file(self) -> None:
        self._emit(self._compressor.flush(zlib.Z_FINISH))
        if self.local:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        else:
            self._handle.close()
            self._handle = None
        self._compressor = None

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._compressor is not None:
                self._close_file()


def write_records(path: str, records: Iterable[bytes]) -> None:
    """Write serialized records to one GZIP TFRecord file (tests, tools)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        for record in records:
            f.write(compressor.compress(frame(record)))
        f.write(compressor.flush(zlib.Z_FINISH))


# ---- the reader ---------------------------------------------------------------------------


@dataclasses.dataclass
class ReadStats:
    files: int = 0
    records: int = 0
    torn: int = 0  # a last record cut short (a writer killed mid-write)
    corrupt: int = 0  # a record whose checksum does not match, skipped
    unreadable: int = 0  # records that are not PredictionLogs, skipped


def expand(patterns: str | Iterable[str]) -> list[str]:
    """Files matching a glob (or several), or every log file under a directory."""
    if isinstance(patterns, str):
        patterns = [patterns]
    files: list[str] = []
    for pattern in patterns:
        if "://" in pattern:
            import tensorflow as tf

            matched = tf.io.gfile.glob(pattern)
        elif os.path.isdir(pattern):
            matched = globlib.glob(os.path.join(pattern, "**", "*" + FILE_SUFFIX), recursive=True)
        else:
            matched = globlib.glob(pattern, recursive=True)
        files.extend(sorted(matched))
    if not files:
        raise LogError(f"no request-log files match {', '.join(patterns)}")
    return files


def _open_bytes(path: str):
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.GFile(path, "rb")
    return open(path, "rb")


def _chunks(path: str) -> Iterator[bytes]:
    """The file's bytes, un-gzipped when it is GZIP; a stream cut short just ends."""
    with _open_bytes(path) as f:
        head = f.read(2)
        decompressor = zlib.decompressobj(31) if gzip_by_magic(head) else None
        data = head
        while True:
            if decompressor is not None:
                try:
                    out = decompressor.decompress(data)
                except zlib.error:
                    return  # a damaged tail: what came before is yielded already
                if out:
                    yield out
                if decompressor.eof and decompressor.unused_data:
                    # concatenated GZIP members (an appended file): start the next one
                    data = decompressor.unused_data
                    decompressor = zlib.decompressobj(31)
                    continue
            elif data:
                yield data
            data = f.read(1 << 20)
            if not data:
                return


def read_frames(path: str, stats: ReadStats) -> Iterator[bytes]:
    """The records of one TFRecord file; a torn last frame is counted, not raised."""
    buffer = bytearray()
    position = 0
    for chunk in _chunks(path):
        buffer += chunk
        while True:
            available = len(buffer) - position
            if available < 12:
                break
            header = bytes(buffer[position:position + 8])
            (length,) = struct.unpack("<Q", header)
            if struct.unpack("<I", buffer[position + 8:position + 12])[0] != _masked_crc(header):
                stats.corrupt += 1
                return  # a length we cannot trust: nothing after it can be framed
            if available < 16 + length:
                break
            data = bytes(buffer[position + 12:position + 12 + length])
            (crc,) = struct.unpack("<I", buffer[position + 12 + length:position + 16 + length])
            position += 16 + length
            if crc != _masked_crc(data):
                stats.corrupt += 1
                continue
            yield data
        if position > (1 << 20):
            del buffer[:position]
            position = 0
    if len(buffer) > position:
        stats.torn += 1


def read_records(patterns: str | Iterable[str], stats: ReadStats | None = None,
                 files: list[str] | None = None) -> Iterator[LogRecord]:
    """Every record of the matching files, in file order; damage is counted in `stats`."""
    stats = stats if stats is not None else ReadStats()
    for path in files if files is not None else expand(patterns):
        stats.files += 1
        for position, data in enumerate(read_frames(path, stats)):
            try:
                record = parse_record(data, path, position)
            except Exception:  # noqa: BLE001 - a record that is not a PredictionLog
                stats.unreadable += 1
                continue
            stats.records += 1
            yield record
