"""TFDV's equi-width histograms from arrays (components/histograms.py): equal to TFDV's own,
field for field, on every shape of input a feature gives, and in place inside TFDV's
statistics once installed."""

import numpy as np
import pytest
from tensorflow_data_validation.utils import quantiles_util

from tandem.components import histograms

ORIGINAL = histograms.TFDVS
assert ORIGINAL is not histograms.equi_width_histogram


def _sketch(values: np.ndarray, points: int):
    """Quantile boundaries and cumulative counts as TFDV's sketch gives them."""
    quantiles = np.quantile(values, np.linspace(0, 1, points))
    counts = np.searchsorted(np.sort(values), quantiles, side="right").astype(np.float64)
    return quantiles, counts


def _cases():
    rng = np.random.default_rng(3)
    for points in (2, 3, 21, 2001, 10_001):
        yield "normal", *_sketch(rng.normal(size=5000), points), 20, 0
        yield "skewed", *_sketch(rng.lognormal(0, 2, size=5000), points), 20, 0
        yield "discrete", *_sketch(rng.integers(0, 4, size=5000).astype(float), points), 20, 0
        yield "few values", *_sketch(np.array([1.0, 1.0, 1.0, 7.0]), points), 10, 0
        yield "constant", *_sketch(np.full(100, 2.5), points), 20, 0
        q, c = _sketch(rng.normal(size=800), points)
        yield "weighted", q, c * 0.37, 20, 0
    q, c = _sketch(rng.normal(size=1000), 101)
    yield "negative infinities", np.concatenate([[-np.inf, -np.inf], q]), \
        np.concatenate([[3.0, 5.0], c + 5.0]), 20, 0
    yield "positive infinities", np.concatenate([q, [np.inf]]), np.concatenate([c, [c[-1] + 4]]), \
        20, 4.0
    yield "one point", np.array([3.0]), np.array([9.0]), 20, 0
    # Integers whose range is a multiple of the bucket count: the edges fall on point buckets.
    yield "integers on the edges", *_sketch(rng.integers(0, 21, size=4000).astype(float), 10_001), \
        20, 0
    q, c = _sketch(rng.normal(size=1000).astype(np.float32), 2001)
    yield "float32", q.astype(np.float32), c, 20, 0
    yield "a count that is not finite", np.arange(5.0), np.array([1, 2, 3, 4, np.nan]), 4, 0


@pytest.mark.parametrize("name,quantiles,counts,buckets,pos_inf", list(_cases()),
                         ids=[f"{c[0]}-{len(c[1])}" for c in _cases()])
def test_each_histogram_equals_tfdvs_field_for_field(name, quantiles, counts, buckets, pos_inf):
    finite = quantiles[np.isfinite(quantiles)]
    args = (quantiles, counts, finite.min(), finite.max(), buckets, pos_inf)  # float32 if given
    ours, theirs = histograms.equi_width_histogram(*args), ORIGINAL(*args)
    assert ours.SerializeToString() == theirs.SerializeToString(), (ours, theirs)
    assert len(ours.buckets) >= 1
    if len(quantiles) > 1 and np.isfinite(counts).all():  # one boundary: TFDV counts 0 too
        assert sum(b.sample_count for b in ours.buckets) > 0


def test_bin_weights_equal_tfdvs_on_runs_of_equal_bounds():
    rng = np.random.default_rng(0)
    bounds = np.sort(rng.integers(0, 30, size=400)).astype(float)
    counts = np.cumsum(rng.random(400) * 3)
    for ours, theirs in zip(histograms.bin_weights(bounds, counts),
                            quantiles_util._get_bin_weights(bounds, counts), strict=False):
        np.testing.assert_array_equal(ours, theirs)


def test_installed_statistics_are_the_same_bytes(monkeypatch):
    """TFDV's statistics of a table with numeric features, before and after `install`: the
    same serialized proto, and the installed function is the one TFDV called."""
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics.stats_impl import generate_statistics_in_memory

    rng = np.random.default_rng(1)
    table = pa.RecordBatch.from_arrays(
        [pa.array([[v] for v in rng.normal(size=3000)]),
         pa.array([[float(v)] for v in rng.integers(0, 5, size=3000)]),
         pa.array([[v] for v in rng.exponential(3, size=3000)])], ["a", "b", "c"])
    options = tfdv.StatsOptions(num_quantiles_histogram_buckets=100, num_histogram_buckets=20)
    monkeypatch.setattr(quantiles_util, "generate_equi_width_histogram", ORIGINAL)
    before = generate_statistics_in_memory(table, options)
    histograms.install()
    calls = []
    real = histograms.equi_width_histogram
    monkeypatch.setattr(quantiles_util, "generate_equi_width_histogram",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    after = generate_statistics_in_memory(table, options)
    assert len(calls) >= 3
    assert after.SerializeToString(deterministic=True) == \
        before.SerializeToString(deterministic=True)
