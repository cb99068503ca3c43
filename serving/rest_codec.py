"""What the model server's and the gateway's REST APIs share: TF Serving's path rules and its
JSON <-> tensor and JSON <-> tf.Example conversions (json_tensor.cc, http_rest_api_util.cc).

One module past 400 lines because request parsing and response writing are the two
directions of the same conversions, kept together as TF Serving's json_tensor.cc keeps them.
"""

from __future__ import annotations

import base64
import json
import math
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

from tandem.schemas.contracts import SERVING_DEFAULT
from tandem.serving.errors import InvalidArgument
from tandem.serving.tensor_codec import MAX_NUMPY_DIMS, flat_values

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


def _snippet(value: Any) -> str:
    """A JSON value as an error message quotes it: its first 80 characters (TF Serving cuts at
    256), or its type when it nests too deeply to print."""
    try:
        return json.dumps(value)[:80]
    except (RecursionError, ValueError, TypeError):
        return f"<a JSON {type(value).__name__}>"


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        depth += 1
        if not value:
            break
        value = value[0]
    return depth


def _dense(value: list, where: str) -> tuple[list, list[int]]:
    """A nested JSON list as its flat values and its shape, read as TF Serving reads it
    (json_tensor.cc: GetDenseTensorShape, FillTensorProto): the shape from the first element
    at each level, every list at a level of that size. Level by level, so any depth takes no
    recursion."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    items = [value]
    for level, size in enumerate(shape):
        inner = []
        for item in items:
            if not isinstance(item, list):
                raise InvalidArgument(
                    f"{where}: JSON Value: {_snippet(item)} found at incorrect level: "
                    f"{level + 1} in the JSON DOM. Expected at level: {len(shape)}")
            if len(item) != size:
                raise InvalidArgument(
                    f"{where}: Encountered list at unexpected size: {len(item)} at level: "
                    f"{level} expected size: {size}")
            inner.extend(item)
        items = inner
    if any(isinstance(item, list) for item in items):
        raise InvalidArgument(f"{where}: Encountered list at unexpected level: {len(shape)} "
                              f"expected < {len(shape)}")
    return items, shape


def _tensor(value: Any, dtype: int, where: str):
    if _depth(value) > MAX_NUMPY_DIMS:
        # Deeper than numpy goes (TensorFlow takes up to 254 dimensions): the flat values
        # through numpy, the shape written into the proto.
        flat, shape = _dense(value, where)
        proto = _tensor(flat, dtype, where)
        proto.tensor_shape.Clear()
        for size in shape:
            proto.tensor_shape.dim.add(size=size)
        return proto
    if dtype == types_pb2.DT_STRING:
        # Flattened first, so that no nesting (a deep list where a string should be) recurses.
        flat, shape = _dense(value, where) if isinstance(value, list) else ([value], [])
        array = np.array(_to_bytes(flat, where), dtype=object).reshape(shape)
    elif dtype in NP_DTYPES:
        try:
            array = np.array(value, dtype=NP_DTYPES[dtype])
        except (ValueError, TypeError, OverflowError):
            raise InvalidArgument(
                f"{where}: cannot convert {_snippet(value)} to "
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
        raise InvalidArgument(f"'signature_name' must be a string, got {_snippet(name)}")
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


# The integer dtypes TF Serving's JSON writer writes (AddSingleValueAndAdvance); not uint16.
_JSON_INTEGERS = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8,
                                        np.uint32, np.uint64)}


def _decimal_texts(flat: np.ndarray) -> list[str]:
    """Floats as TF Serving writes them (json_tensor.cc's WriteDecimal): absl::StrCat's six
    significant digits when those read back as the same float, else max_digits10 (9 for
    float32, 17 for double); '.0' after a whole number that has neither a point nor an
    exponent; NaN, Infinity, -Infinity. So 0.0002 is 0.0002, 9e6 is 9e+06, 1/3 as float32 is
    0.333333343 and 1234567 is 1234567.0."""
    values = flat.tolist()
    texts = [f"{v:g}" for v in values]  # printf's %g, as absl's SixDigitsToBuffer writes it
    # Read back through float64, which for six-digit decimals rounds to float32 exactly as
    # absl::SimpleAtof does (checked for every six-digit decimal in float32's range).
    with np.errstate(over="ignore", invalid="ignore"):
        same = np.array(texts, dtype=np.float64).astype(flat.dtype) == flat
    if not same.all():
        wide = ".9g" if flat.dtype == np.float32 else ".17g"
        texts = [t if ok else format(v, wide)
                 for t, v, ok in zip(texts, values, same.tolist(), strict=True)]
    finite = np.isfinite(flat)
    for i in np.flatnonzero(finite & (flat == np.trunc(flat))).tolist():
        if "." not in texts[i] and "e" not in texts[i]:
            texts[i] += ".0"
    for i in np.flatnonzero(~finite).tolist():
        v = values[i]
        texts[i] = "NaN" if v != v else "Infinity" if v > 0 else "-Infinity"
    return texts


def _string_text(value: bytes, as_b64: bool) -> str:
    if not as_b64:
        try:
            return json.dumps(value.decode())
        except UnicodeDecodeError:
            pass
    return '{"b64":"' + base64.b64encode(value).decode() + '"}'


def _value_texts(flat: np.ndarray, name: str) -> list[str]:
    """A tensor's values as JSON texts, as TF Serving writes each dtype it writes (strings as
    text, or {"b64": ...} when the output's name ends in `_bytes` or they are not UTF-8)."""
    kind = flat.dtype.kind
    if flat.dtype in (np.float32, np.float64):
        return _decimal_texts(flat)
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    if flat.dtype in _JSON_INTEGERS:
        return [str(v) for v in flat.tolist()]
    if kind in "OSU":
        as_b64 = name.endswith("_bytes")
        return [_string_text(v.encode() if isinstance(v, str) else v, as_b64)
                for v in flat.tolist()]
    dtype = types_pb2.DataType.Name(tf.as_dtype(flat.dtype).as_datatype_enum)
    raise InvalidArgument(f"Failed to write JSON value for tensor type: {dtype[3:].lower()}")


def _tensor_items(proto, name: str) -> tuple[list[str], int]:
    """A tensor's JSON texts: of each item along dimension 0, and its rank (a scalar is one
    item of rank 0). Nested innermost dimension first, so any rank takes no recursion."""
    flat, shape = flat_values(proto)
    texts = _value_texts(flat, name)
    for axis in range(len(shape) - 1, 0, -1):
        size, count = shape[axis], math.prod(shape[:axis])
        texts = (["[]"] * count if size == 0 else
                 ["[" + ",".join(texts[i:i + size]) + "]" for i in range(0, count * size, size)])
    return texts, len(shape)


def _tensor_text(items: list[str], rank: int) -> str:
    return items[0] if rank == 0 else "[" + ",".join(items) + "]"


def predict_json(response: predict_pb2.PredictResponse, row_format: bool) -> bytes:
    """A PredictResponse as TF Serving's REST API writes it (json_tensor.cc), as JSON text,
    since json.dumps cannot write TF Serving's float text (9e+06, 0.333333343)."""
    outputs = {k: _tensor_items(v, k) for k, v in response.outputs.items()}
    key = "predictions" if row_format else "outputs"
    if len(outputs) == 1:
        (items, rank), = outputs.values()
        return f'{{"{key}":{_tensor_text(items, rank)}}}'.encode()
    if not row_format:
        named = ",".join(f"{json.dumps(k)}:{_tensor_text(*v)}" for k, v in outputs.items())
        return f'{{"outputs":{{{named}}}}}'.encode()
    batch = {len(items) if rank else 0 for items, rank in outputs.values()}
    if len(batch) != 1 or 0 in batch:
        raise InvalidArgument("outputs have different batch sizes (or none); use the columnar "
                              "'inputs' format")
    names = [json.dumps(k) for k in outputs]
    columns = [(n, items) for n, (items, _) in zip(names, outputs.values(), strict=True)]
    rows = ["{" + ",".join(f"{n}:{items[i]}" for n, items in columns) + "}"
            for i in range(batch.pop())]
    return ('{"predictions":[' + ",".join(rows) + "]}").encode()


def _feature(value: Any, where: str, dtype: tf.DType | None = None) -> feature_pb2.Feature:
    """A JSON feature value as a tf.train.Feature. When the model parses the feature
    (`dtype`, from its ParseExample op), the value is encoded as that type: JSON has one kind
    of number, so `17` for a float feature is 17.0, not an int64 the model would refuse."""
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, list) for v in values):  # TF Serving's AddValueToFeature
        raise InvalidArgument(f"{where} has element with unexpected JSON type: Array")
    feature = feature_pb2.Feature()
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if dtype is not None and dtype.is_floating:
        if not numbers:
            raise InvalidArgument(f"{where} takes numbers (the model parses it as "
                                  f"{dtype.name}); got {_snippet(value)}")
        feature.float_list.value.extend(float(v) for v in values)
    elif dtype is not None and dtype.is_integer:
        whole = all(isinstance(v, bool) or (isinstance(v, (int, float)) and float(v).is_integer()
                                            and abs(v) <= INT64_MAX) for v in values)
        if not whole:
            raise InvalidArgument(f"{where} takes whole numbers (the model parses it as "
                                  f"{dtype.name}); got {_snippet(value)}")
        feature.int64_list.value.extend(int(v) for v in values)
    elif dtype is not None and dtype == tf.string:
        if any(not isinstance(v, (str, dict)) for v in values):
            raise InvalidArgument(f"{where} takes strings (the model parses it as string); "
                                  f"got {_snippet(value)}")
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


def classify_json(response) -> bytes:
    """A ClassificationResponse as TF Serving's REST API writes it: [label, score] pairs."""
    results = []
    for item in response.result.classifications:
        scores = _decimal_texts(np.array([c.score for c in item.classes], np.float32))
        results.append("[" + ",".join(f"[{json.dumps(c.label)},{score}]"
                                      for c, score in zip(item.classes, scores, strict=True))
                       + "]")
    return ('{"results":[' + ",".join(results) + "]}").encode()


def regress_json(response) -> bytes:
    """A RegressionResponse as TF Serving's REST API writes it."""
    values = np.array([r.value for r in response.result.regressions], np.float32)
    return ('{"results":[' + ",".join(_decimal_texts(values)) + "]}").encode()


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
