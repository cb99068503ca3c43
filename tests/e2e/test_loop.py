"""`make run`'s loop, end to end, at its default scale: every step runs, every report exists,
and every server it started is stopped."""

import os
import re
import socket

import pytest

from tests.conftest import library_log_lines, tandem

pytestmark = pytest.mark.xdist_group("loop")


@pytest.mark.timeout(1500)  # the whole product, twice trained, at `make run`'s scale
def test_the_whole_loop_runs_and_cleans_up(tmp_path):
    work = tmp_path / "loop"
    done = tandem("loop", "--out", str(work), timeout=1500)  # `make run`'s default scale
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    out = done.stdout
    summary = out[out.index("== summary"):]
    steps = re.findall(r"^  (\d)\. .*?\s+(\d+\.\d)s  (.*)$", summary, re.M)
    assert [int(n) for n, _, _ in steps] == [1, 2, 3, 4, 5, 6, 7]
    results = {int(n): text for n, _, text in steps}
    assert "labelled stable" in results[1]
    assert "drift found in hour_of_day" in results[3]
    assert "labelled canary" in results[4]
    # The default scenario's verdict is decided by its inputs (seeded data, seeded training):
    # v2 passes every check of the replay's gate and is promoted; the bad-canary scenario
    # (tests/e2e/test_loop_config.py) is the other way round.
    import json

    replay = json.loads((work / "replay" / "report.json").read_text())
    checks = {c["check"]: c for c in replay["verdict"]["checks"]}
    assert all(c["passed"] for c in checks.values()), checks
    flips = checks["symmetric_flip_rate (95% upper bound)"]
    assert flips["limit"] == 0.10 and flips["value"] <= 0.10
    assert replay["input"]["duplicate_examples"] == 0  # the mirror sent requests not sent before
    assert results[5] == "replay PASSED"
    assert results[6].startswith("v2 (version") and results[6].endswith("promoted to stable")
    assert re.search(r"stable back to v1; [\d,]+ requests sent meanwhile, 0 failed", results[7])
    reports = re.findall(r"report: .*?\s(/\S+)$", summary, re.M)
    assert len(reports) == 4 and all(os.path.exists(p) for p in reports)
    # v1's and v2's statistics each keep their own report, named for what they describe.
    statistics = dict(re.findall(r"report: (statistics \(.*?\))\s+(/\S+)$", summary, re.M))
    assert len(set(statistics.values())) == 2, statistics
    assert "/span-1/" in statistics["statistics (v1's training data)"]
    assert "/span-1/" not in statistics["statistics (v2's training data: the log)"]
    assert "servers stopped" in summary
    # Nothing listens on the ports the loop used any more.
    ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)}
    assert len(ports) >= 2
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, port
    assert "Traceback" not in done.stderr
    assert library_log_lines(done.stdout, done.stderr) == []

    # `tandem score` reads the loop's evidence; every automated point names a path that exists.
    scored = tandem("score", "--run", str(work), "--json")  # the loop recorded its config
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    tests = {t["test"]: t for t in result["tests"]}
    automated = {k for k, t in tests.items() if t["status"] == "automated"}
    # A fresh default run scores above 5: every test but the two about how a team works
    # (D6, M1: manual reviews only) is automated by a check that ran.
    assert automated == set(tests) - {"D6", "M1"}, {
        k: (t["status"], t["evidence"]) for k, t in tests.items() if k not in automated}
    # Each section scores one point per automated test (half for a manual one), and the
    # score is the weakest section's: here every section but the two manual tests' full.
    for section, points in result["sections"].items():
        rows = [t for t in result["tests"] if t["section"] == section]
        assert points == sum(t["status"] == "automated" for t in rows), section
    assert result["score"] == min(result["sections"].values()) > 5
    # The checks that only the loop can feed name what they measured.
    assert re.search(r"interleaved rounds .* median latency", tests["Mon6"]["evidence"])
    assert re.search(r"offline [+-]\d\.\d{4} \(Evaluator, eval split\) vs online [+-]\d\.\d{4}",
                     tests["M2"]["evidence"])
    assert re.search(r"built \d+\.\d days ago \(limit 30\)", tests["Mon4"]["evidence"])
    for key in automated:
        path = tests[key]["evidence"].rsplit(": ", 1)[-1]
        assert os.path.exists(path), (key, path)
    # Deleting one piece of evidence lowers exactly that test's points.
    os.remove(work / "models.config.history.json")
    again = json.loads(tandem("score", "--config", "listening", "--run", str(work),
                              "--json").stdout)
    changed = {t["test"] for t, u in zip(result["tests"], again["tests"], strict=True)
               if t["points"] != u["points"]}
    assert changed == {"I7"} and again["sections"]["infrastructure"] == \
        result["sections"]["infrastructure"] - 1
    # A manual point needs a reviewer.
    (tmp_path / "reviews.yaml").write_text("reviews:\n  - {test: D5, date: 2026-11-20, "
                                           "link: 'https://review.example/1'}\n")
    refused = tandem("score", "--config", "listening", "--run", str(work), "--set",
                     f"score.reviews={tmp_path / 'reviews.yaml'}")
    assert refused.returncode == 2 and "(D5): no reviewer" in refused.stderr
