"""Replay test traffic: the listening generator's examples as the gateway served them, and a
request log of model A's answers to them written with the shared writer."""

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2

from tandem.schemas.request_log import LogWriter, make_record
from tests.serving.gateway.conftest import training_examples


def served_examples(data_dir) -> list[bytes]:
    """The generated examples without their label, as they were served."""
    served = []
    for data in training_examples(data_dir):
        e = tf.train.Example.FromString(data)
        del e.features.feature["skipped"]
        served.append(e.SerializeToString())
    return served


def request_ids(served: list[bytes]) -> list[str]:
    return [tf.train.Example.FromString(d).features.feature["request_id"].bytes_list.value[0]
            .decode() for d in served]


def write_log(model_dir: str, served: list[bytes], log_dir: str, per_request: int = 8) -> None:
    """Model A (version 1 of 'listening', at `model_dir`) answering `served`, `per_request`
    examples a request, every output it gives logged."""
    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    writer = LogWriter(log_dir)
    for i in range(0, len(served), per_request):
        batch = served[i:i + per_request]
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="listening"))
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
        out = fn(examples=tf.constant(batch))
        response = predict_pb2.PredictResponse(model_spec=model_pb2.ModelSpec(name="listening"))
        response.model_spec.version.value = 1
        for key, value in out.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        ids = request_ids(batch)
        writer.write(make_record(request=request, response=response, model_name="listening",
                                 model_version=1, signature_name="serving_default",
                                 request_id=ids[0], example_ids=ids))
    writer.close()


def render_failed_report(out_dir, figures: int):
    """A failed replay's report.html drawn in Chromium: its `figures` charts all drawn, nothing
    fetched, no console errors or CSP violations."""
    from tests import browser

    rendered = browser.render(str(out_dir / "report.html"), str(out_dir / "report.png"))
    assert rendered.title == "tandem shadow replay: FAIL"
    assert len(rendered.figures) == figures
    assert all(w > 100 and h > 100 and drawn > 10 for w, h, drawn in rendered.figures)
    assert rendered.requests == [] and rendered.server_hits == []
    assert rendered.violations == [] and rendered.errors == []
    return rendered
