"""Shadow replay: the Beam transforms (read the request log, keep each id's first logged
occurrence, run both models in batches).

Heavy resources (the two SavedModels) are loaded in `setup()`, once per worker.
"""

from __future__ import annotations

import os
import time
import zlib

import apache_beam as beam
import numpy as np

from tandem.schemas.contracts import EXAMPLES_INPUT, SERVING_DEFAULT, output_key
from tandem.schemas.log_batches import read_parts
from tandem.schemas.request_log import PRIMARY, ReadStats, log_place

STATS = "stats"
CHUNK = 2048  # examples per element: Beam's per-element cost is paid per chunk, not per example


def _logged_rows(outputs: dict[str, np.ndarray], key: str, n: int) -> np.ndarray:
    """A logged output (`LogRecord.outputs`) as an [n, k] float array."""
    return np.asarray(outputs[key], np.float64).reshape(n, -1)


class ReadLoggedExamples(beam.DoFn):
    """One log file -> chunks of the examples of model A's answered requests: (example ids,
    serialized examples, A's logged outputs [n, k], versions, log places). Shadow records,
    refused and failed requests are skipped; damage is counted.

    The log is read a decode call at a time (`read_parts`): the requests the batch decoder
    took are filtered on tandem's fields and their answers taken out as one array per call;
    a request it could not take, or whose answer is not a plain float tensor, is read as a
    record, the same way."""

    def process(self, path: str):
        stats = ReadStats()
        self._skipped = {"shadow_records": 0, "failed_requests": 0, "rejected_requests": 0}
        self._pending: list[tuple] = []
        self._size = 0
        for part in read_parts([path], stats):
            yield from self._part(part)
        if self._pending:
            yield self._chunk()
        yield beam.pvalue.TaggedOutput(STATS, {
            "files": stats.files, "records": stats.records, "torn": stats.torn,
            "corrupt": stats.corrupt, "unreadable": stats.unreadable, **self._skipped})

    def _answered(self, role: str, error, verdict) -> bool:
        if role != PRIMARY:
            self._skipped["shadow_records"] += 1
        elif error:
            self._skipped["failed_requests"] += 1
        elif (verdict or {}).get("rejected"):
            self._skipped["rejected_requests"] += 1
        else:
            return True
        return False

    def _add(self, ids: list[str], data: list[bytes], logged: np.ndarray,
             versions: list[int], places: list[tuple]):
        """Queue a decode call's rows; yield chunks of CHUNK examples as they fill, so that
        a one-file log still reaches every worker in pieces."""
        self._pending.append((ids, data, logged, versions, places))
        self._size += len(ids)
        while self._size >= CHUNK:
            yield self._chunk(CHUNK)

    def _chunk(self, size: int | None = None) -> tuple:
        """The first `size` queued examples (all of them when None) as one chunk."""
        parts, self._pending = self._pending, []
        ids, data, versions, places = ([x for p in parts for x in p[k]] for k in (0, 1, 3, 4))
        logged = np.concatenate([p[2] for p in parts])
        size = len(ids) if size is None else size
        if size < len(ids):
            self._pending = [(ids[size:], data[size:], logged[size:], versions[size:],
                              places[size:])]
        self._size = len(ids) - size
        return ids[:size], data[:size], logged[:size], versions[:size], places[:size]

    def _record(self, record):
        """One request read as a record."""
        if not self._answered(record.role, record.error, record.verdict):
            return
        examples = record.examples()
        outputs = record.outputs()  # Predict, Classify and Regress answers alike
        if not outputs or len(examples) != len(record.example_ids):
            self._skipped["failed_requests"] += 1
            return
        yield from self._add(list(record.example_ids), examples,
                             _logged_rows(outputs, output_key(outputs), len(examples)),
                             [record.model_version] * len(examples),
                             [log_place(record, i) for i in range(len(examples))])

    def _part(self, part):
        """One decode call's requests: those the batch decoder took, as arrays; the rest,
        and any whose answer the arrays cannot hold, as records."""
        batch, one_by_one = part.batch, []
        kept: list[int] = []  # indexes into part.rows
        keys = None
        for i, fields in enumerate(part.fields):
            if not self._answered(fields.get("role", PRIMARY), fields.get("error"),
                                  fields.get("verdict")):
                continue
            row = part.rows[i]
            names = batch.output_keys(row)
            if keys is None and names:
                keys = names
            if names != keys:  # another answer's layout: read as a record
                one_by_one.append(i)
            else:
                kept.append(i)
        matrix = None
        if kept and keys:
            rows = np.array([part.rows[i] for i in kept])
            counts = np.array([batch.examples_count(r) for r in rows.tolist()])
            matrix = batch.output_rows(rows, output_key(dict.fromkeys(keys)), counts)
        if matrix is None:
            one_by_one, kept = sorted(one_by_one + kept), []
        ids: list[str] = []
        data: list[bytes] = []
        versions: list[int] = []
        places: list[tuple] = []
        base = os.path.basename(part.path)
        keep = np.ones(len(kept), bool)
        for j, i in enumerate(kept):
            row, fields = part.rows[i], part.fields[i]
            examples = batch.examples(row)
            example_ids = fields.get("ids") or [
                f"{fields.get('id') or f'{base}:{part.first + row}'}/{x}"
                for x in range(len(examples))]
            if len(example_ids) != len(examples):
                self._skipped["failed_requests"] += 1
                keep[j] = False
                continue
            ids.extend(example_ids)
            data.extend(examples)
            versions.extend([batch.versions[row]] * len(examples))
            place = (batch.timestamps[row], part.path, part.first + row)
            if len(examples) == 1:
                places.append((*place, 0))
            else:
                places.extend([(*place, x) for x in range(len(examples))])
        if ids:
            if not keep.all():
                matrix = matrix[np.repeat(keep, counts)]
            yield from self._add(ids, data, matrix, versions, places)
        for i in one_by_one:
            yield from self._record(part.record(i))
        for _, record in part.parsed:
            yield from self._record(record)


ID_BUCKETS = 32  # keys of the combine that finds repeated ids; ids spread by a stable hash


def _places_by_bucket(chunk):
    """A chunk -> (bucket, [(example id, log place)]) per bucket its ids fall in. The bucket
    is a CRC of the id, not hash(): every worker process must put an id in the same one."""
    buckets: dict[int, list] = {}
    for rid, place in zip(chunk[0], chunk[4], strict=True):
        buckets.setdefault(zlib.crc32(rid.encode()) % ID_BUCKETS, []).append((rid, place))
    yield from buckets.items()


class LaterOccurrences(beam.CombineFn):
    """(example id, log place) pairs -> the places of every occurrence of an id after its
    first logged one (`tandem.schemas.request_log.log_place`, the rule LogExampleGen keeps too)."""

    def create_accumulator(self) -> dict[str, list]:
        return {}

    def add_input(self, places: dict[str, list], pairs) -> dict[str, list]:
        for rid, place in pairs:
            places.setdefault(rid, []).append(place)
        return places

    def merge_accumulators(self, accumulators) -> dict[str, list]:
        merged: dict[str, list] = {}
        for places in accumulators:
            for rid, found in places.items():
                merged.setdefault(rid, []).extend(found)
        return merged

    def extract_output(self, places: dict[str, list]) -> list[tuple]:
        return [p for found in places.values() if len(found) > 1 for p in sorted(found)[1:]]


class DropLaterOccurrences(beam.DoFn):
    """A chunk without the occurrences `later` names, and without its places (they have
    served); how many examples it dropped is counted."""

    def process(self, chunk, later):
        ids, data, logged, versions, places = chunk
        later = set(later)
        keep = [i for i, place in enumerate(places) if place not in later]
        if len(keep) < len(ids):
            yield beam.pvalue.TaggedOutput(STATS, {"duplicate_examples": len(ids) - len(keep)})
            if not keep:
                return
            ids, data, versions = ([v[i] for i in keep] for v in (ids, data, versions))
            logged = logged[keep]
        yield ids, data, logged, versions


class KeepFirstLogged(beam.PTransform):
    """Chunks -> (example ids, examples, A logged, versions), each id kept once, at its first
    logged place: a client's retry or a request sent again would count twice and narrow the
    intervals. Repeats are found by a keyed combine over buckets of ids, so it runs on any
    runner and any number of workers; only the places to drop travel as a side input."""

    def expand(self, chunks):
        later = (chunks
                 | "PlacesByBucket" >> beam.FlatMap(_places_by_bucket)
                 | "FindLaterOccurrences" >> beam.CombinePerKey(LaterOccurrences())
                 | "PlacesToDrop" >> beam.FlatMap(lambda bucket: bucket[1]))
        return chunks | "DropLaterOccurrences" >> beam.ParDo(
            DropLaterOccurrences(), later=beam.pvalue.AsList(later)).with_outputs(
                STATS, main="chunks")


def class_names(outputs: dict[str, np.ndarray], key: str) -> list[str] | None:
    """The class names a classifier answers with its scores (`classes`, one row per example,
    the same in every row), or None."""
    names = outputs.get("classes")
    if key != "scores" or names is None or names.ndim != 2 or not len(names):
        return None
    return [c.decode() if isinstance(c, bytes) else str(c) for c in names[0]]


def serving_signature(path: str):
    """A SavedModel's serving signature as a function of a batch of serialized examples to
    numpy outputs, run in a TF1 session as TF Serving's SavedModelBundle runs it: loading
    imports the graph and its functions without rebuilding the Keras objects, a third of
    tf.saved_model.load's time, which every replay pays for both models at start."""
    import tensorflow as tf
    from tensorflow.python.util import deprecation

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default(), deprecation.silence():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    signature = meta.signature_def[SERVING_DEFAULT]
    feed = signature.inputs[EXAMPLES_INPUT].name
    fetch = {key: tensor.name for key, tensor in signature.outputs.items()}

    def run(batch: list[bytes]) -> dict[str, np.ndarray]:
        return session.run(fetch, {feed: batch})

    run.close = session.close
    return run


class PredictBoth(beam.DoFn):
    """A chunk of logged examples -> the same chunk with A's output recomputed offline and
    B's output, both models run in-process on batches of `batch_size`, in one pass; with
    each model's class names when it answers with them."""

    def __init__(self, baseline: str, candidate: str, slice_features: list[str],
                 batch_size: int = 1024):
        self.baseline, self.candidate, self.slice_features = baseline, candidate, slice_features
        self.batch_size = batch_size

    def setup(self) -> None:
        self._a = serving_signature(self.baseline)
        self._b = self._a if self.candidate == self.baseline else \
            serving_signature(self.candidate)

    def teardown(self) -> None:
        for fn in {id(f): f for f in (getattr(self, "_a", None), getattr(self, "_b", None))
                   if f is not None}.values():
            fn.close()

    def _run(self, fn, batch: list[bytes]) -> tuple[dict[str, np.ndarray], float]:
        start = time.perf_counter()
        out = fn(batch)
        return out, time.perf_counter() - start

    def process(self, chunk):
        from tensorflow.core.example import example_pb2

        ids, data, logged, versions = chunk
        a_parts, b_parts = [], []
        a_s = b_s = 0.0
        key = None
        classes = None
        for start in range(0, len(data), self.batch_size):
            batch = data[start:start + self.batch_size]
            a, t_a = self._run(self._a, batch)
            b, t_b = self._run(self._b, batch)
            if key is None:
                key = output_key(a)
                classes = (class_names(a, key), class_names(b, key))
            a_parts.append(a[key].reshape(len(batch), -1))
            b_parts.append(b[key].reshape(len(batch), -1))
            a_s, b_s = a_s + t_a, b_s + t_b
        yield beam.pvalue.TaggedOutput(STATS, {
            "batches": len(a_parts), "examples": len(data), "a_seconds": a_s, "b_seconds": b_s})
        slices: dict[str, list] = {name: [] for name in self.slice_features}
        if self.slice_features:
            for serialized in data:
                features = example_pb2.Example.FromString(serialized).features.feature
                for name in self.slice_features:
                    f = features[name] if name in features else None
                    kind = f.WhichOneof("kind") if f is not None else None
                    value = getattr(f, kind).value[0] if kind and getattr(f, kind).value else None
                    slices[name].append(value.decode() if isinstance(value, bytes) else value)
        yield {"ids": ids, "data": data, "versions": versions, "slices": slices, "key": key,
               "classes": classes, "logged": logged,
               "a": np.concatenate(a_parts).astype(np.float64),
               "b": np.concatenate(b_parts).astype(np.float64)}
