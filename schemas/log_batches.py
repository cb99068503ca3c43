"""The request log read in batches: records framed and decoded in C++, thousands per call.

`read_records` in `request_log` frames each record in Python and parses it into protobuf
messages, about 100 µs per record once the answer's tensors are turned into arrays. Readers of
whole logs (the shadow replay, the monitor) use `read_decoded` instead: TFRecord framing by
tf.data, and the PredictionLog layout taken apart level by level with `tf.io.decode_proto`
over a batch of records per call (the descriptors come from the tensorflow-serving-api
protos). It yields the same records, with the same fields, in the same order, and counts the
same damage: a file that tf.data cannot read to its end (a torn last record, a bad checksum)
is read on from where tf.data stopped by `request_log`'s own framing, and a record the batch
decoder does not take (a Classify or Regress log, an unusual tensor) is parsed the usual way.

One module past 400 lines because the decoder's levels, the arrays they give and the fall-back
to `request_log`'s framing are one reader: split, each part would need the others' offsets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from tandem.schemas.contracts import EXAMPLES_INPUT
from tandem.schemas.files import gzip_by_magic
from tandem.schemas.request_log import (
    META_PREFIX,
    PRIMARY,
    LazyArrays,
    LogRecord,
    ReadStats,
    parse_record,
    read_frames,
)

BATCH = 4096  # records per decode call

# DataType enum values -> numpy dtypes, for the tensors decoded here; others go the slow way.
_FLOAT, _DOUBLE, _INT32, _STRING, _INT64, _BOOL = 1, 2, 3, 7, 9, 10
_NUMPY = {_FLOAT: np.float32, _DOUBLE: np.float64, _INT32: np.int32, _INT64: np.int64,
          _BOOL: np.bool_}

_decoder = None


def _descriptor_source() -> bytes:
    """A FileDescriptorSet of PredictionLog and everything it imports, for decode_proto."""
    from google.protobuf import descriptor_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    files = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(fd) -> None:
        if fd.name in seen:
            return
        for dep in fd.dependencies:
            add(dep)
        seen.add(fd.name)
        fd.CopyToProto(files.file.add())

    add(prediction_log_pb2.DESCRIPTOR)
    return b"bytes://" + files.SerializeToString()


def _build_decoder():
    """One tf.function: a batch of serialized PredictionLogs -> flat arrays per level."""
    import tensorflow as tf

    source = _descriptor_source()

    def level(values, message, fields, types):
        # decode_proto refuses an empty batch: one empty message more, cut off again
        padded = tf.concat([values, [b""]], axis=0)
        sizes, out = tf.io.decode_proto(padded, message, fields, types,
                                        descriptor_source=source)
        return sizes[:-1], [v[:-1] for v in out]

    def first(values, default):
        """A singular field per row ([n, 0 or 1] from decode_proto) -> [n]."""
        pad = tf.fill([tf.shape(values)[0], 1], tf.constant(default, values.dtype))
        return tf.concat([values, pad], axis=1)[:, 0]

    def flat(sizes, values):
        """A repeated field -> (count per row, the values of all rows, in row order)."""
        mask = tf.sequence_mask(sizes, tf.shape(values)[1])
        return sizes, tf.boolean_mask(values, mask)

    def tensors(protos):
        """TensorProtos -> dtype, dims, content and each *_val field, flattened."""
        sizes, (dtype, shape, content, floats, doubles, ints, int64s, strings, bools) = level(
            protos, "tensorflow.TensorProto",
            ["dtype", "tensor_shape", "tensor_content", "float_val", "double_val", "int_val",
             "int64_val", "string_val", "bool_val"],
            [tf.int32, tf.string, tf.string, tf.float32, tf.float64, tf.int32, tf.int64,
             tf.string, tf.bool])
        dim_sizes, (dims,) = level(first(shape, ""), "tensorflow.TensorShapeProto", ["dim"],
                                   [tf.string])
        n_dims, dims = flat(dim_sizes[:, 0], dims)
        _, (dim_size,) = level(dims, "tensorflow.TensorShapeProto.Dim", ["size"], [tf.int64])
        out = {"dtype": first(dtype, 0), "n_dims": n_dims, "dims": first(dim_size, 0),
               "content": first(content, "")}
        for i, (name, values) in enumerate((("float", floats), ("double", doubles),
                                            ("int", ints), ("int64", int64s),
                                            ("string", strings), ("bool", bools))):
            out[f"n_{name}"], out[name] = flat(sizes[:, 3 + i], values)
        return out

    # no AutoGraph: the levels are plain Python over lists, and converting them cost a second
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def decode(logs):
        sizes, (meta, predict) = level(logs, "tensorflow.serving.PredictionLog",
                                       ["log_metadata", "predict_log"], [tf.string, tf.string])
        _, (spec, timestamp, origin, sampling) = level(
            first(meta, ""), "tensorflow.serving.LogMetadata",
            ["model_spec", "timestamp_secs", "request_origin", "sampling_config"],
            [tf.string, tf.int64, tf.string, tf.string])
        _, (name, version, signature) = level(
            first(spec, ""), "tensorflow.serving.ModelSpec",
            ["name", "version", "signature_name"], [tf.string, tf.string, tf.string])
        _, (version,) = level(first(version, ""), "google.protobuf.Int64Value", ["value"],
                              [tf.int64])
        _, (rate,) = level(first(sampling, ""), "tensorflow.serving.SamplingConfig",
                           ["sampling_rate"], [tf.float64])
        _, (request, response) = level(first(predict, ""), "tensorflow.serving.PredictLog",
                                       ["request", "response"], [tf.string, tf.string])
        input_sizes, (inputs,) = level(first(request, ""), "tensorflow.serving.PredictRequest",
                                       ["inputs"], [tf.string])
        n_inputs, inputs = flat(input_sizes[:, 0], inputs)
        _, (input_key, input_value) = level(
            inputs, "tensorflow.serving.PredictRequest.InputsEntry", ["key", "value"],
            [tf.string, tf.string])
        output_sizes, (outputs,) = level(first(response, ""),
                                         "tensorflow.serving.PredictResponse", ["outputs"],
                                         [tf.string])
        n_outputs, outputs = flat(output_sizes[:, 0], outputs)
        _, (output_key, output_value) = level(
            outputs, "tensorflow.serving.PredictResponse.OutputsEntry", ["key", "value"],
            [tf.string, tf.string])
        input_tensors = tensors(first(input_value, ""))
        return {
            "is_predict": sizes[:, 1] > 0, "has_response": tf.strings.length(
                first(response, "")) > 0,
            "name": first(name, ""), "signature": first(signature, ""),
            "version": first(version, 0),
            "timestamp": first(timestamp, 0), "origin": first(origin, ""),
            "rate": first(rate, 0.0),
            "n_inputs": n_inputs, "input_key": first(input_key, ""),
            "input_dtype": input_tensors["dtype"], "input_content": input_tensors["content"],
            "n_input_strings": input_tensors["n_string"],
            "input_strings": input_tensors["string"],
            "n_outputs": n_outputs, "output_key": first(output_key, ""),
            **{f"out_{k}": v for k, v in tensors(first(output_value, "")).items()},
        }

    return decode


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indexes starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1, for every i."""
    return np.repeat(starts - _offsets(counts)[:-1], counts) + np.arange(int(counts.sum()))


class _Batch:
    """One decode call's arrays, with the offsets that find each record's part of them. What
    every record needs is worked out for the whole batch at once, in numpy."""

    _VALUES = ("float", "double", "int", "int64", "string", "bool")
    _FIELD = {_FLOAT: "float", _DOUBLE: "double", _INT32: "int", _INT64: "int64",
              _STRING: "string", _BOOL: "bool"}

    def __init__(self, decoded: dict):
        d = {k: v.numpy() for k, v in decoded.items()}
        self.d = d
        n = len(d["origin"])
        # The examples: the `examples` input, else a request's only input, as strings.
        input_at = _offsets(d["n_inputs"])
        owner = np.repeat(np.arange(n), d["n_inputs"])
        chosen = np.full(n, -1, np.int64)
        named = np.nonzero(d["input_key"] == EXAMPLES_INPUT.encode())[0]
        chosen[owner[named]] = named
        alone = (d["n_inputs"] == 1) & (chosen < 0)
        chosen[alone] = input_at[:-1][alone]
        # (one padding entry more, so that a batch without inputs indexes safely)
        readable = np.append((d["input_dtype"] == _STRING) & (d["input_content"] == b""), False)
        ok = (d["n_inputs"] == 0) | ((chosen >= 0) & readable[np.maximum(chosen, 0)])
        string_at = _offsets(np.append(d["n_input_strings"], 0))
        self._examples_from = np.where(chosen >= 0, string_at[np.maximum(chosen, 0)], 0).tolist()
        self._examples_to = np.where(chosen >= 0, string_at[np.maximum(chosen, 0) + 1],
                                     0).tolist()
        self._strings = d["input_strings"].tolist()
        # The outputs: each record's entries, all of kinds this module turns into arrays.
        self.output_at = _offsets(d["n_outputs"]).tolist()
        dtype = d["out_dtype"]
        known = np.isin(dtype, list(self._FIELD)) & ((dtype != _STRING) | (d["out_content"] == b""))
        bad = np.concatenate([[0], np.cumsum(~known)])
        at = np.asarray(self.output_at)
        ok &= (bad[at[1:]] - bad[at[:-1]]) == 0
        # Strings the protobuf parser checks for UTF-8: a record with a bad one goes the
        # one-record way (which counts it unreadable).
        self.output_key = _text(d["output_key"].tolist())
        self.names = _text(d["name"].tolist())
        text = _valid(self.names) & _valid(_text(d["signature"].tolist()))
        text &= _valid(_text(d["origin"].tolist()))
        for bad, at in ((~_valid(_text(d["input_key"].tolist())), input_at),
                        (~_valid(self.output_key), np.asarray(self.output_at))):
            count = _offsets(bad)
            text &= (count[at[1:]] - count[at[:-1]]) == 0
        self.ok = (ok & d["is_predict"] & text).tolist()
        self._dtype = dtype.tolist()
        self._content = d["out_content"].tolist()
        self._dims_at = _offsets(d["out_n_dims"]).tolist()
        self._dims = d["out_dims"].tolist()
        self._value_at = {v: _offsets(d[f"out_n_{v}"]).tolist() for v in self._VALUES}
        self.versions, self.timestamps = d["version"].tolist(), d["timestamp"].tolist()
        self.rates = d["rate"].tolist()

    def examples(self, row: int) -> list[bytes]:
        """The request's serialized examples (rows where `ok` holds)."""
        return self._strings[self._examples_from[row]:self._examples_to[row]]

    def examples_count(self, row: int) -> int:
        return self._examples_to[row] - self._examples_from[row]

    def outputs(self, row: int) -> Mapping[str, Any]:
        entries = range(self.output_at[row], self.output_at[row + 1])
        return LazyArrays({self.output_key[e]: e for e in entries}, self.output_array) \
            if len(entries) else {}

    def output_array(self, e: int) -> np.ndarray:
        """One output tensor as tf.make_ndarray gives it."""
        shape = tuple(self._dims[self._dims_at[e]:self._dims_at[e + 1]])
        dtype = self._dtype[e]
        if dtype != _STRING and self._content[e]:
            return np.frombuffer(self._content[e], _NUMPY[dtype]).copy().reshape(shape)
        field = self._FIELD[dtype]
        at = self._value_at[field]
        values = self.d[f"out_{field}"][at[e]:at[e + 1]]
        size = 1
        for s in shape:
            size *= s
        if dtype == _STRING:
            values = np.array(values.tolist(), dtype=object)
        else:
            values = values.astype(_NUMPY[dtype])  # a copy, as make_ndarray's
        if values.size == size:
            return values.reshape(shape)
        if size == 0 or values.size == 0:
            return np.full(shape, "" if dtype == _STRING else 0, values.dtype)  # as TF pads
        # TF's compact form: fewer values than elements repeat the last one
        return np.concatenate([values, np.repeat(values[-1:], size - values.size)]).reshape(shape)

    def output_keys(self, row: int) -> list[str]:
        return self.output_key[self.output_at[row]:self.output_at[row + 1]]

    def output_rows(self, rows: np.ndarray, key: str, examples: np.ndarray
                    ) -> np.ndarray | None:
        """Output `key` of each of `rows` (requests of `examples[i]` examples each) as one
        float64 array of a row per example, [sum(examples), width]: what `output_array`
        would give each row, reshaped to its examples and stacked. None when a row lacks the
        key, or when the rows' tensors are not all float or all double, of `examples[i] *
        width` values each (tensor_content or *_val, in full): the caller then reads those
        rows one at a time."""
        d = self.d
        at = np.asarray(self.output_at)
        named = np.nonzero(d["output_key"] == key.encode())[0]
        entry = np.full(len(at) - 1, -1, np.int64)
        owner = np.repeat(np.arange(len(at) - 1), np.diff(at))
        entry[owner[named]] = named  # the row's last entry of that name, as protobuf keeps
        e = entry[rows]
        if not len(rows) or (e < 0).any():
            return None
        dtype = d["out_dtype"][e]
        if not ((dtype == _FLOAT).all() or (dtype == _DOUBLE).all()):
            return None
        n_dims = d["out_n_dims"]
        size = np.ones(len(n_dims), np.int64)
        has = n_dims > 0
        if has.any():  # each tensor's number of elements, the product of its dims
            size[has] = np.multiply.reduceat(d["out_dims"], _offsets(n_dims)[:-1][has])
        size = size[e]
        examples = np.asarray(examples, np.int64)
        if (examples <= 0).any() or (size % examples).any():
            return None
        width = size // examples
        if (width != width[0]).any():
            return None
        # tensor_content and *_val rows alike (TF writes either), each put in its place
        values = np.empty(int(size.sum()), _NUMPY[int(dtype[0])])
        at = _offsets(size)[:-1]
        content = d["out_content"][e]
        packed = content != b""
        if packed.any():
            raw = np.frombuffer(b"".join(content[packed].tolist()), values.dtype)
            if len(raw) != size[packed].sum():
                return None
            values[_ranges(at[packed], size[packed])] = raw
        if not packed.all():
            name = self._FIELD[int(dtype[0])]
            count = d[f"out_n_{name}"][e][~packed]
            if (count != size[~packed]).any():  # TF's compact form, or a damaged tensor
                return None
            starts = _offsets(d[f"out_n_{name}"])[e][~packed]
            values[_ranges(at[~packed], count)] = d[f"out_{name}"][_ranges(starts, count)]
        return values.astype(np.float64).reshape(-1, int(width[0]))


class DecodedRecord(LogRecord):
    """A LogRecord whose protobuf message was never built: its fields came from the batch."""

    def __init__(self, batch: _Batch, row: int, fields: dict, path: str, position: int,
                 examples: list[bytes]):
        request_id = fields.get("id") or f"{os.path.basename(path)}:{position}"
        super().__init__(
            log=None, request_id=request_id, role=fields.get("role", PRIMARY),
            example_ids=fields.get("ids") or [], verdict=fields.get("verdict") or {},
            sources=fields.get("sources") or {}, error=fields.get("error"),
            latency_ms=fields.get("ms"), path=path, position=position)
        self._batch, self._row, self._examples = batch, row, examples
        self._name, self._version = batch.names[row], batch.versions[row]
        self._timestamp, self._rate = batch.timestamps[row], batch.rates[row]
        if not self.example_ids:
            self.example_ids = [f"{request_id}/{i}" for i in range(len(examples))]

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def model_version(self) -> int:
        return self._version

    @property
    def timestamp(self) -> int:
        return self._timestamp

    @property
    def sampling_rate(self) -> float:
        return self._rate

    def examples(self) -> list[bytes]:
        return self._examples

    def outputs(self) -> Mapping[str, Any]:
        return self._batch.outputs(self._row)


def _fields(origins) -> list[dict | None]:
    """tandem's fields of every record, in one JSON parse when every origin is one JSON
    object; else record by record, None for a record whose origin is not (the one-record
    parse counts it unreadable, as `read_records` does)."""
    prefix = META_PREFIX.encode()
    parts = [o[len(prefix):] if o.startswith(prefix) else b"{}" for o in origins]
    try:
        fields = json.loads(b"[" + b",".join(parts) + b"]")
        if len(fields) == len(parts) and all(isinstance(f, dict) for f in fields):
            return fields
    except ValueError:
        pass
    out: list[dict | None] = []
    for part in parts:
        try:
            one = json.loads(part)
        except ValueError:
            one = None
        out.append(one if isinstance(one, dict) else None)
    return out


def _text(values) -> list[str | None]:
    """proto3 `string` fields as str; None where the bytes are not UTF-8 (the protobuf
    parser refuses such a record, and so does the batch path)."""
    if not values:
        return []
    try:  # all at once: a NUL joins them, and no UTF-8 sequence runs across it
        text = b"\0".join(values).decode().split("\0")
        if len(text) == len(values):
            return text
    except UnicodeDecodeError:
        pass
    out: list[str | None] = []
    for value in values:
        try:
            out.append(value.decode())
        except UnicodeDecodeError:
            out.append(None)
    return out


def _valid(text: list[str | None]) -> np.ndarray:
    """Which of `_text`'s values are text."""
    if None not in text:
        return np.ones(len(text), bool)
    return np.array([t is not None for t in text], bool)


def _forget_decoder() -> None:
    global _decoder
    _decoder = None


class Part:
    """One decode call's records, in log order: `rows` the batch path took, each with
    tandem's `fields`, and `parsed`, the (row, LogRecord) pairs parsed one at a time. A
    reader that wants arrays (the replay) reads the batch's columns for `rows`; `records`
    gives every record as `request_log.read_records` would."""

    def __init__(self, batch: _Batch | None, path: str, first: int, rows: list[int],
                 fields: list[dict], parsed: list[tuple[int, LogRecord]]):
        self.batch, self.path, self.first = batch, path, first
        self.rows, self.fields, self.parsed = rows, fields, parsed

    def record(self, i: int) -> LogRecord:
        """The record of `rows[i]`."""
        row = self.rows[i]
        return DecodedRecord(self.batch, row, self.fields[i], self.path, self.first + row,
                             self.batch.examples(row))

    def records(self) -> Iterator[LogRecord]:
        taken = {row: i for i, row in enumerate(self.rows)}
        parsed = dict(self.parsed)
        for row in sorted([*taken, *parsed]):
            yield self.record(taken[row]) if row in taken else parsed[row]


def _decode(logs: list[bytes], path: str, first: int, stats: ReadStats) -> Iterator[Part]:
    """Records `first`, `first + 1`, ... of `path`, from their serialized PredictionLogs. A
    batch holding a record that is not a PredictionLog is halved until that record stands
    alone, so that one bad record costs its neighbours nothing."""
    global _decoder
    import tensorflow as tf

    if _decoder is None:
        import atexit

        _decoder = _build_decoder()
        # dropped before the interpreter tears TensorFlow down, which it would complain about
        atexit.register(_forget_decoder)
    try:
        batch = _Batch(_decoder(tf.constant(logs, tf.string)))
    except tf.errors.OpError:
        if len(logs) > 1:
            half = len(logs) // 2
            yield from _decode(logs[:half], path, first, stats)
            yield from _decode(logs[half:], path, first + half, stats)
            return
        batch = None
    fields = _fields(batch.d["origin"]) if batch is not None else None
    rows: list[int] = []
    taken: list[dict] = []
    parsed: list[tuple[int, LogRecord]] = []
    for row, data in enumerate(logs):
        if fields is not None and batch.ok[row] and fields[row] is not None:
            rows.append(row)
            taken.append(fields[row])
            continue
        try:
            parsed.append((row, parse_record(data, path, first + row)))
        except Exception:  # noqa: BLE001 - a record that is not a PredictionLog
            stats.unreadable += 1
    stats.records += len(rows) + len(parsed)
    yield Part(batch, path, first, rows, taken, parsed)


BATCH_BYTES = 32 << 20  # a batch is cut smaller when its records are large (memory)


def _frames(path: str, stats: ReadStats, batch: int) -> Iterator[list[bytes]]:
    """The file's records in lists of up to `batch` (fewer when records are large), framed by
    tf.data; from the first record tf.data cannot read (damage), by `read_frames`, which
    counts it and reads on. tf.data stops quietly at a header cut short: the bytes it framed
    are checked against the file's length to count that torn record too."""
    import tensorflow as tf

    from tandem.schemas.request_log import _chunks

    with (tf.io.gfile.GFile(path, "rb") if "://" in path else open(path, "rb")) as f:
        compression = "GZIP" if gzip_by_magic(f.read(2)) else ""
    delivered = framed = 0
    try:
        records = tf.data.TFRecordDataset(path, compression_type=compression,
                                          buffer_size=1 << 20)
        sizes = [len(r) for r in records.take(16).as_numpy_iterator()]
        if sizes:
            batch = max(1, min(batch, BATCH_BYTES * len(sizes) // max(1, sum(sizes))))
        for chunk in records.batch(batch).as_numpy_iterator():
            delivered += len(chunk)
            framed += sum(16 + len(r) for r in chunk)
            yield list(chunk)
        if sum(len(c) for c in _chunks(path)) > framed:
            stats.torn += 1
        return
    except tf.errors.OpError:
        pass
    pending: list[bytes] = []
    for n, data in enumerate(read_frames(path, stats)):
        if n < delivered:
            continue
        pending.append(data)
        if len(pending) == batch:
            yield pending
            pending = []
    if pending:
        yield pending


def read_parts(files: list[str], stats: ReadStats | None = None,
               batch: int = BATCH) -> Iterator[Part]:
    """Every record of `files`, in file order, a decode call's worth (a `Part`) at a time."""
    stats = stats if stats is not None else ReadStats()
    for path in files:
        stats.files += 1
        position = 0
        for logs in _frames(path, stats, batch):
            yield from _decode(logs, path, position, stats)
            position += len(logs)


def read_decoded(files: list[str], stats: ReadStats | None = None,
                 batch: int = BATCH) -> Iterator[LogRecord]:
    """Every record of `files`, in file order, as `request_log.read_records` yields them."""
    for part in read_parts(files, stats, batch):
        yield from part.records()
