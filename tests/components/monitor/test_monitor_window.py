"""`tandem monitor run --window DURATION`: windows cut by the requests' arrival time, not by
their count, and a drift named in the windows where it happened."""

import json
import time

import pytest

from tests.components.monitor.conftest import examples_of, write_log
from tests.conftest import tandem

pytestmark = pytest.mark.xdist_group("monitor")

START = 1_800_000_000  # a multiple of 600: windows of 10 minutes start on it


def _key(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@pytest.mark.slow
def test_window_by_arrival_time_names_the_windows_that_drifted(monitor_data,
                                                               training_statistics, tmp_path):
    """1,200 clean requests one a second, then 1,000 older users one every two seconds: by
    10-minute windows that is 600, 600, then 300 a window (a count-based window would hold
    the same number in each), and the age drift is found only in the later windows."""
    write_log(tmp_path / "logs" / "clean", examples_of(monitor_data / "clean")[:1200],
              start=START, spacing_s=1.0)
    write_log(tmp_path / "logs" / "older", examples_of(monitor_data / "age_shift"),
              start=START + 1200, spacing_s=2.0)
    out = tmp_path / "out"
    done = tandem("monitor", "run", "--logs", str(tmp_path / "logs"), "--config", "listening",
                  "--out", str(out), "--window", "10m",
                  "--training-statistics", training_statistics, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "windows of 600s" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    windows = summary["windows"]
    assert [(w["window"], w["records"]) for w in windows] == [
        (_key(START), 600), (_key(START + 600), 600), (_key(START + 1200), 300),
        (_key(START + 1800), 300), (_key(START + 2400), 300), (_key(START + 3000), 100)]
    assert all(START + 600 * i <= w["first"] <= w["last"] < START + 600 * (i + 1)
               for i, w in enumerate(windows))
    assert windows[-1]["too_small"] and not any(w["too_small"] for w in windows[:-1])
    skewed = [w["window"] for w in windows if "age" in w.get("skew", {}).get("alerts", [])]
    assert skewed == [_key(START + 600 * i) for i in (2, 3, 4)]
    assert "age" in summary["drift_features"] and "age" in summary["skew_features"]
    assert f"window {_key(START + 1200)}: 300 requests" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--window", "0"], "--window must be positive, got '0'"),
    (["--window", "15x"], "--window: '15x' is not a duration (e.g. 15m, 1h, 3600)"),
    (["--window=-5m"], "--window must be positive, got '-5m'"),
    (["--window", "1h", "--window-records", "100"], "not allowed with argument"),
])
def test_a_bad_window_is_one_line_and_exit_2(args, message, monitor_data, tmp_path):
    write_log(tmp_path / "logs", examples_of(monitor_data / "clean")[:10])
    done = tandem("monitor", "run", "--logs", str(tmp_path / "logs"), "--config", "listening",
                  "--out", str(tmp_path / "out"), *args, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.slow
def test_drift_from_a_new_feature_snapshot_names_it(monitor_data, training_statistics,
                                                    tmp_path):
    """900 clean requests decorated from one snapshot, then 1,000 older users from another,
    the switch in the middle of a 10-minute window: the window is cut in two by snapshot, and
    the age drift is traced to the new snapshot, 100% of its window, against the old one."""
    old, new = {"sqlite": "91c0aaaaaaaaaaaa"}, {"sqlite": "3f2abbbbbbbbbbbb"}
    write_log(tmp_path / "logs" / "clean", examples_of(monitor_data / "clean")[:900],
              start=START, spacing_s=1.0, sources=old)
    write_log(tmp_path / "logs" / "older", examples_of(monitor_data / "age_shift"),
              start=START + 900, spacing_s=1.0, sources=new)
    out = tmp_path / "out"
    done = tandem("monitor", "run", "--logs", str(tmp_path / "logs"), "--config", "listening",
                  "--out", str(out), "--window", "10m",
                  "--training-statistics", training_statistics, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    new_key = f"{_key(START + 600)} sqlite@{new['sqlite']}"
    assert [(w["window"], w["records"]) for w in summary["windows"][:3]] == [
        (_key(START), 600), (_key(START + 600), 300), (new_key, 300)]
    assert summary["windows"][1]["sources"] == {f"sqlite@{old['sqlite']}": 300}
    traced = [a for a in summary["source_attribution"] if a["feature"] == "age"]
    assert traced and traced[0]["window"] == new_key
    assert traced[0]["source"] == f"sqlite@{new['sqlite']}" and traced[0]["share"] == 1.0
    assert traced[0]["earlier"] == [f"sqlite@{old['sqlite']}"]
    assert (f"age drifted (PSI {traced[0]['psi']:.3g}); 100% of the drifted examples were "
            f"decorated from sqlite@{new['sqlite']}; earlier windows sqlite@{old['sqlite']}"
            ) in done.stdout
    html = (out / "report.html").read_text()
    assert "Drift traced to a feature source" in html
