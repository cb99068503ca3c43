"""`tandem traffic send`: requests from tf.Example files, through a real PredictionServiceStub,
at a steady rate, with a progress line. The loop, the benchmarks and the README use it.

Client-side drift (`--drift`) changes what the client sends, as a changed app would:

    new_device       10% of requests come from a device the schema does not know ('smart_tv')
    missing_device   10% of requests lack 'device'
    night_owls       every request's hour_of_day moves into 0-5 (the feature's distribution)
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import time
from collections.abc import Callable, Iterator

from tandem.schemas.exit_status import BadInputError
from tandem.schemas.files import tfrecord_compression

DRIFTS = {
    "new_device": "10% of requests come from a device the schema does not know ('smart_tv')",
    "missing_device": "10% of requests lack 'device'",
    "night_owls": "every request's hour_of_day moves into 0-5",
}


class TrafficError(BadInputError):
    """Bad input for traffic send: the message names it (exit status 2)."""


@dataclasses.dataclass
class TrafficResult:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


def example_files(pattern: str) -> list[str]:
    import tensorflow as tf

    files = sorted(globlib.glob(pattern)) if "://" not in pattern else \
        sorted(tf.io.gfile.glob(pattern))
    files = [f for f in files if not f.endswith((".json", ".csv", ".sqlite"))]
    if not files:
        raise TrafficError(f"no example files match {pattern}")
    return files


def read_examples(files: list[str]) -> Iterator[bytes]:
    import tensorflow as tf

    for path in files:
        compression = tfrecord_compression(path)
        try:
            yield from tf.data.TFRecordDataset(path, compression_type=compression) \
                .as_numpy_iterator()
        except tf.errors.OpError as e:
            raise TrafficError(f"{path} is not a TFRecord file of tf.Examples "
                               f"({e.message.splitlines()[0]})") from None


def drifted(profile: str | None, seed: int = 0) -> Callable[[bytes, int], bytes]:
    """A function applying the client-side drift profile to one serialized example."""
    if profile is None:
        return lambda data, i: data
    if profile not in DRIFTS:
        raise TrafficError(f"unknown traffic drift '{profile}'; choose from "
                           f"{', '.join(sorted(DRIFTS))}")
    import numpy as np
    from tensorflow.core.example import example_pb2

    rng = np.random.default_rng(seed)

    def apply(data: bytes, i: int) -> bytes:
        e = example_pb2.Example.FromString(data)
        f = e.features.feature
        if profile == "new_device" and rng.random() < 0.10:
            f["device"].ClearField("bytes_list")
            f["device"].bytes_list.value.append(b"smart_tv")
        elif profile == "missing_device" and rng.random() < 0.10:
            del f["device"]
        elif profile == "night_owls":
            f["hour_of_day"].ClearField("int64_list")
            f["hour_of_day"].int64_list.value.append(int(rng.integers(0, 6)))
        return e.SerializeToString()

    return apply


def send(target: str, pattern: str, model: str, rate: float = 100.0, batch: int = 1,
         limit: int | None = None, drift: str | None = None, timeout: float = 10.0,
         progress: Callable[[str], None] | None = None) -> TrafficResult:
    """Send every example (or the first `limit`) as Predict requests of `batch` examples, at
    `rate` requests per second (0: as fast as answers come)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    if rate < 0 or batch < 1:
        raise TrafficError("--rate must be >= 0 and --batch >= 1")
    change = drifted(drift)
    examples = read_examples(example_files(pattern))
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=5)
    except grpc.FutureTimeoutError:
        channel.close()
        raise TrafficError(f"nothing answers at {target} (is the gateway or model server "
                           "running?)") from None
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    result = TrafficResult()
    start = last = time.monotonic()
    n = 0
    try:
        while limit is None or n < limit:
            chunk = []
            for data in examples:
                chunk.append(change(data, n + len(chunk)))
                if len(chunk) == batch or (limit is not None and n + len(chunk) >= limit):
                    break
            if not chunk:
                break
            if rate > 0:
                due = start + result.sent / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(chunk, dtype=tf.string))
            try:
                stub.Predict(request, timeout=timeout)
                result.ok += 1
            except grpc.RpcError as e:
                code = e.code().name
                result.errors[code] = result.errors.get(code, 0) + 1
            result.sent += 1
            n += len(chunk)
            now = time.monotonic()
            if progress is not None and now - last >= 1.0:
                last = now
                progress(f"traffic: {result.sent:,} requests ({n:,} examples), "
                         f"{result.sent / (now - start):.0f}/s, "
                         f"{sum(result.errors.values())} errors")
    finally:
        channel.close()
    result.seconds = time.monotonic() - start
    return result
