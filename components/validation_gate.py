"""Validation front: a gate that stops the pipeline when ExampleValidator found anomalies.

ExampleValidator records its verdict but never fails; downstream stages (Transform, Trainer)
depend on this gate, so bad data stops the run before anything is trained on it, on the local
runner and on Kubeflow alike.
"""


import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx

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


@tfx.dsl.components.component
def ValidationGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> None:
    """Fail when any validated split is not blessed by ExampleValidator."""
    blessed = anomalies.get_json_value_custom_property("blessed") or {}
    bad = sorted(split for split, value in dict(blessed).items() if not value)
    if bad:
        raise AnomaliesFound(anomalies.uri, bad)
