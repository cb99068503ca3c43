"""The gateway in front of a model the pipeline trained: what clients send (keys and
request-time features) gets the answer the model gives on the generator's decorated example."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.serving.conftest import free_port
from tests.serving.gateway.conftest import (
    gateway_config,
    predict_request,
    request_part,
    stub,
    training_examples,
    without_label,
)

pytestmark = pytest.mark.xdist_group("trained_listening")


def test_the_trained_model_answers_the_same_through_the_gateway(
        trained_listening, clean_listening, start_server, start_gateway, tmp_path):
    base = os.path.dirname(trained_listening.pushed)
    server = start_server(model_name="listening", model_base_path=base, port=free_port())
    gateway = start_gateway(gateway_config(tmp_path, clean_listening,
                                           f"127.0.0.1:{server.grpc_port}"))
    training = training_examples(clean_listening, 200)
    requests = [request_part(e).SerializeToString() for e in training]
    through = stub(gateway.port).Predict(predict_request(requests[:64]))
    direct = stub(server.grpc_port).Predict(
        predict_request([without_label(e) for e in training[:64]]))
    a = tf.make_ndarray(through.outputs["probabilities"])
    b = tf.make_ndarray(direct.outputs["probabilities"])
    np.testing.assert_array_equal(a, b)
    assert a.std() > 0.05  # a model that tells examples apart, not a constant
    assert through.model_spec.version.value == int(os.path.basename(trained_listening.pushed))
    assert not gateway.gateway.metrics.violations._metrics  # clean data: nothing flagged
