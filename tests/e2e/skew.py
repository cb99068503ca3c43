"""Training/serving skew, as the e2e tests check it on a pushed model: the same examples
through the Trainer's own input pipeline and through the served signature on raw bytes, and
examples changed the way real traffic changes them."""

import os

import numpy as np
import tensorflow as tf

from tandem.components.build_record import load_record


def eval_examples(result, n=300, label="skipped"):
    """(eval examples as stored, the same without the label)."""
    split = os.path.join(result.outputs["examples"].uri, "Split-eval")
    files = sorted(tf.io.gfile.glob(os.path.join(split, "*")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(n)]
    return records, without(records, label)


def as_real_traffic(records, changes):
    """Examples with what real traffic brings, one change per example in turn (the first
    stays as it was): `changes` are {feature: values} to set."""
    from tensorflow.core.example import example_pb2

    out = []
    for i, record in enumerate(records):
        example = example_pb2.Example.FromString(record)
        change = ([{}] + changes)[i % (len(changes) + 1)]
        for name, values in change.items():
            feature = example.features.feature[name]
            kind = feature.WhichOneof("kind") or (
                "bytes_list" if isinstance(values[0], bytes)
                else "float_list" if isinstance(values[0], float) else "int64_list")
            getattr(feature, kind).value[:] = values
        out.append(example.SerializeToString())
    return out


def without(records, label):
    from tensorflow.core.example import example_pb2

    out = []
    for record in records:
        example = example_pb2.Example.FromString(record)
        if label in example.features.feature:
            del example.features.feature[label]
        out.append(example.SerializeToString())
    return out


def training_and_serving_paths(result, records, label, tmp_path):
    """Predictions for the same examples (i) as the Trainer's own input pipeline
    (tandem.components.trainer_model._dataset) feeds them to the Keras model and (ii) from serving_default
    on the raw serialized examples without their label, in the label's units."""
    import tensorflow_transform as tft
    from tfx.components.util import tfxio_utils
    from tfx.types import standard_artifacts

    from tandem.components.trainer_model import _dataset, label_scale

    data = tmp_path / "Split-eval"
    data.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(data / "traffic.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path)
    factory = tfxio_utils.get_tf_dataset_factory_from_artifact([examples], [])

    class Accessor:  # the part of TFX's DataAccessor the input pipeline uses
        tf_dataset_factory = staticmethod(factory)

    build = load_record(result.pushed)
    transform_output = tft.TFTransformOutput(result.outputs["transform_graph"].uri)
    dtype = transform_output.raw_feature_spec()[label].dtype
    plan = {"label": label, "problem_type": build["problem_type"],
            "label_dtype": {tf.string: "BYTES", tf.int64: "INT"}.get(dtype, "FLOAT"),
            "features": build["transform"]["features"]}
    files = [str(data / "*")]
    dataset = _dataset(files, Accessor, transform_output, plan, batch_size=64, seed=0, epochs=1,
                       classes=build["classes"])
    keras_model = tf.keras.models.load_model(
        os.path.join(result.outputs["model"].uri, "Format-Serving"))
    training = np.concatenate([keras_model(features).numpy() for features, _ in dataset])
    serving = tf.saved_model.load(result.pushed).signatures["serving_default"](
        examples=tf.constant(without(records, label)))
    if build["classes"] is None:
        mean, std = label_scale(files, Accessor, transform_output, plan)
        return training * std + mean, serving["predictions"].numpy()
    return training, serving["probabilities"].numpy()
