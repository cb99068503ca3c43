"""What the model server's and the gateway's REST APIs share: TF Serving's path rules and its
JSON <-> tensor and JSON <-> tf.Example conversions (json_tensor.cc, http_rest_api_util.cc)."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, input_pb2, model_pb2, predict_pb2

from schemas.contracts import SERVING_DEFAULT
from serving.errors import InvalidArgument

# TF Serving's own path rules (http_rest_api_util.cc): case-insensitive; under /v1/ a path
# that fits neither is a malformed request (400), not an unknown resource.
PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
API_PREFIX = re.compile(r"/v1/", re.IGNORECASE)
INT64_MAX = 2**63 - 1
CORS_HEADERS = (("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "POST, GET"),
                ("Access-Control-Allow-Headers", "Content-Type"))


NP_DTYPES = {
    types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64, types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_INT8: np.int8, types_pb2.DT_INT16: np.int16, types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_HALF: np.float16,
}


def _to_bytes(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_to_bytes(v, where) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise InvalidArgument(f"{where}: an object value must be {{\"b64\": \"...\"}}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError):
            raise InvalidArgument(f"{where}: 'b64' value is not valid base64") from None
    if isinstance(value, str):
        return value.encode()
    raise InvalidArgument(f"{where}: expected a string or {{\"b64\": ...}}, got {value!r}")


def _tensor(value: Any, dtype: int, where: str):
    if dtype == types_pb2.DT_STRING:
        array = np.array(_to_bytes(value, where), dtype=object)
    elif dtype in NP_DTYPES:
        try:
            array = np.array(value, dtype=NP_DTYPES[dtype])
        except (ValueError, TypeError, OverflowError):
            raise InvalidArgument(
                f"{where}: cannot convert {json.dumps(value)[:80]} to "
                f"{types_pb2.DataType.Name(dtype)[3:].lower()}"
            ) from None
    else:
        raise InvalidArgument(f"{where}: dtype {types_pb2.DataType.Name(dtype)} not supported")
    if array.dtype == object and any(isinstance(x, (list, np.ndarray)) for x in array.flat):
        raise InvalidArgument(f"{where}: ragged lists are not a tensor")
    return tf.make_tensor_proto(array, dtype=dtype)


def signature_name(body: dict) -> str:
    name = body.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidArgument(f"'signature_name' must be a string, got {json.dumps(name)[:80]}")
    return name


def predict_request(body: dict, spec: model_pb2.ModelSpec,
                    signature_inputs: Callable[[str], dict[str, int]]) -> tuple[Any, bool]:
    """Row ('instances') or columnar ('inputs') JSON to a PredictRequest; `signature_inputs`
    gives a signature's input names and dtypes (from the servable, or from GetModelMetadata)."""
    sig_name = signature_name(body) or SERVING_DEFAULT
    sig_inputs = signature_inputs(sig_name)
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise InvalidArgument("request must have exactly one of 'instances' or 'inputs'")
    names = sorted(sig_inputs)
    request = predict_pb2.PredictRequest(model_spec=spec)
    request.model_spec.signature_name = sig_name
    if has_rows:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidArgument("'instances' must be a non-empty list")
        named = all(isinstance(i, dict) and "b64" not in i for i in instances)
        if named:
            columns = {}
            for i, instance in enumerate(instances):
                if set(instance) != set(names):
                    raise InvalidArgument(
                        f"instance {i} has inputs {sorted(instance)}; signature '{sig_name}' "
                        f"expects {names}"
                    )
                for k, v in instance.items():
                    columns.setdefault(k, []).append(v)
        elif len(names) == 1:
            columns = {names[0]: instances}
        else:
            raise InvalidArgument(
                f"signature '{sig_name}' has inputs {names}: each instance must be an object "
                "naming them"
            )
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and "b64" not in inputs:
            columns = inputs
        elif len(names) == 1:
            columns = {names[0]: inputs}
        else:
            raise InvalidArgument(f"signature '{sig_name}' has inputs {names}: 'inputs' must name them")
    for key, value in columns.items():
        if key not in sig_inputs:
            raise InvalidArgument(f"unknown input '{key}' (signature '{sig_name}' has {names})")
        request.inputs[key].CopyFrom(_tensor(value, sig_inputs[key], f"input '{key}'"))
    return request, has_rows


def _jsonable(value: Any, name: str = "") -> Any:
    """An output as TF Serving writes it in JSON (json_tensor.cc): float32 values as the
    shortest text that reads back as the same float32 (0.0003, not 0.0003000000142492354);
    strings as text, or {"b64": ...} when the output's name ends in `_bytes` (or the bytes are
    not UTF-8)."""
    array = np.asarray(value)
    if array.dtype == np.float32:
        # numpy prints a float32 as its shortest round-trip text; read back as a Python float,
        # that text is what json.dumps writes.
        return array.astype(str).astype(np.float64).tolist()
    if array.dtype.kind in ("O", "S", "U"):
        as_b64 = name.endswith("_bytes")

        def convert(x):
            if isinstance(x, str):
                x = x.encode()
            if not isinstance(x, bytes):
                return x
            if not as_b64:
                try:
                    return x.decode()
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(x).decode()}

        if array.ndim == 0:
            return convert(array.item())
        return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def predict_json(response: predict_pb2.PredictResponse, row_format: bool) -> dict:
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    if not row_format:
        if len(outputs) == 1:
            (name, value), = outputs.items()
            return {"outputs": _jsonable(value, name)}
        return {"outputs": {k: _jsonable(v, k) for k, v in outputs.items()}}
    if len(outputs) == 1:
        (name, value), = outputs.items()
        return {"predictions": _jsonable(value, name)}
    batch = {len(v) if np.ndim(v) else 0 for v in outputs.values()}
    if len(batch) != 1 or 0 in batch:
        raise InvalidArgument("outputs have different batch sizes (or none); use the columnar "
                              "'inputs' format")
    rows = [{k: _jsonable(v[i], k) for k, v in outputs.items()} for i in range(batch.pop())]
    return {"predictions": rows}


def _feature(value: Any, where: str, dtype: tf.DType | None = None) -> feature_pb2.Feature:
    """A JSON feature value as a tf.train.Feature. When the model parses the feature
    (`dtype`, from its ParseExample op), the value is encoded as that type: JSON has one kind
    of number, so `17` for a float feature is 17.0, not an int64 the model would refuse."""
    values = value if isinstance(value, list) else [value]
    feature = feature_pb2.Feature()
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if dtype is not None and dtype.is_floating:
        if not numbers:
            raise InvalidArgument(f"{where} takes numbers (the model parses it as "
                                  f"{dtype.name}); got {json.dumps(value)[:80]}")
        feature.float_list.value.extend(float(v) for v in values)
    elif dtype is not None and dtype.is_integer:
        whole = all(isinstance(v, bool) or (isinstance(v, (int, float)) and float(v).is_integer()
                                            and abs(v) <= INT64_MAX) for v in values)
        if not whole:
            raise InvalidArgument(f"{where} takes whole numbers (the model parses it as "
                                  f"{dtype.name}); got {json.dumps(value)[:80]}")
        feature.int64_list.value.extend(int(v) for v in values)
    elif dtype is not None and dtype == tf.string:
        if any(not isinstance(v, (str, dict)) for v in values):
            raise InvalidArgument(f"{where} takes strings (the model parses it as string); "
                                  f"got {json.dumps(value)[:80]}")
        feature.bytes_list.value.extend(_to_bytes(values, where))
    elif all(isinstance(v, bool) or isinstance(v, int) for v in values):
        feature.int64_list.value.extend(int(v) for v in values)
    elif numbers:
        feature.float_list.value.extend(float(v) for v in values)
    else:
        feature.bytes_list.value.extend(_to_bytes(values, where))
    return feature


def _example(obj: Any, where: str, types: dict[str, tf.DType]) -> example_pb2.Example:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where} must be an object of feature values")
    example = example_pb2.Example()
    for key, value in obj.items():
        example.features.feature[key].CopyFrom(
            _feature(value, f"{where} feature '{key}'", types.get(key)))
    return example


def example_input(body: dict, types: dict[str, tf.DType] | None = None) -> input_pb2.Input:
    """The `examples` (and optional `context`) of a :classify/:regress body, each feature
    encoded as the model parses it (`types`)."""
    types = types or {}
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise InvalidArgument("request must have a non-empty 'examples' list")
    model_input = input_pb2.Input()
    if "context" in body:
        target = model_input.example_list_with_context
        target.context.CopyFrom(_example(body["context"], "context", types))
    else:
        target = model_input.example_list
    for i, e in enumerate(examples):
        target.examples.add().CopyFrom(_example(e, f"example {i}", types))
    return model_input


def parse_path(method: str, path: str) -> tuple[model_pb2.ModelSpec, str | None, bool]:
    """(model spec, verb, whether metadata) of a /v1/ path, by TF Serving's rules."""
    malformed = InvalidArgument(f"Malformed request: {method} {path}")
    match = None
    if method == "POST":
        match = PREDICTION_PATH.fullmatch(path)
    elif method == "GET":
        match = STATUS_PATH.fullmatch(path)
    if match is None:
        raise malformed
    name, version, label, last = match.groups()
    if not name:
        raise InvalidArgument("Missing model name in request.")
    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name))
    if version:
        if int(version) > INT64_MAX:
            raise InvalidArgument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    elif label:
        spec.version_label = urllib.parse.unquote(label)
    if method == "POST":
        return spec, last.lower(), False
    return spec, None, bool(last)


def metadata_json(response) -> dict:
    """GetModelMetadata as TF Serving's REST API writes it (http_rest_api_util.cc): field
    names as in the protos, fields at their defaults included, and the SignatureDefMap
    unpacked (no '@type')."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    options = {"preserving_proto_field_name": True, "including_default_value_fields": True}
    return {
        "model_spec": json_format.MessageToDict(response.model_spec, **options),
        "metadata": {"signature_def": json_format.MessageToDict(sig_map, **options)},
    }


def classify_json(response) -> dict:
    """A ClassificationResponse as TF Serving's REST API writes it."""
    return {"results": [
        [[c.label, _jsonable(np.float32(c.score))] for c in item.classes]
        for item in response.result.classifications
    ]}


def regress_json(response) -> dict:
    """A RegressionResponse as TF Serving's REST API writes it."""
    values = np.array([r.value for r in response.result.regressions], np.float32)
    return {"results": _jsonable(values)}


def parse_body(raw: bytes) -> dict:
    """A request body as a JSON object, with TF Serving's error wording."""
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"JSON Parse error: {e}") from None
    except RecursionError:
        raise InvalidArgument("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body
