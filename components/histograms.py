"""TFDV's equi-width histograms, the same numbers without the Python loops.

TFDV's basic statistics build each numeric feature's standard histogram from a quantiles
sketch of 100 x `num_quantiles_histogram_buckets` buckets (10,000 in tandem's options): it
makes a protobuf bucket per quantile, then for each of the 20 output buckets walks those
protobuf buckets in Python: 67 ms per numeric feature per dataset on two cores, against 9.9
ms from arrays (bench/histograms.py), paid in every StatisticsGen run and, many times over, by
the monitor: each numeric feature in each window and slice.

`equi_width_histogram` computes the same histogram from arrays: every output bucket's overlap
with every quantile bucket by TFDV's own case analysis (`quantiles_util._overlap`), in the same
float64 arithmetic, each bucket's count summed in the same order (a running sum, as TFDV's
loop adds), so the proto is equal field for field (tests/components/test_histograms.py checks
it against TFDV's on skewed, discrete, integer, constant and infinite inputs). Inputs outside
that argument (a NaN bound, a count that is not finite, a negative weight) go to TFDV's own
function.

`install` puts it in place of TFDV's in this process, as `beam_runtime.quicker_pickling` does
for Beam's pickler: the DirectRunner in process (the pipeline's components, the monitor).
Worker processes run TFDV's own code and give the same numbers.
"""

from __future__ import annotations

import numpy as np
from tensorflow_data_validation.utils import quantiles_util

TFDVS = quantiles_util.generate_equi_width_histogram  # TFDV's own, kept before any install


def bin_weights(boundaries: np.ndarray, cum_bin_weights: np.ndarray):
    """`quantiles_util._get_bin_weights`: each bin's weight, the weight of bins sharing an
    upper bound spread evenly across them, the minimum's count across the leading identical
    bins; the same sums in the same order, looping only over runs of equal bounds."""
    cum_bin_weights = cum_bin_weights.astype(np.float64)
    low_bounds, high_bounds = boundaries[:-1], boundaries[1:]
    bin_counts = np.diff(cum_bin_weights)
    size = low_bounds.size
    if size > 1:
        breaks = np.flatnonzero(high_bounds[1:] != high_bounds[:-1]) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [size]])
        for i, j in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=False):
            bin_counts[i:j] = bin_counts[i:j].sum() / (j - i)
    if size:
        differs = (low_bounds != low_bounds[0]) | (high_bounds != high_bounds[0])
        leading = int(np.argmax(differs)) if differs.any() else size
        if leading > 0:
            bin_counts[0:leading] += cum_bin_weights[0] / leading
    return low_bounds, high_bounds, bin_counts


def _overlaps(lo: np.ndarray, hi: np.ndarray, edges: np.ndarray) -> np.ndarray | None:
    """`quantiles_util._overlap` of every bucket (lo, hi) with every interval between
    consecutive edges (a row per interval; the first interval takes a point bucket on its
    left edge); None where TFDV would raise (no case applies)."""
    low, high = edges[:-1, None], edges[1:, None]
    first = np.zeros((len(low), 1), bool)
    first[0] = True
    point_at_low = (hi == lo) & (lo == low)
    cases = [first & point_at_low, point_at_low, hi < low, lo > high,
             (low <= lo) & (high >= hi), low <= lo, high >= hi, (low > lo) & (high < hi)]
    with np.errstate(divide="ignore", invalid="ignore"):
        width = hi - lo
        values = [1.0, 0.0, 0.0, 0.0, 1.0, (high - lo) / width, (hi - low) / width,
                  (high - low) / width]
    if not np.logical_or.reduce(cases).all():
        return None
    return np.select(cases, values)


def equi_width_histogram(quantiles: np.ndarray, cumulative_counts: np.ndarray,
                         finite_min: float, finite_max: float, num_buckets: int,
                         num_pos_inf: float):
    """`quantiles_util.generate_equi_width_histogram`, from arrays (module docstring)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    if (not np.isfinite(finite_min) or not np.isfinite(finite_max)
            or np.isnan(quantiles).any() or not np.isfinite(cumulative_counts).all()
            or not np.isfinite(num_pos_inf)):
        return TFDVS(quantiles, cumulative_counts, finite_min, finite_max, num_buckets,
                     num_pos_inf)
    assert np.all(quantiles[:-1] <= quantiles[1:])
    stripped, counts, num_neg_inf = quantiles_util._strip_infinities(
        quantiles, cumulative_counts, finite_max, num_pos_inf)
    lo, hi, weights = bin_weights(stripped, counts)
    # As TFDV's protobuf buckets hold them: doubles.
    lo, hi, weights = (np.asarray(a, np.float64) for a in (lo, hi, weights))
    if finite_min == finite_max:
        edges = np.array([finite_min, finite_max])
    else:
        edges = np.linspace(finite_min, finite_max, num_buckets + 1)
    result = statistics_pb2.Histogram(type=statistics_pb2.Histogram.STANDARD)
    if finite_min != finite_max and not np.isfinite(edges).all():
        return result
    overlap = _overlaps(lo, hi, edges)
    if overlap is None or (weights < 0).any():  # a zero overlap times a negative weight: -0.0
        return TFDVS(quantiles, cumulative_counts, finite_min, finite_max, num_buckets,
                     num_pos_inf)
    # TFDV adds overlap x weight bucket by bucket; a running sum adds in the same order (the
    # buckets it skips add exact zeros).
    products = overlap * weights
    sample_counts = (np.add.accumulate(products, axis=1)[:, -1] if products.shape[1]
                     else np.zeros(len(products)))
    if num_neg_inf:
        result.buckets.add(low_value=float("-inf"), high_value=float("-inf"),
                           sample_count=num_neg_inf)
    for low, high, count in zip(edges[:-1], edges[1:], sample_counts, strict=False):
        result.buckets.add(low_value=low, high_value=high, sample_count=count)
    if num_pos_inf:
        result.buckets.add(low_value=float("inf"), high_value=float("inf"),
                           sample_count=num_pos_inf)
    return result


def install() -> None:
    """Puts `equi_width_histogram` in place of TFDV's in this process; idempotent."""
    quantiles_util.generate_equi_width_histogram = equi_width_histogram
