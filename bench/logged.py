"""What two benchmarks share: generated listening rows served and logged as the gateway logs
them (one PredictionLog per request, one example each, GZIP TFRecord files).

    from logged import RequestLog, served_examples   # bench/ is on sys.path when a script runs
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2


def served_examples(data_dir: str) -> Iterator[tuple[str, bytes, int]]:
    """(request id, the example as served: without the label, the label) for every row of the
    generated span under `data_dir`, in file order."""
    from tandem.pipeline.datasets import listening

    files = sorted(tf.io.gfile.glob(os.path.join(data_dir, "span-*", "*.tfrecord.gz")))
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        example = tf.train.Example.FromString(raw)
        label = example.features.feature[listening.LABEL].int64_list.value[0]
        del example.features.feature[listening.LABEL]
        request_id = example.features.feature["request_id"].bytes_list.value[0].decode()
        yield request_id, example.SerializeToString(), label


class RequestLog:
    """A request log written as the gateway writes one: a request and its answer per record."""

    def __init__(self, directory: str, model: str = "listening"):
        from tandem.schemas.request_log import LogWriter

        self.model = model
        self.writer = LogWriter(directory, fsync_interval_s=0, max_bytes=1 << 30)
        self.n = 0

    def write(self, request_id: str, served: bytes) -> None:
        from tandem.schemas.request_log import make_record

        spec = model_pb2.ModelSpec(name=self.model)
        request = predict_pb2.PredictRequest(model_spec=spec)
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto([served], dtype=tf.string))
        response = predict_pb2.PredictResponse(model_spec=spec)
        response.model_spec.version.value = 1
        self.writer.write(make_record(
            request=request, response=response, model_name=self.model, model_version=1,
            signature_name="serving_default", request_id=request_id, example_ids=[request_id],
            timestamp=1_800_000_000 + self.n * 0.01))
        self.n += 1

    def close(self) -> None:
        self.writer.close()
