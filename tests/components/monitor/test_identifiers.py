"""Identifiers are declared once, in the schema: `tandem monitor` and the statistics report
both read that declaration, and both follow when it changes."""

import glob
import os
import re

import pytest
import tensorflow_data_validation as tfdv

from tandem.components.monitor.job import load_statistics
from tandem.pipeline.config import load_config
from tandem.pipeline.pipeline import statistics_options
from tandem.pipeline.statistics_report import statistics_page
from tandem.pipeline.traffic_checks import run_monitor
from tandem.schemas import load_schema, write_schema
from tandem.schemas.identifiers import TAG
from tests.components.monitor.conftest import examples_of, write_log

pytestmark = pytest.mark.xdist_group("monitor")

CANDIDATES = {"request_id", "user_id", "track_id", "device"}


def _schema_declaring(names: set[str], path: str) -> str:
    """The curated listening schema with exactly `names` declared identifiers."""
    schema = load_schema(load_config("listening").schema)
    for feature in schema.feature:
        tags = feature.annotation.tag
        if feature.name in names and TAG not in tags:
            tags.append(TAG)
        elif feature.name not in names and TAG in tags:
            tags.remove(TAG)
    write_schema(schema, path)
    return path


@pytest.mark.slow
def test_the_monitor_and_the_report_follow_one_declaration(monitor_data, training_statistics,
                                                           tmp_path):
    write_log(tmp_path / "logs", examples_of(monitor_data / "clean")[:1200])
    train = load_statistics(training_statistics)
    [clean] = glob.glob(os.path.join(monitor_data, "clean", "span-*", "*.tfrecord.gz"))
    serving = tfdv.generate_statistics_from_tfrecord(
        clean, output_path=str(tmp_path / "serving.tfrecord"), stats_options=statistics_options())
    # As shipped, then with user_id no longer declared and device declared instead.
    for n, declared in enumerate(({"request_id", "user_id", "track_id"},
                                  {"request_id", "track_id", "device"})):
        schema = _schema_declaring(declared, str(tmp_path / f"schema-{n}.pbtxt"))
        config = load_config("listening", [f"schema={schema}"])
        out = tmp_path / f"monitor-{n}"
        summary = run_monitor(str(tmp_path / "logs"), config, str(out), window_records=600,
                              training_statistics=training_statistics)
        judged = {name for w in summary["windows"] for kind in ("drift", "skew")
                  for name in w.get(kind, {}).get("features", {})}
        html = statistics_page(train, serving, load_schema(schema)).render()
        described = set(re.findall(r'<a href="#f-([^"]+)">[^<]*</a></td><td>identifier</td>',
                                   html))
        compared = set(re.findall(r'<a href="#f-([^"]+)">[^<]*</a></td><td>(?:numeric|'
                                  r"categorical)</td>(?:<td>[^<]*</td>){2}<td>\d", html))
        # Both take the declaration, and only it (nothing else here looks like an id).
        assert set(summary["identifiers"]) == described == declared
        assert not judged & declared and not compared & declared
        assert CANDIDATES - declared <= judged and CANDIDATES - declared <= compared
        page = (out / "report.html").read_text()
        assert all(f"{name} (declared in the schema)" in page for name in declared)


def test_the_monitor_leaves_deprecated_and_disabled_features_alone():
    """As TFDV does: a column `schema propose` disabled (no values then) must not alarm when
    it fills, and a deprecated one is not watched; identifiers are pruned as before."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from tandem.components.monitor.windows import monitored_schema
    from tandem.schemas import curated_schema_path, load_schema

    schema = load_schema(curated_schema_path("listening"))
    tfdv.get_feature(schema, "country").lifecycle_stage = schema_pb2.DISABLED
    tfdv.get_feature(schema, "genre").deprecated = True
    tfdv.get_feature(schema, "age").lifecycle_stage = schema_pb2.BETA
    kept = {f.name for f in monitored_schema(schema, "skipped").feature}
    assert not kept & {"country", "genre", "request_id", "user_id", "track_id"}, kept
    assert {"age", "device", "duration_s", "skipped"} <= kept
