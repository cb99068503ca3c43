"""Model server: one loaded SavedModel version and the TF Serving request semantics on it
(Predict, Classify, Regress, metadata), with input checks that name the problem.

One module past 400 lines because every API's semantics turns on the one loaded version
and the ways of calling its signatures (TF2's SignatureCall, a TF1 graph's SessionSignatureCall).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.function.polymorphism.function_type import sanitize_arg_name
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from tandem.schemas.contracts import CLASSIFY_METHOD, REGRESS_METHOD, SERVING_DEFAULT, warmup_path
from tandem.serving.errors import FailedPrecondition, InvalidArgument, ServingError, Unimplemented
from tandem.serving.model_server.batching import BatchScheduler
from tandem.serving.tensor_codec import MAX_NUMPY_DIMS, Value, fill_tensor_proto, tensor_value

MAX_WARMUP_RECORDS = 1000


class LoadError(Exception):
    """A version directory that cannot be served; the message says why."""


def read_meta_graph(path: str, tags: list[str] | None = None) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraph tagged with exactly `tags` (default: serve)."""
    tags = tags or ["serve"]
    pb = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(pb):
        raise LoadError(f"{pb} not found (incomplete copy?)")
    saved = saved_model_pb2.SavedModel()
    try:
        with open(pb, "rb") as f:
            saved.ParseFromString(f.read())
    except Exception as e:  # noqa: BLE001 - a corrupt file may raise anything from protobuf
        raise LoadError(f"{pb} is not a SavedModel: {e}") from None
    for meta_graph in saved.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return meta_graph
    found = [sorted(m.meta_info_def.tags) for m in saved.meta_graphs]
    raise LoadError(f"{pb} has no MetaGraph tagged {','.join(tags)} (it has: {found})")


class SessionSignatureCall:
    """Runs one signature of a TF1 SavedModel as TF Serving does: one session call, fed and
    fetched by the tensor names in the SignatureDef.

    TensorFlow 2's loader rebuilds a TF1 signature from the shapes its SignatureDef records,
    and models exported by older TF record none (a rank-0 shape for a batch of examples): TF
    Serving's own half_plus_three fails to load that way. A session never reads those shapes.

    Nor does TF Serving's C++ Session::Run check a fed tensor against the static shape of the
    tensor it replaces: half_plus_two's x is (?, 1) and a flat (3,) batch is answered. Python's
    Session.run (and make_callable with a feed list, which calls it) refuses that feed before
    the graph sees it ("Cannot feed value of shape (3,)..."). A callable made from
    CallableOptions runs through the C API's Session::RunCallable, which checks the number and
    dtypes of the feeds only, as Session::Run does; an op that cannot use the shape still fails
    in the graph, with InvalidArgumentError, as it does in TF Serving.
    """

    direct = False

    def __init__(self, session, sig: meta_graph_pb2.SignatureDef):
        self._feeds = list(sig.inputs)
        fetch_names = sorted({info.name for info in sig.outputs.values()})
        self._outputs = {alias: fetch_names.index(info.name) for alias, info in sig.outputs.items()}
        options = config_pb2.CallableOptions(feed=[sig.inputs[k].name for k in self._feeds],
                                             fetch=fetch_names)
        self._run, self._error = None, None
        try:
            self._run = session._make_callable_from_options(options)
        except tf.errors.InvalidArgumentError as e:
            # A signature naming a tensor the graph lacks: TF Serving loads the model and its
            # Session::Run refuses each request with this error; so does this call.
            self._error = e

    def __call__(self, inputs: dict[str, Any], direct: bool = True) -> dict[str, Any]:
        if self._run is None:
            raise self._error
        values = self._run(*(inputs[k].numpy() if hasattr(inputs[k], "numpy") else inputs[k]
                             for k in self._feeds))
        return {alias: values[i] for alias, i in self._outputs.items()}


def example_features(graph_def) -> dict[str, tf.DType]:
    """The tf.Example features a signature parses, with their dtypes: read from the
    ParseExample(V2) ops in its graph and function library (their keys are constant inputs).
    The REST API uses them to encode JSON feature values the way the model parses them."""
    found: dict[str, tf.DType] = {}
    bodies = [list(graph_def.node)] + [list(f.node_def) for f in graph_def.library.function]
    for nodes in bodies:
        by_name = {n.name: n for n in nodes}
        for node in nodes:
            if node.op != "ParseExampleV2":
                continue
            groups = ((2, "sparse_types"), (3, "Tdense"), (4, "ragged_value_types"))
            for index, attr in groups:
                keys = _const_strings(by_name, node, index)
                types = list(node.attr[attr].list.type)
                for key, dtype in zip(keys, types, strict=False):
                    found.setdefault(key, tf.dtypes.as_dtype(dtype))
    return found


def _const_strings(by_name: dict, node, index: int) -> list[str]:
    """The values of a node's `index`-th input when that input is a constant."""
    if index >= len(node.input):
        return []
    source = by_name.get(node.input[index].lstrip("^").split(":")[0])
    if source is None or source.op != "Const":
        return []
    values = tf.make_ndarray(source.attr["value"].tensor).ravel()
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def op_error_text(error: Exception) -> str:
    """The line of a TensorFlow error that says what is wrong. A graph error's first line is
    only 'Graph execution error:'; the reason (e.g. 'Key: age, Index: 0. Data types don't
    match...') stands before the '[[{{node ...}}]]' line."""
    lines = [line.rstrip() for line in str(error).splitlines()]
    for i, line in enumerate(lines):
        if line.strip().startswith("[[") and i > 0:
            for previous in reversed(lines[:i]):
                text = previous.strip()
                if text and not text.startswith(("File ", "Detected at node")):
                    return text
    meaningful = [line.strip() for line in lines if line.strip()]
    for text in meaningful:
        if text not in ("Graph execution error:",) and not text.startswith("Detected at node"):
            return text.split(" [[")[0].strip()
    return meaningful[0] if meaningful else type(error).__name__


def _dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype)[3:].lower()


def _as_array(value) -> Value:
    """A signature output as an array: a scalar string comes out of TensorFlow as bare bytes,
    and a tensor of more dimensions than numpy holds stays a tensor (see tandem.serving.tensor_codec)."""
    if isinstance(value, tf.Tensor):
        if value.shape.rank > MAX_NUMPY_DIMS:
            return value
        value = value.numpy()
    if isinstance(value, bytes):
        array = np.empty((), dtype=object)
        array[()] = value
        return array
    return np.asarray(value)


def _bytes_array(values: list[bytes]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def batchable(sig: meta_graph_pb2.SignatureDef) -> bool:
    """Whether requests to a signature can be merged along dimension 0: every input and
    output has a leading dimension of unknown size (the batch)."""
    tensors = list(sig.inputs.values()) + list(sig.outputs.values())
    return bool(sig.inputs) and all(
        not t.tensor_shape.unknown_rank and t.tensor_shape.dim and t.tensor_shape.dim[0].size == -1
        for t in tensors
    )


class SignatureCall:
    """Runs one signature of a loaded SavedModel.

    TF Serving runs a signature as one session call. The public Python call on a loaded
    signature spends as much time again in argument binding, gradient-tape checks and a walk
    over every captured variable handle as the graph spends computing a batch-1 request.
    A signature whose inputs are plain tensors and whose captures are fixed handles (every
    SavedModel loaded outside a distribution strategy) is therefore called directly:
    inputs in the function's parameter order plus the handles resolved once at load.
    Anything else takes the public call. Both return the same structured outputs.
    """

    def __init__(self, fn):
        self.fn = fn
        self._direct = None
        try:
            params = list(fn.function_type.parameters.values())
            captures = list(fn._captured_inputs)
            inference = fn._inference_function
        except AttributeError:  # a TensorFlow without these internals: public call only
            return
        if not all(isinstance(p.type_constraint, tf.TensorSpec) for p in params):
            return
        if any(callable(c) or not isinstance(c, tf.Tensor) for c in captures):
            return
        self._order = [p.name for p in params]
        self._captures = list(fn.captured_inputs)
        self._direct = inference.call_preflattened

    @property
    def direct(self) -> bool:
        return self._direct is not None

    def __call__(self, inputs: dict[str, tf.Tensor], direct: bool = True) -> dict[str, tf.Tensor]:
        if not (direct and self._direct):
            return self.fn(**inputs)
        sanitized = {sanitize_arg_name(k): v for k, v in inputs.items()}
        if sanitized.keys() != set(self._order):
            return self.fn(**inputs)  # let the public call name the mismatch
        return self._direct([sanitized[name] for name in self._order] + self._captures)


class Servable:
    """A loaded, callable model version."""

    def __init__(self, name: str, version: int, path: str, batcher: BatchScheduler | None = None,
                 method_name_check: bool = False, tags: list[str] | None = None):
        """`method_name_check`: TF Serving's --enable_signature_method_name_check (off by
        default since 2.x, so TF2 signatures exported as predict serve Classify/Regress)."""
        self.name, self.version, self.path = name, version, path
        self.warmup_stats: dict[str, float] = {}
        self.batcher, self.method_name_check = batcher, method_name_check
        self.tags = tags or ["serve"]
        meta_graph = read_meta_graph(path, self.tags)
        self.signature_defs = dict(meta_graph.signature_def)
        try:
            if meta_graph.object_graph_def.nodes:  # a TF2 SavedModel
                self._loaded = tf.saved_model.load(path, tags=self.tags)
                self.signatures = dict(self._loaded.signatures)
                self.calls = {name: SignatureCall(fn) for name, fn in self.signatures.items()}
                self._graph_def = lambda name: self.signatures[name].graph.as_graph_def()
            else:  # TF1: in a session, as TF Serving runs it (see SessionSignatureCall)
                graph = tf.Graph()
                self._session = tf.compat.v1.Session(graph=graph)
                with graph.as_default():
                    tf.compat.v1.saved_model.loader.load(self._session, self.tags, path)
                self.calls = {name: SessionSignatureCall(self._session, sig)
                              for name, sig in self.signature_defs.items()}
                self._graph_def = lambda name: graph.as_graph_def()
        except Exception as e:  # noqa: BLE001 - TF raises many error types for bad models
            raise LoadError(f"cannot load SavedModel {path}: {str(e).splitlines()[0]}") from None
        self.batchable = {name: batchable(sig) for name, sig in self.signature_defs.items()}
        self._example_features: dict[str, dict[str, tf.DType]] = {}

    def example_features(self, sig_name: str) -> dict[str, tf.DType]:
        """The tf.Example features signature `sig_name` parses (empty when it takes none)."""
        sig_name = sig_name or SERVING_DEFAULT
        if sig_name not in self._example_features:
            self._example_features[sig_name] = (
                example_features(self._graph_def(sig_name)) if sig_name in self.calls else {}
            )
        return self._example_features[sig_name]

    # -- helpers ---------------------------------------------------------------------------
    def signature(self, name: str, api: str = "predict"
                  ) -> tuple[SignatureCall, meta_graph_pb2.SignatureDef]:
        """The signature a request names, or TF Serving's error for `api` when it has none:
        FAILED_PRECONDITION for Predict, INVALID_ARGUMENT for the others."""
        name = name or SERVING_DEFAULT
        if name not in self.calls or name not in self.signature_defs:
            known = (f" (model '{self.name}' version {self.version} has: "
                     f"{', '.join(sorted(self.signature_defs))})")
            if api == "predict":
                raise FailedPrecondition(f'Serving signature key "{name}" not found.{known}')
            if api == "multi_inference":
                raise InvalidArgument(f"Requested signature not found in model graph: {name}"
                                      f"{known}")
            raise InvalidArgument(f"No signature was found with the name: {name}{known}")
        return self.calls[name], self.signature_defs[name]

    def _call(self, sig_name: str, inputs: dict[str, Value]) -> dict[str, Value]:
        """Run a signature on numpy inputs, batched with concurrent requests when the server
        batches and the signature allows it. A tf.Tensor input (past numpy's 32 dimensions)
        cannot be concatenated by the batcher and runs alone."""
        fn = self.calls[sig_name]
        arrays = all(isinstance(v, np.ndarray) for v in inputs.values())
        if self.batcher is not None and self.batchable.get(sig_name) and arrays:
            return self.batcher.run((self.name, self.version, sig_name),
                                    lambda arrays: self._run(fn, arrays), inputs)
        return self._run(fn, inputs)

    def _run(self, fn: SignatureCall, inputs: dict[str, Value]) -> dict[str, Value]:
        try:
            outputs = fn({k: v if isinstance(v, tf.Tensor) else tf.constant(v)
                          for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            # A session names a wrong shape or dtype with InvalidArgumentError too.
            raise InvalidArgument(
                f"model '{self.name}' rejected the input: {op_error_text(e)}"
            ) from None
        return {k: _as_array(v) for k, v in outputs.items()}

    def _input_tensors(self, sig_name: str, sig: meta_graph_pb2.SignatureDef,
                       given: dict[str, tensor_pb2.TensorProto]) -> dict[str, Value]:
        expected = set(sig.inputs)
        missing, extra = sorted(expected - set(given)), sorted(set(given) - expected)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected {', '.join(extra)}")
            raise InvalidArgument(
                f"input names do not match signature '{sig_name}' ({'; '.join(parts)}); "
                f"expected inputs: {', '.join(sorted(expected))}"
            )
        tensors = {}
        for key, proto in given.items():
            want = sig.inputs[key].dtype
            if proto.dtype != want:
                raise InvalidArgument(
                    f"input '{key}' has dtype {_dtype_name(proto.dtype)} but signature "
                    f"'{sig_name}' expects {_dtype_name(want)}"
                )
            try:
                value = tensor_value(proto)
            except Exception as e:  # noqa: BLE001 - malformed TensorProto content
                # TF Serving's words (saved_model::GetInputValues), then the reason.
                raise InvalidArgument(f"tensor parsing error: {key} ({op_error_text(e)})"
                                      ) from None
            # No check of the shape against the signature's: TF Serving feeds what it got and
            # lets the graph decide (a flat [3] works for a [-1, 1] input that only meets
            # element-wise ops); a shape the graph cannot use fails there, with its reason.
            tensors[key] = value
        return tensors

    # -- APIs ------------------------------------------------------------------------------
    def predict(self, request: predict_pb2.PredictRequest,
                as_tensor_content: bool = False) -> predict_pb2.PredictResponse:
        """`as_tensor_content`: TF Serving's --enable_serialization_as_tensor_content, outputs
        as raw bytes in tensor_content instead of the typed repeated fields."""
        sig_name = request.model_spec.signature_name or SERVING_DEFAULT
        _, sig = self.signature(sig_name)
        outputs = self._call(sig_name, self._input_tensors(sig_name, sig, dict(request.inputs)))
        wanted = list(request.output_filter) or list(outputs)
        seen: set[str] = set()
        for alias in request.output_filter:
            if alias not in outputs:
                raise InvalidArgument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(sorted(outputs))}}}."
                )
            if alias in seen:
                raise InvalidArgument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        response = predict_pb2.PredictResponse()
        self.fill_spec(response.model_spec, sig_name)
        for key in wanted:
            fill_tensor_proto(response.outputs[key], outputs[key], as_tensor_content)
        return response

    def _serialized_examples(self, model_input: input_pb2.Input) -> list[bytes]:
        kind = model_input.WhichOneof("kind")
        if kind == "example_list":
            examples = list(model_input.example_list.examples)
            context = None
        elif kind == "example_list_with_context":
            examples = list(model_input.example_list_with_context.examples)
            context = model_input.example_list_with_context.context
        else:
            raise InvalidArgument("Input is empty: set example_list or example_list_with_context")
        if not examples:
            raise InvalidArgument("Input is empty: the example list has no examples")
        out = []
        for example in examples:
            if context is not None:
                merged = example_pb2.Example()
                merged.CopyFrom(context)
                merged.MergeFrom(example)
                example = merged
            out.append(example.SerializeToString())
        return out

    def _method_signature(self, sig_name: str, method: str, api: str) -> str:
        """The input name of a Classify/Regress signature, checked as TF Serving checks it
        (classifier.cc, regressor.cc); errors add which signature would fit."""
        _, sig = self.signature(sig_name, api)
        kind = "classification" if method == CLASSIFY_METHOD else "regression"
        try:
            if self.method_name_check and sig.method_name != method:
                raise InvalidArgument(f"Expected {kind} signature method_name to be {method}. "
                                      f"Was: {sig.method_name}")
            if len(sig.inputs) != 1:
                raise InvalidArgument("Expected one input Tensor.")
            if method == CLASSIFY_METHOD and len(sig.outputs) not in (1, 2):
                raise InvalidArgument(
                    f"Expected one or two output Tensors, found {len(sig.outputs)}")
            if method == REGRESS_METHOD and len(sig.outputs) != 1:
                raise InvalidArgument("Expected one output Tensor.")
            if "inputs" not in sig.inputs:
                raise InvalidArgument(f"No {kind} inputs found in SignatureDef '{sig_name}' "
                                      f"(its input is named {next(iter(sig.inputs))!r})")
            if method == CLASSIFY_METHOD and not {"classes", "scores"} & set(sig.outputs):
                raise InvalidArgument('Expected classification signature outputs to contain at '
                                      'least one of "classes" or "scores".')
            if method == REGRESS_METHOD and "outputs" not in sig.outputs:
                raise InvalidArgument(f"No regression outputs found in SignatureDef "
                                      f"'{sig_name}'")
        except InvalidArgument as e:
            fitting = sorted(n for n, d in self.signature_defs.items()
                             if d.method_name == method and n != sig_name)
            hint = (f" (signature '{sig_name}'); set signature_name to "
                    f"{' or '.join(repr(n) for n in fitting)}, this model's {api} signature"
                    if fitting else f" (signature '{sig_name}')")
            raise InvalidArgument(f"{e}{hint}") from None
        return "inputs"

    def _classify_into(self, sig_name: str, examples: list[bytes],
                       result: classification_pb2.ClassificationResult) -> None:
        key = self._method_signature(sig_name, CLASSIFY_METHOD, "Classify")
        out = self._call(sig_name, {key: _bytes_array(examples)})
        scores, classes = out.get("scores"), out.get("classes")
        if scores is None and classes is None:
            raise InvalidArgument(f"Classify signature '{sig_name}' has neither a 'classes' nor "
                                  "a 'scores' output")
        width = (scores if scores is not None else classes).shape[1]
        for i in range(len(examples)):
            item = result.classifications.add()
            for j in range(width):
                cls = item.classes.add()
                if classes is not None:
                    label = classes[i][j]
                    cls.label = label.decode() if isinstance(label, bytes) else str(label)
                if scores is not None:
                    cls.score = float(scores[i][j])

    def _regress_into(self, sig_name: str, examples: list[bytes],
                      result: regression_pb2.RegressionResult) -> None:
        key = self._method_signature(sig_name, REGRESS_METHOD, "Regress")
        out = self._call(sig_name, {key: _bytes_array(examples)})
        if "outputs" not in out:
            raise InvalidArgument(f"Regress signature '{sig_name}' has no 'outputs' output")
        for v in np.reshape(out["outputs"], [-1]):
            result.regressions.add(value=float(v))

    def classify(self, request: classification_pb2.ClassificationRequest):
        return self._answer(request, classification_pb2.ClassificationResponse(),
                            self._classify_into)

    def regress(self, request: regression_pb2.RegressionRequest):
        return self._answer(request, regression_pb2.RegressionResponse(), self._regress_into)

    def _answer(self, request, response, fill_result):
        """Classify's or Regress's response: the signature's results for the request's
        examples, and the model spec that answered."""
        sig_name = request.model_spec.signature_name or SERVING_DEFAULT
        fill_result(sig_name, self._serialized_examples(request.input), response.result)
        self.fill_spec(response.model_spec, sig_name)
        return response

    def multi_inference(self, request: inference_pb2.MultiInferenceRequest):
        """Classify and/or regress the same examples with several signatures of this version
        in one request, as TF Serving's MultiInference does."""
        if not request.tasks:
            raise InvalidArgument("Expected at least one task")
        seen: set[str] = set()
        for task in request.tasks:
            if task.model_spec.name != self.name:
                raise InvalidArgument("All ModelSpecs in a MultiInferenceRequest must access the "
                                      "same model name.")
            sig_name = task.model_spec.signature_name or SERVING_DEFAULT
            if sig_name in seen:
                raise InvalidArgument(f"Duplicate evaluation of signature: {sig_name}")
            seen.add(sig_name)
            self.signature(sig_name, "multi_inference")
            if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
                raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")
        examples = self._serialized_examples(request.input)
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            sig_name = task.model_spec.signature_name or SERVING_DEFAULT
            result = response.results.add()
            self.fill_spec(result.model_spec, sig_name)
            if task.method_name == CLASSIFY_METHOD:
                self._classify_into(sig_name, examples, result.classification_result)
            else:
                self._regress_into(sig_name, examples, result.regression_result)
        return response

    def fill_spec(self, spec, signature_name: str | None = None) -> None:
        spec.name = self.name
        spec.version.value = self.version
        if signature_name is not None:
            spec.signature_name = signature_name

    # -- warmup ----------------------------------------------------------------------------
    def warm_up(self, iterations: int = 1) -> int:
        """Replay assets.extra/tf_serving_warmup_requests, as TF Serving does before a
        version takes traffic, each record `iterations` times
        (--num_request_iterations_for_warmup). Returns the number of records replayed."""
        path = warmup_path(self.path)
        if not os.path.isfile(path):
            return 0
        count = 0
        seconds: list[float] = []
        try:
            for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
                log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
                kind = log.WhichOneof("log_type")
                calls = {"predict_log": self.predict, "classify_log": self.classify,
                         "regress_log": self.regress,
                         "multi_inference_log": self.multi_inference}
                if kind not in calls:
                    raise LoadError(f"warmup record {count} has unsupported type {kind}")
                for _ in range(iterations):
                    started = time.perf_counter()
                    calls[kind](getattr(log, kind).request)
                    seconds.append(time.perf_counter() - started)
                count += 1
        except (ServingError, tf.errors.OpError) as e:
            raise LoadError(f"warmup request {count} failed: {e}") from None
        # The first call traces the graph; the rest is what a request costs.
        steady = sorted(seconds[1:] or seconds)
        if steady:
            self.warmup_stats = {
                "requests": len(seconds),
                "latency_seconds": steady[len(steady) // 2],
                "throughput": len(steady) / sum(steady) if sum(steady) > 0 else 0.0,
            }
        return count
