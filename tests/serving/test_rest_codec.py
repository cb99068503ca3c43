"""The JSON codec on its own: TF Serving's float text (json_tensor.cc and its tests) and its
reading of nested arrays."""

import json

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2

from tandem.serving.errors import InvalidArgument
from tandem.serving.rest_codec import predict_json, predict_request
from tandem.serving.tensor_codec import fill_tensor_proto, flat_values


def _json(row_format=True, **outputs) -> bytes:
    response = predict_pb2.PredictResponse()
    for name, array in outputs.items():
        fill_tensor_proto(response.outputs[name], array)
    return predict_json(response, row_format)


def test_floats_are_written_as_tf_servings_own_tests_expect():
    """json_tensor_test.cc: FromJsonSingleFloatTensorSixDigitPrecision and ...NonFinite."""
    six = np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], np.float32)
    assert _json(y=six) == b'{"predictions":[[9e+06,999999.0,0.5],[0.0003,3e-05,555557.5]]}'
    special = np.array([[np.nan, np.inf], [3, -np.inf]], np.float32)
    assert _json(y=special) == b'{"predictions":[[NaN,Infinity],[3.0,-Infinity]]}'


@pytest.mark.parametrize("value, dtype, text", [
    (1 / 3, np.float32, "0.333333343"),  # max_digits10 of float32, not the shortest 0.33333334
    (0.2, np.float32, "0.2"),  # six digits that read back: no float -> double noise
    (2**24, np.float32, "16777216.0"),  # nine digits, positional, then '.0'
    (1435774336, np.float32, "1.43577434e+09"),  # %.9g takes an exponent from 1e9 on
    (-0.0, np.float32, "-0.0"),
    (1e-45, np.float32, "1.4013e-45"),  # the smallest subnormal
    (0.1 + 0.2, np.float64, "0.30000000000000004"),  # max_digits10 of double: 17
    (1 / 3, np.float64, "0.33333333333333331"),
    (1e300, np.float64, "1e+300"),
    (2.0, np.float64, "2.0"),
])
def test_one_float_as_tf_serving_writes_it(value, dtype, text):
    assert _json(False, y=np.array(value, dtype)) == f'{{"outputs":{text}}}'.encode()


def test_every_float_text_reads_back_as_the_same_float32():
    rng = np.random.default_rng(7)
    values = (rng.standard_normal(20000) * 10.0 ** rng.integers(-40, 38, 20000)).astype(np.float32)
    values = values[np.isfinite(values)]
    text = _json(False, y=values)
    back = np.array(json.loads(text)["outputs"], np.float32)
    np.testing.assert_array_equal(back, values)


def test_named_outputs_rows_and_columns():
    outputs = {"n": np.array([[1], [2]], np.int64), "ok": np.array([True, False]),
               "s": np.array([b"a", b"\xff"], dtype=object),
               "s_bytes": np.array([b"a", b"b"], dtype=object)}
    assert json.loads(_json(**outputs)) == {"predictions": [
        {"n": [1], "ok": True, "s": "a", "s_bytes": {"b64": "YQ=="}},
        {"n": [2], "ok": False, "s": {"b64": "/w=="}, "s_bytes": {"b64": "Yg=="}}]}
    assert json.loads(_json(False, **outputs))["outputs"]["n"] == [[1], [2]]
    assert _json(y=np.zeros((2, 0, 3), np.float32)) == b'{"predictions":[[],[]]}'
    with pytest.raises(InvalidArgument, match="Failed to write JSON value for tensor type: half"):
        _json(y=np.array([1.5], np.float16))  # TF Serving writes no half


def test_nesting_deeper_than_numpy_is_read_as_tf_serving_reads_it():
    def nested(value, depth):
        for _ in range(depth):
            value = [value]
        return value

    spec = model_pb2.ModelSpec(name="m")
    request, _ = predict_request({"inputs": nested([1.5, 2.5], 60)}, spec,
                                 lambda name: {"x": types_pb2.DT_FLOAT})
    x = request.inputs["x"]
    assert [d.size for d in x.tensor_shape.dim] == [1] * 60 + [2]
    assert flat_values(x)[0].tolist() == [1.5, 2.5]
    request, _ = predict_request({"inputs": nested(["a", {"b64": "/w=="}], 40)}, spec,
                                 lambda name: {"x": types_pb2.DT_STRING})
    assert list(request.inputs["x"].string_val) == [b"a", b"\xff"]
    for value, message in [
        (nested([[1.0], [2.0, 3.0]], 40), "Encountered list at unexpected size: 2 at level: 41"),
        (nested([[1.0], 2.0], 40), "JSON Value: 2.0 found at incorrect level: 42"),
        (nested([1.0, [2.0]], 40), "Encountered list at unexpected level: 41"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            predict_request({"inputs": value}, spec, lambda name: {"x": types_pb2.DT_FLOAT})
