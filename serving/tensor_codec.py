"""Serving: tensors in and out of TensorProtos as TensorFlow's C++ Tensor reads and writes them
(FromProto, AsProtoField, AsProtoTensorContent), for the model server and the REST codec.

numpy holds at most 32 dimensions, TensorFlow up to 254, and TF Serving serves anything
TensorFlow holds (a [1]*200 input to an element-wise model is answered). A tensor beyond numpy's
limit therefore stays a tf.Tensor here, and only its flat values pass through numpy.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

MAX_NUMPY_DIMS = 32  # NPY_MAXDIMS of numpy 1.x
Value = np.ndarray | tf.Tensor  # a tensor's value: a tf.Tensor only past MAX_NUMPY_DIMS

# TF Serving answers Predict with values in the typed repeated fields (AsProtoField), not
# tensor_content, unless --enable_serialization_as_tensor_content.
_VALUE_FIELDS = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val"),
    np.dtype(object): (types_pb2.DT_STRING, "string_val"),
}


def tensor_value(proto: tensor_pb2.TensorProto) -> Value:
    """A TensorProto's value, read as TF Serving reads a request's tensors (Tensor::FromProto).
    tf.make_ndarray reads neither more than 32 dimensions nor strings packed in tensor_content
    (as C++ clients and --enable_serialization_as_tensor_content send them); those are read by
    TensorFlow's C++ parser, and a tensor numpy cannot hold comes back as a tf.Tensor."""
    packed_strings = proto.dtype == types_pb2.DT_STRING and proto.tensor_content
    if len(proto.tensor_shape.dim) <= MAX_NUMPY_DIMS and not packed_strings:
        return tf.make_ndarray(proto)
    tensor = tf.io.parse_tensor(proto.SerializeToString(), tf.dtypes.as_dtype(proto.dtype))
    return tensor if tensor.shape.rank > MAX_NUMPY_DIMS else tensor.numpy()


def flat_values(proto: tensor_pb2.TensorProto) -> tuple[np.ndarray, list[int]]:
    """A TensorProto's values in row-major order, and its shape, for a tensor of any rank."""
    shape = [d.size for d in proto.tensor_shape.dim]
    value = tensor_value(proto)
    if isinstance(value, tf.Tensor):
        return tf.reshape(value, [-1]).numpy(), shape
    return value.reshape(-1), shape


def _string_list(values: np.ndarray) -> bytes:
    """port::EncodeStringList: every length as a varint32, then every string."""
    lengths = bytearray()
    for value in values:
        n = len(value)
        while n >= 0x80:
            lengths.append(n & 0x7F | 0x80)
            n >>= 7
        lengths.append(n)
    return bytes(lengths) + b"".join(values)


def fill_tensor_proto(proto: tensor_pb2.TensorProto, value: Value,
                      as_content: bool = False) -> None:
    """Write an output into `proto` as TF Serving does: in the typed repeated fields
    (Tensor::AsProtoField), or, with `as_content` (--enable_serialization_as_tensor_content),
    as the tensor's bytes in tensor_content (AsProtoTensorContent: strings as their varint
    lengths, then the strings)."""
    if isinstance(value, tf.Tensor):  # beyond numpy's dimensions: flat values and the shape
        shape, array = value.shape.as_list(), tf.reshape(value, [-1]).numpy()
    else:
        shape, array = list(value.shape), value
    kind = _VALUE_FIELDS.get(array.dtype)
    if kind is None and not as_content:  # rarer dtypes (half, complex, uint16...)
        proto.CopyFrom(tf.make_tensor_proto(array.reshape(-1)))  # TensorFlow's own encoder
        proto.tensor_shape.Clear()
    else:
        proto.dtype = kind[0] if kind else tf.as_dtype(array.dtype).as_datatype_enum
    proto.tensor_shape.SetInParent()  # present even for a scalar, as C++ writes it
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    if as_content:
        flat = array.reshape(-1)
        proto.tensor_content = (_string_list(flat) if proto.dtype == types_pb2.DT_STRING
                                else flat.tobytes())
    elif kind is not None:
        getattr(proto, kind[1]).extend(array.reshape(-1).tolist())
