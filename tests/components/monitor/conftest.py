"""Monitor fixtures: generator data (clean and per drift profile) logged with the shared
writer as the gateway logs it, and training statistics of clean data."""

import os

import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2

from tandem.pipeline.datasets import listening
from tandem.schemas.request_log import LogWriter, make_record

LABEL = "skipped"


def examples_of(data_dir, label: bool = False) -> list[tuple[str, bytes, int]]:
    """(request id, served example without the label, label) for a generated span."""
    import glob

    [path] = glob.glob(os.path.join(data_dir, "span-*", "data-00000-of-00001.tfrecord.gz"))
    out = []
    for raw in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
        e = tf.train.Example.FromString(raw)
        y = e.features.feature[LABEL].int64_list.value[0]
        if not label:
            del e.features.feature[LABEL]
        rid = e.features.feature["request_id"].bytes_list.value[0].decode()
        out.append((rid, e.SerializeToString(), y))
    return out


def write_log(directory, examples, *, version: int = 1, model: str = "listening",
              start: float = 1_800_000_000.0, spacing_s: float = 1.0, per_record: int = 1,
              sources: dict[str, str] | None = None):
    """Log `examples` [(id, bytes, label)] as PredictionLogs, `per_record` a request;
    `sources`: the feature-source versions each record says decorated it."""
    writer = LogWriter(str(directory))
    for n, i in enumerate(range(0, len(examples), per_record)):
        batch = examples[i:i + per_record]
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model))
        request.inputs["examples"].CopyFrom(
            tf.make_tensor_proto([b for _, b, _ in batch], dtype=tf.string))
        response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(name=model))
        response.model_spec.version.value = version
        response.outputs["probabilities"].CopyFrom(tf.make_tensor_proto([0.5] * len(batch)))
        writer.write(make_record(request=request, response=response, model_name=model,
                                 model_version=version, signature_name="serving_default",
                                 request_id=batch[0][0], example_ids=[r for r, _, _ in batch],
                                 timestamp=start + n * spacing_s, sources=sources))
    writer.close()


@pytest.fixture(scope="session")
def monitor_data(tmp_path_factory):
    """Listening data from one world (one seed: the same users and tracks; up to 5,000 rows
    the tables do not grow): a training span, a clean served span, and one span per drift
    profile."""
    root = tmp_path_factory.mktemp("monitor-data")
    listening.generate(str(root / "train"), 5000, seed=21, span=1)
    listening.generate(str(root / "clean"), 5000, seed=21, span=2)
    for n, profile in enumerate(sorted(listening.DRIFT_PROFILES)):
        listening.generate(str(root / profile), 1000, seed=21, span=3 + n,
                           drift=frozenset([profile]))
    return root


@pytest.fixture(scope="session")
def training_statistics(monitor_data):
    """TFDV statistics of the training span, as the pipeline's StatisticsGen writes them
    (binary, its options)."""
    import tensorflow_data_validation as tfdv

    path = str(monitor_data / "train" / "span-1" / "data-00000-of-00001.tfrecord.gz")
    from tandem.pipeline.pipeline import statistics_options

    stats = tfdv.generate_statistics_from_tfrecord(
        path, output_path=str(monitor_data / "train-stats.tfrecord"),
        stats_options=statistics_options())
    out = monitor_data / "train-stats" / "FeatureStats.pb"
    os.makedirs(out.parent, exist_ok=True)
    out.write_bytes(stats.SerializeToString())
    return str(out)
