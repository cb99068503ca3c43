"""The Trainer's models are traced without AutoGraph rewriting Keras' own code (TensorFlow
leaves `keras` unconverted, and tandem adds the same rule for `tf_keras`), while code of
tandem's own is still converted."""

import tensorflow as tf
from tensorflow.python.autograph.core import config
from tensorflow.python.autograph.impl import conversion

from tandem.components import trainer_model


def _own(x):
    return x


def test_keras_internals_are_left_unconverted_and_tandems_code_is_not():
    assert conversion.is_allowlisted(tf.keras.layers.Dense(1).call)
    assert conversion.is_allowlisted(tf.keras.Model.train_step)
    assert not conversion.is_allowlisted(_own)
    assert not conversion.is_allowlisted(trainer_model.build_model)


def test_the_rule_is_added_once():
    def keras_rules():
        return [r for r in config.CONVERSION_RULES if str(r) == str(config.DoNotConvert("tf_keras"))]

    assert len(keras_rules()) == 1
    trainer_model._keras_internals_unconverted()
    assert len(keras_rules()) == 1
