"""The statistics report on a large schema, on hostile feature names, on identifiers and on
high-cardinality values."""

import re

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from tandem.pipeline.statistics_report import statistics_page
from tandem.schemas.identifiers import declare_identifiers
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


def split_statistics(rows: int, first_id: int, seed: int):
    """Statistics of one split of logged requests: a unique request id, a device, an age."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"request_id": [f"s1-{first_id + i:09d}" for i in range(rows)],
                          "device": rng.choice(["mobile", "desktop", "tablet"], rows),
                          "age": rng.integers(16, 80, rows)})
    return tfdv.generate_statistics_from_dataframe(frame)


def kinds(html: str) -> dict[str, str]:
    """Each feature's kind, as the summary table says it."""
    return dict(re.findall(r'<a href="#f-([^"]+)">[^<]*</a></td><td>([a-z]+)</td>', html))


@pytest.mark.slow
def test_a_200_feature_comparison_stays_small_and_renders(tmp_path):
    a = wide_statistics(200, 2000, seed=1)
    b = wide_statistics(200, 2000, seed=2, shift=0.5)
    path = statistics_page(a, b, names=("training", "serving")).write(str(tmp_path / "wide.html"))
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
    path = statistics_page(stats).write(str(tmp_path / "hostile.html"))
    text = open(path).read()
    assert hostile not in text and "<script>alert(2)" not in text
    rendered = browser.render(path, str(tmp_path / "hostile.png"))
    assert rendered.errors == [] and rendered.requests == [] and rendered.server_hits == []


def test_an_identifier_is_described_never_judged(tmp_path):
    """Train and eval of the same requests hold different ids by design: the report says the
    id is an identifier, describes it, and raises no alert (declared or not)."""
    train, evaluation = split_statistics(3000, 0, seed=1), split_statistics(1500, 3000, seed=2)
    schema = tfdv.infer_schema(train)
    declare_identifiers(schema, ["request_id"])
    for schema_given, why in ((schema, "declared in the schema"),
                              (None, "unique in 100% of its examples")):
        html = statistics_page(train, evaluation, schema_given, names=("train", "eval")).render()
        assert "0 feature(s) changed" in html and "ALERT" not in html
        assert kinds(html) == {"age": "numeric", "device": "categorical",
                               "request_id": "identifier"}
        assert f"request_id ({why})" in html
        block = html[html.index('id="f-request_id"'):]
        block = block[:block.index("</details>")]
        assert "<figure>" not in block  # described in a table: counts and uniqueness
        assert "3,000 of 3,000" in block and "100.0%" in block


def test_high_cardinality_features_show_their_top_20_with_labels_apart(tmp_path):
    """Long URLs (3,000 of them) and session ids seen twice each: neither is unique enough to
    be an identifier, so each chart draws its top 20, shortened where the values differ, and
    no two tick labels meet as Chromium lays them out (the session shares are tiny, which
    once gave five-decimal ticks that ran into each other)."""
    rng = np.random.default_rng(5)
    urls = np.array([f"https://catalogue.example/tracks/{i:06d}?from=radio" for i in range(3000)])
    a, b = (tfdv.generate_statistics_from_dataframe(pd.DataFrame({
        "track_url": rng.choice(urls, 8000),
        "session": [f"{(i + offset) // 2:08x}-4bd1-9f0e-session" for i in range(8000)]}))
        for offset in (0, 8000))
    path = statistics_page(a, b, names=("training", "serving")).write(str(tmp_path / "hc.html"))
    assert kinds(open(path).read()) == {"session": "categorical", "track_url": "categorical"}
    rendered = browser.render(path, str(tmp_path / "hc.png"))
    assert rendered.errors == [] and rendered.violations == []
    assert len(rendered.tick_labels) == 2
    for chart in rendered.tick_labels:
        y, x = chart["y"], chart["x"]
        assert len(y) == 20 and len({label["text"] for label in y}) == 20
        assert all(len(label["text"]) <= 24 and "…" in label["text"] for label in y)
        assert 2 <= len(x) <= 5
        assert browser.overlapping(y + x) == []
        left, top, right, bottom = chart["svg"]
        for label in y + x:  # none cut off by the figure's edge
            lo, hi, r, btm = label["box"]
            assert left <= lo and r <= right and top <= hi and btm <= bottom, label
