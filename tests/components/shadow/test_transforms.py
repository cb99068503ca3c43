"""The replay's dedup as a Beam transform: each example id once, at its first logged place,
on the DirectRunner's worker processes (where Python's hash() differs from one to the next)."""

import apache_beam as beam
import numpy as np
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
