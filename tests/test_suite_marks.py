"""The suite's own bookkeeping: what `make test-fast` leaves out, and the tests it names
when one grows slow without a mark."""

import re

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
