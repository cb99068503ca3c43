"""`tandem features diff`: entity and column changes between two feature-source snapshots,
the shift measured by the monitor's drift code, as JSON and a page drawn in Chromium."""

import json
import shutil
import sqlite3

import pytest

from tandem.pipeline.datasets import listening
from tests import browser
from tests.conftest import tandem


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("source-diff")
    listening.generate(str(root / "data"), 200, seed=5, source_rows=500)
    return str(root / "data" / "features.sqlite")


def snapshot(base: str, root, name: str, *sql: str) -> str:
    """A copy of the snapshot `base` in `root`, changed by `sql`."""
    path = str(root / f"{name}.sqlite")
    shutil.copy(base, path)
    con = sqlite3.connect(path)
    with con:
        for statement in sql:
            con.execute(statement)
    con.close()
    return path


def test_a_unit_bug_in_one_column_is_the_only_shift_and_entities_are_counted(sources, tmp_path):
    base = sources
    bad = snapshot(base, tmp_path, "months", "UPDATE users SET age = age * 12",
                   "DELETE FROM users WHERE user_id = 'u000001'",
                   "INSERT INTO users VALUES ('u999999', 30, 'US', 'free', 3)")
    done = tandem("features", "diff", "--from", base, "--to", bad, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "age: 499 value(s) changed (100.0%)" in done.stdout and "SHIFTED" in done.stdout
    report = json.loads((tmp_path / "diff.json").read_text())
    users = report["tables"]["users"]
    assert users["entities"] == {"from": 500, "to": 500, "added": 1, "removed": 1,
                                 "changed": 499, "unchanged": 0}
    assert users["examples"]["added"] == ["u999999"]
    assert report["shifted"] == ["users.age"]
    assert users["columns"]["age"]["psi"] > 1.0
    assert all(m["changed"] == 0 and not m["shifted"] for c, m in users["columns"].items()
               if c != "age")
    assert report["tables"]["tracks"]["entities"]["changed"] == 0
    rendered = browser.render(str(tmp_path / "diff.html"), str(tmp_path / "diff.png"))
    assert rendered.title == "tandem features diff: 1 column(s) shifted"
    assert len(rendered.figures) == 1  # age: the only changed column
    assert all(w > 100 and h > 100 and drawn > 10 for w, h, drawn in rendered.figures)
    assert rendered.requests == [] and rendered.violations == [] and rendered.errors == []


def test_the_same_snapshot_is_identical(sources, tmp_path):
    base = sources
    done = tandem("features", "diff", "--from", base, "--to", snapshot(base, tmp_path, "copy"),
                  "--out", str(tmp_path))
    report = json.loads((tmp_path / "diff.json").read_text())
    assert done.returncode == 0 and report["identical"] and report["shifted"] == []


@pytest.mark.slow
def test_bad_snapshots_are_one_line_and_exit_2(sources, tmp_path):
    base = sources
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    cases = [
        (["--to", base, "--tables", "users,nope"], "has no table 'nope'"),
        (["--to", snapshot(base, tmp_path, "int-keys", "ALTER TABLE users RENAME TO old",
                           "CREATE TABLE users (user_id INTEGER PRIMARY KEY, age INTEGER, "
                           "country TEXT, account_type TEXT, signup_days INTEGER)",
                           "DROP TABLE old")],
         "table 'users' is keyed by user_id (BYTES) in one snapshot and by user_id (INT)"),
        (["--to", snapshot(base, tmp_path, "real-age", "ALTER TABLE users DROP COLUMN age",
                           "ALTER TABLE users ADD COLUMN age REAL")],
         "table 'users' column 'age' is INT in one snapshot and FLOAT in the other"),
        (["--to", snapshot(base, tmp_path, "text-age", "UPDATE users SET age='x' WHERE rowid<5")],
         "table 'users' column 'age' is INT in sqlite@"),
        (["--to", str(garbage)], "is not a SQLite database"),
        (["--to", str(tmp_path / "absent.sqlite")], "No such file or directory"),
        (["--to", "http://127.0.0.1:1"], "is not a feature source"),
        (["--to", base, "--tables", ","], "--tables ',' names no table"),
        (["--to", base, "--out", base], "is a file, not a directory"),
    ]
    for extra, message in cases:
        done = tandem("features", "diff", "--from", base, *extra)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        assert len(lines) == 1 and message in lines[0], (extra, lines)
