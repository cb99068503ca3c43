"""The suite's own bookkeeping: what `make test-fast` leaves out, and the tests it names
when one grows slow without a mark."""

import re
import subprocess
import sys

from tests.conftest import ROOT, SLOW_SECONDS, unmarked_slow


def test_a_slow_call_without_a_mark_is_named_slowest_first():
    calls = {
        "a.py::quick": (0.3, {"quick"}),
        "a.py::slow_marked": (SLOW_SECONDS + 20, {"slow"}),
        "a.py::pipeline_run": (SLOW_SECONDS + 90, {"pipeline"}),
        "b.py::grew": (SLOW_SECONDS + 1, {"grew"}),
        "b.py::grew_more": (SLOW_SECONDS + 3, {"grew_more"}),
        "b.py::at_the_limit": (SLOW_SECONDS, {"at_the_limit"}),
    }
    assert unmarked_slow(calls) == [f"{SLOW_SECONDS + 3:.1f}s b.py::grew_more",
                                    f"{SLOW_SECONDS + 1:.1f}s b.py::grew"]


def test_make_test_fast_leaves_out_both_marks_and_pytest_knows_them():
    makefile = open(f"{ROOT}/Makefile").read()
    fast = re.search(r"^test-fast:.*\n\t(.*)$", makefile, re.M).group(1)
    assert '-m "not pipeline and not slow"' in fast
    ini = open(f"{ROOT}/pytest.ini").read()
    assert re.search(r"^\s+slow: ", ini, re.M) and re.search(r"^\s+pipeline: ", ini, re.M)


def test_the_hooks_name_an_unmarked_test_in_a_folder_named_like_a_mark(tmp_path):
    """Run through pytest and xdist as `make test-fast` runs: a test under a `pipeline/`
    folder is not marked `pipeline` by its path (a report's keywords hold folder names)."""
    conftest = open(f"{ROOT}/tests/conftest.py").read()
    assert "\nSLOW_SECONDS = 5.0\n" in conftest
    (tmp_path / "conftest.py").write_text(
        conftest.replace("\nSLOW_SECONDS = 5.0\n", "\nSLOW_SECONDS = 0.0\n"))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "test_a.py").write_text(
        "import time\nimport pytest\n\n"
        "def test_unmarked():\n    time.sleep(0.01)\n\n"
        "@pytest.mark.slow\ndef test_marked():\n    time.sleep(0.01)\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-n", "2", "-o", "addopts=", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 unmarked test(s) over 0s" in run.stdout, run.stdout
    assert "pipeline/test_a.py::test_unmarked" in run.stdout
    assert "test_marked" not in run.stdout
