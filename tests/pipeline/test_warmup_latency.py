"""Monitoring 6's measurement: two model versions' warmup latency in interleaved rounds. A
version that does much more work per request is slower; two equal versions are not, even
while the machine's load comes and goes; and the rule itself, on known round medians."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from tandem.pipeline import warmup_latency
from tandem.pipeline.warmup_latency import LatencyComparison


def _examples(path, n: int = 64) -> str:
    from tensorflow.core.example import example_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(n):
            e = example_pb2.Example()
            e.features.feature["x"].float_list.value.append(i / n)
            e.features.feature["y"].int64_list.value.append(i % 2)
            writer.write(e.SerializeToString())
    return str(path)


def push(push_dir, version: int, work: int = 0) -> str:
    """A version of a model on `x`, as Pusher leaves it (saved_model.pb, warmup requests from
    eval examples); `work` chained 128x128 matrix products per request make it slower
    without changing its answer."""
    from tandem.components.trainer_export import write_warmup_requests

    spec = {"x": tf.io.FixedLenFeature([], tf.float32)}

    class Served(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.eye(128) * 0.5)
            self.zero = tf.Variable(0.0)  # a variable: the work cannot be folded away

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            x = tf.io.parse_example(examples, spec)["x"]
            m = tf.fill([128, 128], tf.reduce_mean(x))
            for _ in range(work):
                m = tf.matmul(m, self.w)
            return {"probabilities": tf.sigmoid(x) + self.zero * tf.reduce_sum(m)}

    path = os.path.join(str(push_dir), str(version))
    served = Served()
    tf.saved_model.save(served, path, signatures={"serving_default": served.serve})
    write_warmup_requests(path, [_examples(os.path.join(str(push_dir), "eval.tfrecord"))], "y",
                          "m")
    return path


@pytest.mark.slow
def test_a_version_that_does_much_more_work_is_slower(tmp_path):
    push(tmp_path, 1)
    push(tmp_path, 2, work=40)
    assert warmup_latency.versions(str(tmp_path)) == [1, 2]
    found = warmup_latency.compare(str(tmp_path), "m", 1, 2)
    assert found.requests == 64 and len(found.new_ms) == len(found.old_ms) == 10
    assert found.ratio > 2 and found.slower(1.25), found.line(1.25)
    assert found.line(1.25).startswith("version 2 vs 1 in 10 interleaved rounds of 64 warmup "
                                       "requests: median latency ")


@pytest.fixture
def load_that_comes_and_goes():
    """Two processes that busy the CPU for 0.3 s and 0.15 s, then rest, over and over: the
    load that moved one version's warmup median 1.6x between two loads."""
    script = ("import time\nend = time.time() + 120\nwhile time.time() < end:\n"
              "    t = time.time()\n    while time.time() - t < {on}: pass\n"
              "    time.sleep({off})\n")
    burners = [subprocess.Popen([sys.executable, "-c", script.format(on=on, off=off)])
               for on, off in ((0.3, 0.2), (0.15, 0.35))]
    yield
    for burner in burners:
        burner.kill()
        burner.wait()


@pytest.mark.slow
def test_two_equal_versions_under_a_changing_load_are_not_slower(tmp_path,
                                                                  load_that_comes_and_goes):
    push(tmp_path, 1, work=4)
    push(tmp_path, 2, work=4)
    found = warmup_latency.compare(str(tmp_path), "m", 1, 2)
    assert not found.slower(1.25), found.line(1.25)
    assert 0.8 < found.ratio < 1.25 and found.noise < 1.5, found.line(1.25)


def _rounds(old: float, ratios: list[float]) -> LatencyComparison:
    return LatencyComparison(1, 2, 64, tuple([old] * len(ratios)),
                             tuple(old * r for r in ratios))


def test_slower_means_beyond_the_round_to_round_noise_and_above_the_limit():
    steady = _rounds(0.6, [1.30, 1.31, 1.29, 1.30, 1.32, 1.28, 1.30, 1.31, 1.29, 1.30])
    assert steady.ratio == pytest.approx(1.30) and steady.noise < 1.02
    assert steady.slower(1.25) and not steady.slower(1.35)
    # The same median, from rounds that disagree by 2x: the machine, not the model.
    noisy = _rounds(0.6, [0.7, 2.0, 1.3, 0.8, 1.9, 1.3, 0.75, 2.1, 1.3, 1.35])
    assert noisy.ratio == pytest.approx(1.30) and noisy.noise > 1.3
    assert not noisy.slower(1.25)
    # Steadily a little slower, but less than the smallest slowdown worth a failure.
    slight = _rounds(0.6, [1.10] * 10)
    assert slight.noise == 1.0 and not slight.slower(1.25)
