"""The replay's Beam transforms: the log read as arrays (the same rows the record reader gives),
and the dedup: each example id once, at its first logged place,
on the DirectRunner's worker processes (where Python's hash() differs from one to the next)."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tandem.components.shadow.transforms import STATS, KeepFirstLogged


def _chunk(rows):
    """rows: (id, logged output, log place) -> a chunk as ReadLoggedExamples yields it."""
    ids = [r[0] for r in rows]
    return (ids, [f"example of {r[0]} at {r[2]}".encode() for r in rows],
            np.array([[r[1]] for r in rows]), [1] * len(rows), [r[2] for r in rows])


CHUNKS = [
    # file b: r1 logged at t=100; r3 twice in one request (its first example wins)
    _chunk([("r1", 0.1, (100, "b.gz", 0, 0)), ("r2", 0.2, (100, "b.gz", 1, 0)),
            ("r3", 0.3, (101, "b.gz", 2, 0)), ("r3", 0.9, (101, "b.gz", 2, 1))]),
    # file a sorts first, but r1 was logged here later (t=160): the t=100 one is first.
    # r2 in the same second as in file b: the file name decides, so this one is first.
    _chunk([("r1", 0.7, (160, "a.gz", 0, 0)), ("r2", 0.8, (100, "a.gz", 3, 0)),
            ("r4", 0.4, (90, "a.gz", 4, 0))]),
    # a request sent again, every example of it a repeat: nothing of the chunk is left
    _chunk([("r4", 0.6, (200, "c.gz", 0, 0)), ("r1", 0.5, (200, "c.gz", 0, 1))]),
]


def _rows(chunk):
    """(id, logged output): the outputs differ between occurrences, so they tell which one
    was kept."""
    ids, logged = chunk[0], chunk[2]
    return [(rid, float(logged[i, 0])) for i, rid in enumerate(ids)]


@pytest.mark.slow
def test_each_id_is_kept_once_at_its_first_logged_place_across_worker_processes():
    options = PipelineOptions(["--direct_running_mode=multi_processing",
                               "--direct_num_workers=2"])
    with TestPipeline(options=options) as p:
        kept = (p | beam.Create(CHUNKS, reshuffle=True)
                | "KeepFirstLogged" >> KeepFirstLogged())
        assert_that(kept.chunks | beam.FlatMap(_rows),
                    equal_to([("r1", 0.1), ("r2", 0.8), ("r3", 0.3), ("r4", 0.4)]),
                    label="FirstOccurrences")
        dropped = (kept[STATS] | beam.Map(lambda s: s["duplicate_examples"])
                   | beam.CombineGlobally(sum))
        assert_that(dropped, equal_to([5]), label="DuplicatesCounted")


def test_a_log_without_repeats_passes_unchanged_and_counts_nothing():
    unique = _chunk([("r1", 0.1, (100, "b.gz", 0, 0)), ("r2", 0.2, (100, "b.gz", 1, 0))])
    with TestPipeline() as p:
        kept = p | beam.Create([unique]) | "KeepFirstLogged" >> KeepFirstLogged()
        assert_that(kept.chunks | beam.FlatMap(_rows), equal_to(_rows(unique)))
        assert_that(kept[STATS] | beam.combiners.Count.Globally(), equal_to([0]),
                    label="NothingCounted")


def _reference(path: str) -> tuple[list, dict]:
    """What the replay reads from a log, record by record with the protobuf parser: (id,
    example, A's logged row, version, log place) per example, and the skip counts."""
    from tandem.schemas.contracts import output_key
    from tandem.schemas.request_log import PRIMARY, log_place, read_records

    rows, skipped = [], {"shadow_records": 0, "failed_requests": 0, "rejected_requests": 0}
    for r in read_records(path):
        if r.role != PRIMARY:
            skipped["shadow_records"] += 1
            continue
        if r.error:
            skipped["failed_requests"] += 1
            continue
        if r.verdict.get("rejected"):
            skipped["rejected_requests"] += 1
            continue
        examples, outputs = r.examples(), r.outputs()
        if not outputs or len(examples) != len(r.example_ids):
            skipped["failed_requests"] += 1
            continue
        logged = np.asarray(outputs[output_key(outputs)], np.float64).reshape(len(examples), -1)
        rows += [(rid, data, logged[i].tolist(), r.model_version, log_place(r, i))
                 for i, (rid, data) in enumerate(zip(r.example_ids, examples, strict=True))]
    return sorted(rows), skipped


def _read(path: str, monkeypatch, batch: int) -> tuple[list, dict, int]:
    """ReadLoggedExamples over one file, decode calls of `batch` records: its rows as
    `_reference` gives them, its counts, and how many requests it read one at a time."""
    import functools

    from tandem.components.shadow import transforms
    from tandem.schemas.log_batches import read_parts

    monkeypatch.setattr(transforms, "read_parts", functools.partial(read_parts, batch=batch))
    one_at_a_time = []
    original = transforms.ReadLoggedExamples._record
    monkeypatch.setattr(transforms.ReadLoggedExamples, "_record",
                        lambda self, record: one_at_a_time.append(record) or
                        original(self, record))
    rows, counts = [], {}
    for out in transforms.ReadLoggedExamples().process(path):
        if isinstance(out, beam.pvalue.TaggedOutput):
            counts = out.value
            continue
        ids, data, logged, versions, places = out
        assert logged.dtype == np.float64 and len(logged) == len(ids)
        rows += [(ids[i], data[i], logged[i].tolist(), versions[i], places[i])
                 for i in range(len(ids))]
    return sorted(rows), counts, len(one_at_a_time)


def _uniform_log(path: str) -> int:
    """Answered requests of one to three examples, the first half answering with
    tensor_content, the second with float_val and a second output."""
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    from tandem.schemas.request_log import write_records
    from tests.schemas.test_log_batches import _predict, _tensor

    records, examples = [], 0
    for i in range(0, 60, 3):
        n = 1 + (i // 3) % 3
        examples += n
        if i < 30:
            outputs = {"probabilities": tf.make_tensor_proto(
                np.linspace(0.1, 0.9, n, dtype=np.float32) + i / 100)}
        else:
            outputs = {"probabilities": _tensor(types_pb2.DT_FLOAT, [n], "float_val",
                                                [0.25 + i / 1000] * n),
                       "classes": tf.make_tensor_proto([b"yes"] * n)}
        records.append(_predict(i, n, outputs))
    write_records(path, records)
    return examples


@pytest.mark.parametrize("batch", [4, 4096])
def test_answers_read_as_arrays_are_the_answers_the_record_reader_gives(tmp_path, monkeypatch,
                                                                        batch):
    path = str(tmp_path / "uniform.tfrecord.gz")
    examples = _uniform_log(path)
    rows, counts, one_at_a_time = _read(path, monkeypatch, batch)
    expected, skipped = _reference(path)
    assert len(rows) == examples == 39 and rows == expected
    assert {k: counts[k] for k in skipped} == skipped
    # The decoder's arrays carried the answers of the first layout; the second half names
    # other outputs, and is read a request at a time, except where a decode call starts with
    # it (with calls of 4 records, only the call holding both layouts reads 2 that way).
    assert one_at_a_time == (10 if batch == 4096 else 2)


@pytest.mark.parametrize("batch", [3, 4096])
def test_every_kind_of_record_reaches_the_replay_as_the_record_reader_gives_it(
        tmp_path, monkeypatch, batch):
    """Failed, refused, shadow, Classify and Regress records, TF's compact tensors and a
    record that is no PredictionLog, mixed in one file."""
    from tandem.schemas.contracts import output_key
    from tandem.schemas.request_log import parse_record, write_records
    from tests.schemas.test_log_batches import _records

    def width(data: bytes) -> int:
        try:
            r = parse_record(data)
        except Exception:  # noqa: BLE001 - the record that is no PredictionLog
            return 1
        out = r.outputs() if r.examples() else {}
        return int(np.size(out[output_key(out)]) // len(r.examples())) if out else 1

    # the answers one model gives: one value per example (A's answers of two widths in one
    # log cannot be compared with one model's)
    path = str(tmp_path / "mixed.tfrecord.gz")
    write_records(path, [r for r in _records() if width(r) == 1])
    rows, counts, _ = _read(path, monkeypatch, batch)
    expected, skipped = _reference(path)
    assert rows == expected and len(rows) > 20
    assert {k: counts[k] for k in skipped} == skipped
    assert counts["unreadable"] == 1
