"""Test setup shared by every test: environment before TensorFlow loads, and the expensive runs
that many tests only read, made once per session (one validation front and training run)."""

import dataclasses
import os
import re
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# A test that runs a TFX pipeline (LocalDagRunner, `tandem run`/`retrain`/`loop`) or reads a
# session run: everything under tests/e2e, every user of `trained_listening`, and the few
# elsewhere that carry the marker. `make test-fast` leaves them out.
PIPELINE_FIXTURES = {"trained_listening", "trained_tabular"}

# What a work unit costs, roughly, in minutes on two cores. Only the order it gives matters:
# longest first, so that neither worker is left with a long unit while the other idles.
LOOP_TEST_MINUTES = 6  # `tandem loop`: two trainings, two servers, traffic, the replay
PIPELINE_TEST_MINUTES = 1  # a pipeline run on small data, or a test of a session run
SESSION_RUN_MINUTES = {"trained_listening": 4, "trained_tabular": 2}  # made once by the unit that needs it
SLOW_TEST_MINUTES = 0.2  # a test marked `slow`: a Beam job, a process, a training
OTHER_TEST_MINUTES = 0.02
# A test whose own call takes longer than this and carries neither `pipeline` nor `slow` is
# named after the run, so that `make test-fast` stays the quick loop it is meant to be.
SLOW_SECONDS = 5.0


def xdist_groups(item: pytest.Item) -> list[str]:
    return sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                   for m in item.iter_markers("xdist_group")})


def xdist_unit(item: pytest.Item) -> str:
    """The work unit `--dist loadgroup` sends to one worker: the test's xdist groups joined
    as xdist joins them, or the test alone."""
    return "_".join(xdist_groups(item)) or item.nodeid


def _minutes(items: list[pytest.Item]) -> float:
    total = sum(SESSION_RUN_MINUTES.get(f, 0) for f in
                {f for item in items for f in item.fixturenames})
    for item in items:
        if any(name.startswith("loop") for name in xdist_groups(item)):
            total += LOOP_TEST_MINUTES
        elif item.get_closest_marker("pipeline"):
            total += PIPELINE_TEST_MINUTES
        elif item.get_closest_marker("slow"):
            total += SLOW_TEST_MINUTES
        else:
            total += OTHER_TEST_MINUTES
    return total


def pytest_configure(config: pytest.Config) -> None:
    # xdist's loadscope reorder sorts units by their number of tests, which put a one-test
    # unit (the loop) last; the units go out in the order below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(tryfirst=True)  # before xdist names each test's unit from its groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the pipeline tests; put every test of a session run in that run's xdist group
    (one worker makes the run, the same worker runs its tests) and no other test; then order
    the work units longest first, each unit's tests in their collected order. xdist hands
    each worker one unit, and the next as it runs low, in this order."""
    e2e = os.path.join(ROOT, "tests", "e2e") + os.sep
    for item in items:
        uses = PIPELINE_FIXTURES & set(item.fixturenames)
        if str(item.path).startswith(e2e) or uses:
            item.add_marker(pytest.mark.pipeline)
        for fixture in uses - set(xdist_groups(item)):
            item.add_marker(pytest.mark.xdist_group(fixture))
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(xdist_unit(item), []).append(item)
    ordered = sorted(units.values(), key=_minutes, reverse=True)  # stable: ties keep order
    items[:] = [item for unit in ordered for item in unit]


def unmarked_slow(calls: dict[str, tuple[float, set[str]]]) -> list[str]:
    """The tests whose call took over SLOW_SECONDS without a `pipeline` or `slow` mark, slowest
    first: `calls` maps a test's id to its call's seconds and its marks' names. Only the call
    counts: a session fixture's set-up lands on whichever test needs it first."""
    late = [(seconds, nodeid) for nodeid, (seconds, marks) in calls.items()
            if seconds > SLOW_SECONDS and not marks & {"pipeline", "slow"}]
    return [f"{seconds:.1f}s {nodeid}" for seconds, nodeid in sorted(late, reverse=True)]


_CALLS: dict[str, tuple[float, set[str]]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """The test's marks travel with its call's report (to xdist's controller too): a report's
    keywords also hold the names of the folders a test sits in, so `tests/pipeline/` would
    count as marked `pipeline`."""
    report = (yield).get_result()
    if report.when == "call":
        report.user_properties.append(("marks", sorted({m.name for m in item.iter_markers()})))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":  # under xdist, the controller sees every worker's reports
        marks = dict(report.user_properties).get("marks", [])
        _CALLS[report.nodeid] = (report.duration, set(marks))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    late = unmarked_slow(_CALLS)
    if late:
        terminalreporter.write_sep("=", f"{len(late)} unmarked test(s) over {SLOW_SECONDS:g}s: "
                                        "mark them `slow` to keep make test-fast quick")
        for line in late:
            terminalreporter.write_line(line)

# Library log lines as they reach a terminal: Python's default format (`INFO:absl:...`,
# `WARNING:tensorflow:...`), absl/glog's (`I1203 21:40:56.123456 140 file.py:12] ...`),
# TensorFlow's C++ (`2026-12-03 21:40:56.123: W tensorflow/...`) and Python warnings
# (`file.py:12: FutureWarning: ...`). A successful run without --verbose shows none.
LIBRARY_LOG_LINE = re.compile(
    r"^((DEBUG|INFO|WARNING|ERROR|CRITICAL|FATAL): ?[\w.]+:"
    r"|[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\]"  # also W0000 00:00:1796542976.74
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
    r"|\S+:\d+: \w*Warning: )")


def library_log_lines(*texts: str) -> list[str]:
    """Every line of `texts` in a library's log format."""
    return [line for text in texts for line in text.splitlines()
            if LIBRARY_LOG_LINE.match(line)]


@pytest.fixture(scope="session")
def clean_listening(tmp_path_factory):
    """4,500 clean listening examples (TFRecord and CSV), generated once per session."""
    from tandem.pipeline.datasets import listening

    out = tmp_path_factory.mktemp("listening")
    listening.generate(str(out), 4500, seed=7, formats=("tfrecord", "csv"))
    return out


@dataclasses.dataclass
class CliRun:
    """A `tandem run` made as a user makes it, with what ML Metadata recorded of it."""

    config: object  # PipelineConfig
    returncode: int
    stdout: str
    stderr: str
    outputs: dict
    pushed: str | None


def tandem(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The `tandem` command in a child process; both pipes drained (no deadlock on a full
    pipe), bounded in time."""
    return subprocess.run([sys.executable, "-m", "tandem.pipeline.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_listening(clean_listening, tmp_path_factory):
    """The listening pipeline run once through push by the CLI, Beam in worker processes
    (multi_processing, a worker per core): the mode `auto` picks for large inputs, here on purpose
    on small ones, so that one full run covers it. Tests that only read its outputs share
    it; tests that rerun on its output directory pass the same mode (part of TFX's cache
    key) and see a warm cache."""
    from tandem.pipeline.config import load_config
    from tandem.pipeline.runner import latest_outputs, pushed_destination

    out_dir = tmp_path_factory.mktemp("trained")
    # Every gate on: on 3,000 training rows the Trainer may ship the linear model when the
    # configured one is not better beyond the eval split's error; the tests read which.
    overrides = [f"data.location={clean_listening}", f"output_dir={out_dir}",
                 "beam.direct_running_mode=multi_processing"]
    proc = tandem("run", "--config", "listening", *[a for o in overrides for a in ("--set", o)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = load_config("listening", overrides)
    outputs = latest_outputs(config)
    return CliRun(config, proc.returncode, proc.stdout, proc.stderr, outputs,
                  pushed_destination(outputs))
