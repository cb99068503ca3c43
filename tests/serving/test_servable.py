"""One loaded version in-process: the direct signature call, the response encoding and the
input checks, without a server in between."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2

from tandem.serving.errors import InvalidArgument
from tandem.serving.model_server.servable import Servable

from .conftest import example


@pytest.fixture(scope="module")
def servable(tmp_path_factory):
    from .conftest import make_model

    base = tmp_path_factory.mktemp("servable")
    return Servable("scorer", 1, make_model(str(base), 1, bias=0.25))


def test_the_direct_call_returns_what_the_public_call_returns(servable):
    assert all(call.direct for call in servable.calls.values())
    examples = tf.constant([example(x, c) for x, c in [(-2.0, "a"), (0.0, "b"), (3.0, "a")]])
    serve = servable.calls["serving_default"]
    direct, public = serve({"examples": examples}), serve({"examples": examples}, direct=False)
    assert direct.keys() == public.keys() == {"probabilities", "scores", "classes"}
    for key in direct:
        np.testing.assert_array_equal(direct[key].numpy(), public[key].numpy())
    dense = tf.constant([[1.0, 2.0], [-4.0, 0.5]])
    np.testing.assert_allclose(servable.calls["dense"]({"dense": dense})["sum"].numpy(),
                               [3.25, -3.25])


def test_predict_answers_in_typed_fields_as_tf_serving_does(servable):
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="scorer"))
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example(1.0), example(2.0)]))
    response = servable.predict(request)
    probabilities = response.outputs["probabilities"]
    assert probabilities.dtype == types_pb2.DT_FLOAT and not probabilities.tensor_content
    assert list(probabilities.float_val) == pytest.approx(
        [1 / (1 + np.exp(-1.75)), 1 / (1 + np.exp(-3.25))], rel=1e-6)
    assert list(response.outputs["classes"].string_val) == [b"0", b"1", b"0", b"1"]


def test_shapes_reach_the_graph_as_in_tf_serving(servable):
    """TF Serving checks dtypes, not shapes: the graph decides. A shape its ops can use is
    answered; one they cannot is refused with the graph's own reason, never INTERNAL."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name="scorer", signature_name="dense"))
    request.inputs["dense"].CopyFrom(tf.make_tensor_proto([[1.0, 2.0, 3.0]]))  # declared [?, 2]
    assert list(servable.predict(request).outputs["sum"].float_val) == [6.0 + 0.25]  # + bias
    request.inputs["dense"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))  # rank 1: no axis 1
    with pytest.raises(InvalidArgument, match=r"rejected the input: .*(reduction|axis|dimension)"):
        servable.predict(request)
    request.inputs["dense"].CopyFrom(tf.make_tensor_proto([[1, 2]]))  # int32 for float
    with pytest.raises(InvalidArgument, match=r"input 'dense' has dtype int32 but signature "
                                              r"'dense' expects float"):
        servable.predict(request)
