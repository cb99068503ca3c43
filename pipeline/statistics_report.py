"""The statistics report's measurements: which features are identifiers and how two datasets
differ. reports/stats.py draws a page from what this measures; `tandem run`, `tandem report
stats` and the notebook all come through here, so they judge data alike and as the monitor
does (the same identifiers, the same drift measures)."""

from __future__ import annotations

import os

from tandem.components.monitor.drift import DriftConfig, compare_datasets
from tandem.reports.html import Page
from tandem.reports.stats import stats_report
from tandem.schemas.identifiers import identifiers


def statistics_page(stats, compare=None, schema=None, anomalies=None,
                    names: tuple[str, str] = ("data", "other"),
                    title: str = "tandem statistics") -> Page:
    """One dataset's statistics (the first of `stats`), or two side by side with the drift
    measures between them. Identifiers (the schema's, or string features unique per
    example) are described, never compared."""
    datasets = [stats.datasets[0]] + ([compare.datasets[0]] if compare is not None else [])
    ids = identifiers(schema, datasets)
    drift = None
    if compare is not None:
        # Every example counts here: a small eval split is still worth comparing.
        drift = compare_datasets(datasets[0], datasets[1],
                                 DriftConfig(min_examples=1, identifiers=ids))
    return stats_report(stats, compare, schema, anomalies, names=names, title=title,
                        drift=drift, identifiers=ids)


def write_run_report(statistics_uri: str, schema_path: str | None, anomalies_uri: str | None,
                     out_path: str, title: str) -> str:
    """The report `tandem run` writes beside its outputs: the train and eval splits side by
    side, the schema's domains, drift measures between the splits, and the anomalies."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

    def stats(split):
        path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path, "rb") as f:
            return statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())

    train, evaluation = stats("train"), stats("eval")
    schema = None
    if schema_path:
        from tandem.schemas import load_schema

        schema = load_schema(schema_path)
    anomalies = None
    if anomalies_uri:
        path = os.path.join(anomalies_uri, "Split-train", "SchemaDiff.pb")
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "rb") as f:
                anomalies = anomalies_pb2.Anomalies.FromString(f.read())
    first = train or evaluation
    if first is None:
        raise FileNotFoundError(f"no Split-*/FeatureStats.pb under {statistics_uri}")
    page = statistics_page(first, evaluation if train is not None else None, schema, anomalies,
                           names=("train", "eval"), title=title)
    return page.write(out_path)
