"""The CLI's quiet output: TensorFlow's teardown noise is dropped, and nothing else is."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tandem.pipeline.quiet import NOISE_END, NOISE_START, drop_teardown_noise

NOISE = [NOISE_START + b" at 0x7f>\n", b"Traceback (most recent call last):\n",
         b'  File "atomic_function.py", line 291, in __del__\n', NOISE_END + b"\n"]

# At interpreter teardown the modules' globals are set to None, TensorFlow's refcount table
# among them, and a function a library still holds is deleted after that: as a pipeline's
# leftover functions are after `tandem run` returns. The exit hook the script registers first
# runs last, after the guard's, and recreates that state.
AT_TEARDOWN = textwrap.dedent("""
    import atexit, gc
    import tensorflow as tf
    from tensorflow.python.eager.polymorphic_function import atomic_function as af

    @tf.function
    def double(x):
        return x * 2

    held = [double.get_concrete_function(tf.constant(1.0))]
    print(float(held[0](tf.constant(2.0))))

    def teardown():
        global double
        af.RUNTIME_FUNCTION_REFS = None
        held.clear()
        double = None
        gc.collect()

    atexit.register(teardown)
    {guard}
""")

GUARD = "from tandem.pipeline.quiet import guard_tensorflow_teardown; guard_tensorflow_teardown()"


def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1",
               PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=240)


@pytest.mark.slow
def test_a_function_left_at_teardown_is_let_go_quietly_once_guarded():
    bare = _python(AT_TEARDOWN.format(guard=""))
    assert bare.returncode == 0 and bare.stdout.strip() == "4.0", bare.stderr
    # the case is real: unguarded, the interpreter prints TensorFlow's teardown error
    assert NOISE_START.decode() in bare.stderr, bare.stderr
    guarded = _python(AT_TEARDOWN.format(guard=GUARD))
    assert guarded.returncode == 0 and guarded.stdout.strip() == "4.0", guarded.stderr
    assert "Exception ignored" not in guarded.stderr and "Traceback" not in guarded.stderr, \
        guarded.stderr


@pytest.mark.slow
def test_the_guard_still_does_a_live_functions_bookkeeping():
    done = _python(textwrap.dedent("""
        import gc
        import tensorflow as tf
        from tensorflow.python.eager.polymorphic_function import atomic_function as af
        from tandem.pipeline import quiet

        quiet._guard_atomic_function()  # what the exit hook installs, now
        assert af.AtomicFunction.__del__.tandem_guarded

        @tf.function
        def double(x):
            return x * 2

        fn = double.get_concrete_function(tf.constant(1.0))
        before = sum(af.RUNTIME_FUNCTION_REFS.values())
        del fn, double
        gc.collect()
        print(before, sum(af.RUNTIME_FUNCTION_REFS.values()))
    """))
    assert done.returncode == 0, done.stderr
    before, after = (int(x) for x in done.stdout.split())
    assert after < before  # the guarded finalizer released the function's references


def test_the_stderr_filter_drops_the_known_block_and_keeps_everything_else():
    other = [b"Exception ignored in: <function Other.__del__>\n", b"ValueError: real\n"]
    lines = [b"before\n", *NOISE, b"between\n", *other, b"after\n"]
    assert drop_teardown_noise(lines) == [b"before\n", b"between\n", *other, b"after\n"]
    # a block that opens like the noise but ends otherwise is a real error: kept whole
    real = [NOISE[0], NOISE[1], b"RuntimeError: AtomicFunction Refcounting is invalid.\n"]
    assert drop_teardown_noise(real) == real
    long = [NOISE[0], *[b"  frame\n"] * 20]
    assert drop_teardown_noise(long) == long
