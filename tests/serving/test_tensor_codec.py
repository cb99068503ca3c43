"""TensorProtos as TensorFlow's C++ Tensor writes and reads them, checked against TensorFlow's
own C++ (tf.io.serialize_tensor, tf.io.parse_tensor)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tandem.serving.tensor_codec import fill_tensor_proto, flat_values, tensor_value

ARRAYS = [
    np.array([[0.25, -1.5]], np.float32),
    np.array([1e300, -2.0]),
    np.array([[1, 2, 3]], np.int32),
    np.array([2**40, -7], np.int64),
    np.array([True, False]),
    np.array([[b"0", b"1"], [b"", b"\xff" * 200]], dtype=object),  # a length past one byte
    np.array(3.5, np.float32),  # scalar
    np.zeros((0, 2), np.float32),  # empty batch
    np.array([1.5, 2.5], np.float16),  # no typed field in the table: TensorFlow's encoder
]


@pytest.mark.parametrize("as_content", [False, True])
@pytest.mark.parametrize("array", ARRAYS)
def test_responses_encode_every_output_dtype_losslessly(array, as_content):
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array, as_content)
    back = tensor_value(proto)
    assert back.shape == array.shape and back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
    dtype = tf.string if array.dtype == object else tf.as_dtype(array.dtype)
    np.testing.assert_array_equal(tf.io.parse_tensor(proto.SerializeToString(), dtype), array)


@pytest.mark.parametrize("array", [a for a in ARRAYS if a.dtype != object])
def test_tensor_content_is_byte_for_byte_tensorflows(array):
    """AsProtoTensorContent is what tf.io.serialize_tensor writes for a number tensor."""
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array, as_content=True)
    assert proto.SerializeToString() == tf.io.serialize_tensor(array).numpy()


def test_a_tensor_past_numpys_dimensions_stays_a_tensor():
    """numpy stops at 32 dimensions, TensorFlow (and TF Serving) at 254."""
    wide = tf.reshape(tf.constant([1.0, 2.0], tf.float32), [1] * 39 + [2])
    for as_content in (False, True):
        proto = tensor_pb2.TensorProto()
        fill_tensor_proto(proto, wide, as_content)
        assert [d.size for d in proto.tensor_shape.dim] == [1] * 39 + [2]
        value = tensor_value(proto)
        assert isinstance(value, tf.Tensor) and value.shape == wide.shape
        flat, shape = flat_values(proto)
        assert flat.tolist() == [1.0, 2.0] and shape == [1] * 39 + [2]
    proto.tensor_shape.dim.add(size=1)  # still 2 values, now 41 dimensions
    for _ in range(214):  # 255: over TensorFlow's limit
        proto.tensor_shape.dim.add(size=1)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tensor_value(proto)
