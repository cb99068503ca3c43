"""A multi-class model (string labels) and a regression model that tandem trained, behind the
gateway: Predict and Classify or Regress answer as the model server answers them directly,
the API a model cannot serve gets the model server's own error, and the log holds each
answer so that LogExampleGen joins its labels and the shadow replay replays it."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
import yaml
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    model_pb2,
    regression_pb2,
)

from tandem.components.log_example_gen.join import JoinStats, first_places, join_records
from tandem.schemas import load_schema
from tandem.schemas.labels import Label, label_kind
from tandem.schemas.request_log import read_records
from tests.serving.gateway.conftest import predict_request, stub

pytestmark = pytest.mark.xdist_group("trained_tabular")

MODEL = "model"
# problem type -> (the API it serves, its signature; the API it cannot serve, and what the
# model server answers for it with each signature: TF Serving's words, classifier.cc and
# regressor.cc)
APIS = {
    "multiclass_classification": ("Classify", "classification", "Regress", {
        "classification": "Expected one output Tensor.",
        "": "Expected one output Tensor."}),
    "regression": ("Regress", "regression", "Classify", {
        "regression": 'Expected classification signature outputs to contain at least one of '
                      '"classes" or "scores".',
        "": "No classification inputs found in SignatureDef"}),
}


def _gateway_config(tmp_path, port: int, schema: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({
        "primary": {"address": f"127.0.0.1:{port}", "model_name": MODEL},
        "schema": schema, "log": {"dir": str(tmp_path / "logs")}}))
    return str(path)


def _request(api: str, examples: list[bytes], signature: str):
    spec = model_pb2.ModelSpec(name=MODEL, signature_name=signature)
    model_input = input_pb2.Input(example_list=input_pb2.ExampleList(
        examples=[tf.train.Example.FromString(e) for e in examples]))
    if api == "Classify":
        return classification_pb2.ClassificationRequest(model_spec=spec, input=model_input)
    return regression_pb2.RegressionRequest(model_spec=spec, input=model_input)


def _error(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, metadata=(("x-request-id", "wrong-api"),))
    return info.value.code(), info.value.details()


@pytest.mark.parametrize("problem_type", sorted(APIS))
def test_each_problem_type_answers_through_the_gateway_as_the_model_server_does(
        problem_type, trained_tabular, start_server, start_gateway, tmp_path):
    from tandem.pipeline.traffic_checks import run_replay

    model = trained_tabular(problem_type)
    api, signature, wrong_api, wrong = APIS[problem_type]
    server = start_server(model_name=MODEL, model_base_path=model.base)
    gateway = start_gateway(_gateway_config(tmp_path, server.grpc_port, model.schema),
                            rest=False)
    through, direct = stub(gateway.port), stub(server.grpc_port)
    sent = {"predict": model.examples[:40], "own": model.examples[40:80]}

    predicted = through.Predict(predict_request(sent["predict"], MODEL),
                                metadata=(("x-request-id", "predict"),))
    assert predicted == direct.Predict(predict_request(sent["predict"], MODEL))
    own = _request(api, sent["own"], signature)
    answered = getattr(through, api)(own, metadata=(("x-request-id", "own"),))
    assert answered == getattr(direct, api)(own)
    # Classify and Regress answer what Predict answers for the same examples.
    same = {k: tf.make_ndarray(v) for k, v in
            direct.Predict(predict_request(sent["own"], MODEL)).outputs.items()}
    if api == "Classify":
        rows = answered.result.classifications
        assert [[c.label for c in row.classes] for row in rows] == \
            [[c.decode() for c in names] for names in same["classes"]]
        np.testing.assert_allclose([[c.score for c in row.classes] for row in rows],
                                   same["scores"], rtol=1e-6)
        assert sorted(rows[0].classes[i].label for i in range(3)) == ["high", "low", "mid"]
    else:
        np.testing.assert_allclose([r.value for r in answered.result.regressions],
                                   same["predictions"], rtol=1e-6)
    # The API the model cannot serve: the model server's status, passed through unchanged.
    for sig, message in wrong.items():
        request = _request(wrong_api, model.examples[80:81], sig)
        code, details = _error(getattr(through, wrong_api), request)
        assert (code, details) == _error(getattr(direct, wrong_api), request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(message)
    gateway.stop()

    records = {r.request_id: r for r in read_records(str(tmp_path / "logs"))}
    assert sorted(records) == ["own", "predict", "wrong-api"]
    assert records["own"].log.WhichOneof("log_type") == f"{api.lower()}_log"
    for name in ("predict", "own"):
        assert [tf.train.Example.FromString(e) for e in records[name].examples()] == \
            [tf.train.Example.FromString(e) for e in sent[name]]
    logged = records["own"].outputs()  # read alike whichever API answered
    if api == "Classify":
        np.testing.assert_allclose(logged["scores"], same["scores"], rtol=1e-6)
        assert logged["classes"].tolist() == same["classes"].tolist()
    else:
        np.testing.assert_allclose(logged["outputs"], same["predictions"], rtol=1e-6)
    assert records["wrong-api"].error["code"] == "INVALID_ARGUMENT"
    assert records["wrong-api"].outputs() == {}

    # LogExampleGen: the labels join as the schema types them (class names as text).
    kind = label_kind(load_schema(model.schema), "y")
    assert kind == ("BYTES" if api == "Classify" else "FLOAT")
    labels = {f"{name}/{i}": Label(value) for name, part in (("predict", 0), ("own", 40))
              for i, value in enumerate(model.labels[part:part + 40])}
    stats = JoinStats()
    files = sorted(str(p) for p in (tmp_path / "logs").iterdir())
    joined = list(join_records(read_records(files, files=files), labels, "y", kind, 3600.0,
                               stats, first_places(read_records(files, files=files))))
    assert stats.joined == 80 and stats.unlabelled == 1
    field = "bytes_list" if kind == "BYTES" else "float_list"
    values = [getattr(tf.train.Example.FromString(data).features.feature["y"], field).value[0]
              for _, data, _ in joined]
    expected = [labels[rid].value for rid, _, _ in joined]
    assert values == ([v.encode() for v in expected] if kind == "BYTES"
                      else pytest.approx(expected, rel=1e-6))

    # The shadow replay replays every answered example, whichever API answered it.
    report = run_replay(str(tmp_path / "logs"), model.base, model.base,
                        str(tmp_path / "replay"))
    assert report["input"]["replayed_examples"] == 80
    assert report["input"]["failed_requests"] == len(wrong)  # one per wrong-API request
    assert report["parity"]["mismatched"] == 0
