"""Beam's pickler in process: the same bytes, each bz2 call made once per distinct input, dill's
logger level set only when it changes, the cache bounded, and a Beam job still right."""

import base64
import bz2
import logging
import random

import apache_beam as beam
import dill
from apache_beam.internal import dill_pickler, pickler
from apache_beam.testing.util import assert_that, equal_to

from tandem.components.beam_runtime import RememberedBytes, pipeline_options, quicker_pickling


class Scale(beam.DoFn):
    def __init__(self, factor):
        self.factor = factor

    def process(self, x):
        yield x * self.factor


def test_the_pickler_writes_the_same_bytes_and_compresses_each_input_once():
    quicker_pickling()
    quicker_pickling()  # idempotent: one cache, not a cache of a cache
    cache = dill_pickler.bz2
    assert isinstance(cache.compress, RememberedBytes)
    fn = Scale(random.random())  # never pickled before in this process
    expected = base64.b64encode(bz2.compress(dill.dumps(fn, byref=False), compresslevel=9))
    misses = cache.compress.misses
    first, second = pickler.dumps(fn), pickler.dumps(fn)
    assert first == second == expected
    assert cache.compress.misses == misses + 1 and cache.compress.hits >= 1
    hits = cache.decompress.hits
    assert pickler.loads(first).factor == pickler.loads(second).factor == fn.factor
    assert pickler.loads(first) is not pickler.loads(first)  # a fresh object each time
    assert cache.decompress.hits >= hits + 2


def test_the_cache_drops_the_least_recently_used_past_its_bound():
    calls = []

    def fn(data):
        calls.append(data)
        return data * 10

    remembered = RememberedBytes(fn, max_bytes=3 * (100 + 64))
    for data in (b"a" * 10, b"b" * 10, b"c" * 10):
        remembered(data)
    remembered(b"a" * 10)  # used again: now the most recent
    remembered(b"d" * 10)  # over the bound: b, the least recent, goes
    assert len(calls) == 4
    remembered(b"a" * 10)
    assert len(calls) == 4  # still there
    remembered(b"b" * 10)
    assert len(calls) == 5 and calls[-1] == b"b" * 10  # computed again
    assert RememberedBytes(fn, max_bytes=50)(b"e" * 10) == b"e" * 100  # too big to keep


def test_dill_trace_sets_the_logger_level_only_when_it_changes(monkeypatch):
    quicker_pickling()
    log = dill._dill.log
    levels = []
    original = logging.Logger.setLevel
    monkeypatch.setattr(log, "setLevel", lambda level: (levels.append(level),
                                                        original(log, level)))
    dill._dill._trace(False)
    dill._dill._trace(False)
    dill._dill._trace(True)
    assert log.level == logging.INFO
    dill._dill._trace(True)
    dill._dill._trace(False)
    assert log.level == logging.WARN
    assert levels.count(logging.INFO) == 1 and levels.count(logging.WARN) <= 2


def test_a_beam_job_in_process_is_unchanged():
    for _ in range(2):  # the second run reads its DoFns from the cache
        with beam.Pipeline(options=pipeline_options(None)) as p:
            out = p | beam.Create([1, 2, 3]) | beam.ParDo(Scale(3)) | beam.Map(lambda x: x + 1)
            assert_that(out, equal_to([4, 7, 10]))
