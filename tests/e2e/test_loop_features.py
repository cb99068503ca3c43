"""The loop's feature-source scenario end to end: a users snapshot with a unit bug is diffed,
replayed over the logged traffic and rejected with `age` named; a benign snapshot passes and
is switched in under traffic with no failed request, and the log names it from then on."""

import json
import re
import sqlite3

import pytest

from tandem.schemas.request_log import PRIMARY, read_records
from tandem.serving.snapshots import open_snapshot
from tests.conftest import library_log_lines, tandem

pytestmark = pytest.mark.xdist_group("loop-features")


@pytest.mark.timeout(1500)
def test_a_buggy_snapshot_is_rejected_and_a_benign_one_switched_in_under_traffic(tmp_path):
    work = tmp_path / "loop"
    done = tandem("loop", "--scenario", "feature-source", "--rows", "6000", "--out", str(work),
                  "--set", "beam.direct_running_mode=in_memory", timeout=1500)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    summary = done.stdout[done.stdout.index("== summary"):]
    steps = dict(re.findall(r"^  (\d)\. .*?\s+\d+\.\ds  (.*)$", summary, re.M))
    assert sorted(steps) == ["1", "2", "3", "4", "5"], summary
    data = work / "data"

    # The buggy snapshot: every age in months. The diff sees age and only age change ...
    buggy = data / "features-age-in-months.sqlite"
    with sqlite3.connect(buggy) as db, sqlite3.connect(data / "features.sqlite") as serving:
        assert db.execute("SELECT SUM(age) FROM users").fetchone()[0] == \
            12 * serving.execute("SELECT SUM(age) FROM users").fetchone()[0]
    diff = json.loads((work / "features" / "age-in-months-diff" / "diff.json").read_text())
    users = diff["tables"]["users"]
    changed = {c: m["changed"] for c, m in users["columns"].items() if m["changed"]}
    entities = users["entities"]
    assert list(changed) == ["age"] and entities["changed"] == entities["from"] > 0, users
    assert diff["shifted"] == ["users.age"], diff["shifted"]
    # ... and the replay over the logged traffic rejects it, blaming age.
    report = json.loads((work / "features" / "age-in-months-replay" / "report.json").read_text())
    assert not report["verdict"]["passed"]
    failed = [c["check"] for c in report["verdict"]["checks"] if not c["passed"]]
    assert any("flip_rate" in c or "delta" in c for c in failed), report["verdict"]
    columns = report["features"]["columns"]
    assert columns["age"]["share"] > 0.99 and all(
        m["changed"] == 0 for name, m in columns.items() if name != "age"), columns
    assert steps["4"].startswith("rejected (") and "the divergence is age's" in steps["4"]

    # The benign snapshot: new users only. Nothing the log names changes: no flip, no miss.
    benign = json.loads((work / "features" / "new-users-replay" / "report.json").read_text())
    assert benign["verdict"]["passed"], benign["verdict"]
    assert benign["features"]["redecorated_differently"] == 0
    assert benign["features"]["missing_entities"] == 0
    assert re.search(r"^passed; switched in under traffic: [\d,]+ requests, 0 failed", steps["5"])

    # Switched: the gateway's source history records it, and every request logged after the
    # first one decorated from it names it (read here from the log, not from the loop's say).
    source = open_snapshot(str(data / "features-new-users.sqlite"))
    version = source.version
    source.close()
    history = json.loads((work / "gateway.yaml.sources.json").read_text())
    current = history["history"][history["current"]]
    assert current["version"] == version and current["source"].endswith("new-users.sqlite")
    old = open_snapshot(str(data / "features.sqlite"))
    old_version = old.version
    old.close()
    # The requests sent while it switched are the log's last ones: the first of them name the
    # old snapshot, and from one request on every one names the new.
    meanwhile = int(re.search(r"under traffic: ([\d,]+) requests", steps["5"]).group(1)
                    .replace(",", ""))
    versions = [set(r.sources.values()) for r in read_records(str(work / "request_logs"))
                if r.role == PRIMARY][-meanwhile:]
    assert len(versions) == meanwhile > 0
    first = next(i for i, v in enumerate(versions) if version in v)
    assert 0 < first < meanwhile, first
    assert all(old_version in v for v in versions[:first])
    assert all(version in v for v in versions[first:])
    # The buggy snapshot's replay was judged by the replay's default limits, not the loop's
    # looser ones for a retrained model.
    limits = {c["check"]: c["limit"] for c in report["verdict"]["checks"]}
    assert limits["symmetric_flip_rate (95% upper bound)"] == 0.05, limits

    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert library_log_lines(done.stdout, done.stderr) == []
