"""Validation front: a gate that stops the pipeline when ExampleValidator found anomalies.

ExampleValidator records its verdict but never fails; downstream stages (Transform, Trainer)
depend on this gate, so bad data stops the run before anything is trained on it, on the local
runner and on Kubeflow alike.
"""


import os

from tensorflow_metadata.proto.v0 import anomalies_pb2

from tandem.components import tfx_api as tfx

ANOMALIES_FILE = "SchemaDiff.pb"


class AnomaliesFound(RuntimeError):
    """Raised by the gate; carries where the anomalies are so the runner can report them."""

    def __init__(self, uri: str, splits: list[str]):
        super().__init__(f"data anomalies in split(s) {', '.join(splits)}: see {uri}")
        self.uri = uri
        self.splits = splits


def load_anomalies(uri: str, split: str) -> anomalies_pb2.Anomalies:
    """Read the Anomalies proto ExampleValidator wrote for one split."""
    anomalies = anomalies_pb2.Anomalies()
    with open(os.path.join(uri, f"Split-{split}", ANOMALIES_FILE), "rb") as f:
        anomalies.ParseFromString(f.read())
    return anomalies


def anomaly_rows(anomalies: anomalies_pb2.Anomalies) -> list[tuple[str, str, str]]:
    """(feature, anomaly type, description) for every reason, dataset-level ones included."""
    rows = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason:
            rows.append(
                (feature, anomalies_pb2.AnomalyInfo.Type.Name(reason.type), reason.description)
            )
    if anomalies.HasField("dataset_anomaly_info"):
        for reason in anomalies.dataset_anomaly_info.reason:
            rows.append(
                ("(dataset)", anomalies_pb2.AnomalyInfo.Type.Name(reason.type), reason.description)
            )
    return rows


# What to do about an anomaly whose TFDV name does not say it: one line per type.
ADVICE = {
    "INVALID_FEATURE_SHAPE": (
        "some rows lack a value, but the schema fixes the feature's shape "
        "(shape {{ dim {{ size: 1 }} }}). If missing values are expected, re-propose the schema "
        "(tandem schema propose) or replace the shape with value_count {{ min: 0 max: 1 }}; "
        "otherwise fix the data."
    ),
    "FEATURE_TYPE_LOW_FRACTION_PRESENT": (
        "fewer rows have a value than the schema's presence.min_fraction allows: fix the data, "
        "or lower min_fraction if the feature is optional."
    ),
}


def advice(rows: list[tuple[str, ...]]) -> list[str]:
    """One line per feature and anomaly type that has advice, for rows of
    (..., feature, anomaly type, description)."""
    lines, seen = [], set()
    for *_, feature, kind, _ in rows:
        if kind in ADVICE and (feature, kind) not in seen:
            seen.add((feature, kind))
            lines.append(f"{feature}: {ADVICE[kind].format()}")
    return lines


@tfx.dsl.components.component
def ValidationGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> None:
    """Fail when any validated split is not blessed by ExampleValidator."""
    blessed = anomalies.get_json_value_custom_property("blessed") or {}
    bad = sorted(split for split, value in dict(blessed).items() if not value)
    if bad:
        raise AnomaliesFound(anomalies.uri, bad)


class ModelChecksFailed(RuntimeError):
    """Raised by the model-check gate; carries the failed checks for the runner."""

    def __init__(self, uri: str, failed: list[dict]):
        names = ", ".join(c["check"] for c in failed)
        super().__init__(f"model checks failed ({names}): see the build record under {uri}")
        self.uri = uri
        self.failed = failed


@tfx.dsl.components.component
def ModelCheckGate(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
) -> None:
    """Fail when a gating check the Trainer ran on the model (components/model_checks.py)
    did not hold: the Evaluator and Pusher wait on this gate."""
    from tandem.components.build_record import RecordError, load_record

    try:
        record = load_record(model.uri)
    except RecordError:
        return  # a model without a record (imported): nothing to gate on
    failed = [c for c in record.get("checks") or [] if c.get("gate") and not c.get("passed")]
    if failed:
        raise ModelChecksFailed(model.uri, failed)
