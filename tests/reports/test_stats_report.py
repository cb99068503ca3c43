"""The statistics report on a large schema, and on hostile feature names."""

import numpy as np
import pandas as pd
import tensorflow_data_validation as tfdv

from reports.stats import stats_report
from tests import browser


def wide_statistics(features: int, rows: int, seed: int, shift: float = 0.0):
    """TFDV statistics of `features` columns: half numeric, half categorical."""
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(features // 2):
        columns[f"num_{i:03d}"] = rng.normal(shift * (i % 3), 1.0 + i % 5, rows)
        columns[f"cat_{i:03d}"] = rng.choice([f"v{j}" for j in range(3 + i % 30)], rows)
    options = tfdv.StatsOptions(num_quantiles_histogram_buckets=100, num_histogram_buckets=20)
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(columns), stats_options=options)


def test_a_200_feature_comparison_stays_small_and_renders(tmp_path):
    a = wide_statistics(200, 2000, seed=1)
    b = wide_statistics(200, 2000, seed=2, shift=0.5)
    path = stats_report(a, b, names=("training", "serving")).write(str(tmp_path / "wide.html"))
    size = (tmp_path / "wide.html").stat().st_size
    assert size < 5 * 1024 * 1024, size
    rendered = browser.render(path, str(tmp_path / "wide.png"))
    # Every feature's chart is in the page; the first ones and the flagged ones are open.
    assert open(path).read().count("<figure>") == 200
    assert 24 <= len([f for f in rendered.figures if f[0] > 0]) <= 200
    assert rendered.requests == [] and rendered.violations == [] and rendered.errors == []


def test_feature_names_and_values_are_escaped(tmp_path):
    hostile = "<img src=x onerror=alert(1)>"
    frame = pd.DataFrame({hostile: ["</script><script>alert(2)</script>"] * 50,
                          "x": np.arange(50.0)})
    stats = tfdv.generate_statistics_from_dataframe(frame)
    path = stats_report(stats).write(str(tmp_path / "hostile.html"))
    text = open(path).read()
    assert hostile not in text and "<script>alert(2)" not in text
    rendered = browser.render(path, str(tmp_path / "hostile.png"))
    assert rendered.errors == [] and rendered.requests == [] and rendered.server_hits == []
