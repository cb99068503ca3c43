"""The Trainer's raw label reader, which the naive bar rests on: string, int and float labels,
rows without a label, and classes the model does not know."""

import numpy as np
import tensorflow as tf

from tandem.components.trainer_model import raw_labels


def _write(path, labels, key="y"):
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for value in labels:
            example = tf.train.Example()
            example.features.feature["x"].float_list.value.append(1.0)
            if value is not None:
                feature = example.features.feature[key]
                if isinstance(value, str):
                    feature.bytes_list.value.append(value.encode())
                elif isinstance(value, int):
                    feature.int64_list.value.append(value)
                else:
                    feature.float_list.value.append(value)
            writer.write(example.SerializeToString())
    return str(path)


def _plan(dtype):
    return {"label": "y", "label_dtype": dtype}


def test_string_labels_are_class_positions_and_unknown_ones_are_left_out_or_kept(tmp_path):
    files = [_write(tmp_path / "a.gz", ["yes", "no", None, "yes", "maybe"])]
    classes = ["no", "yes"]
    assert raw_labels(files, _plan("BYTES"), classes).tolist() == [1, 0, 1]
    assert raw_labels(files, _plan("BYTES"), classes, keep_unknown=True).tolist() == \
        [1, 0, 1, -1]


def test_int_class_ids_and_float_01_labels_and_regression_values(tmp_path):
    ints = [_write(tmp_path / "i.gz", [2, 0, None, 1, 7])]
    assert raw_labels(ints, _plan("INT"), ["0", "1", "2"]).tolist() == [2, 0, 1]
    floats = [_write(tmp_path / "f.gz", [1.0, 0.0, 1.0])]
    assert raw_labels(floats, _plan("FLOAT"), ["0", "1"]).tolist() == [1, 0, 1]
    values = raw_labels([_write(tmp_path / "r.gz", [3.5, None, -2.25])], _plan("FLOAT"), None)
    assert values.dtype == np.float64 and values.tolist() == [3.5, -2.25]


def test_many_files_and_a_split_without_the_label(tmp_path):
    files = [_write(tmp_path / f"{i}.gz", ["a", "b"] * 5000) for i in range(2)]
    assert len(raw_labels([str(tmp_path / "*.gz")], _plan("BYTES"), ["a", "b"])) == 20000
    assert len(files) == 2
    empty = [_write(tmp_path / "none.gz", ["a"], key="other")]
    assert raw_labels(empty, _plan("BYTES"), ["a"]).tolist() == []
