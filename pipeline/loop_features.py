"""The loop's feature-source scenario (`tandem loop --scenario feature-source`): after step 3
has logged the gateway's traffic, two new users snapshots go through the checks a feature-table
change gets before it ships, as a model does:

    4. a users snapshot with a unit bug (every age in months) is diffed against the serving
       one and replayed over the logged traffic: the replay rejects it, naming `age`
    5. a benign snapshot (a few new users) is diffed and replayed: it passes, and is switched
       in under traffic (`tandem features promote`'s promote_snapshot): no request fails, and the log names the
       new snapshot from the next request on

The model is v1 in both replays (A the logged answers, B v1 on the re-decorated examples), so
every difference comes from the snapshot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable

BUGGY_NOTE = "every age in months"
NEW_USERS = 25


class SnapshotError(RuntimeError):
    """The candidate snapshots could not be made: the loop's step fails with this message."""


class Snapshots:
    """The serving snapshot and the two candidates made from it, under work/data."""

    def __init__(self, serving: str, work: str):
        self.serving = serving
        self.buggy = os.path.join(work, "data", "features-age-in-months.sqlite")
        self.benign = os.path.join(work, "data", "features-new-users.sqlite")

    def make(self) -> None:
        """The buggy one: every user's age times 12. The benign one: NEW_USERS users added
        (copies of existing users' columns under ids no logged request names)."""
        try:
            self._make()
        except (OSError, sqlite3.Error) as e:
            raise SnapshotError(f"could not make the candidate snapshots from {self.serving}: "
                            f"{e}") from None

    def _make(self) -> None:
        for path in (self.buggy, self.benign):
            shutil.copyfile(self.serving, path)
        with contextlib.closing(sqlite3.connect(self.buggy)) as db, db:
            db.execute("UPDATE users SET age = age * 12")
        with contextlib.closing(sqlite3.connect(self.benign)) as db, db:
            columns = [row[1] for row in db.execute("PRAGMA table_info(users)")]
            key = columns.index("user_id")
            rows = db.execute(f"SELECT {', '.join(columns)} FROM users ORDER BY user_id LIMIT ?",
                              (NEW_USERS,)).fetchall()
            added = [tuple(f"new-user-{i:03d}" if c == key else v for c, v in enumerate(row))
                     for i, row in enumerate(rows)]
            db.executemany(f"INSERT INTO users VALUES ({', '.join('?' * len(columns))})", added)


def judge(name: str, logs: str, model_dir: str, gateway_yaml: str, candidate: str, out: str,
          overrides: list[str], beam_args: list[str], say: Callable[[str], None]) -> dict:
    """`tandem features diff` and `tandem shadow replay --candidate-features` for one
    snapshot; returns the replay's report."""
    from tandem.components.shadow.features_replay import summary as features_summary
    from tandem.components.shadow.replay import load_replay_config, summary
    from tandem.components.source_diff import summary as diff_summary
    from tandem.pipeline.feature_checks import run_features_diff, run_features_replay
    from tandem.serving.gateway.config import load_config

    serving = load_config(gateway_yaml).decorate.sqlite
    diff = run_features_diff(serving, candidate, os.path.join(out, f"{name}-diff"))
    for line in diff_summary(diff):
        say(f"   {line}")
    report = run_features_replay(logs, model_dir, model_dir, os.path.join(out, f"{name}-replay"),
                                 gateway_yaml, candidate, load_replay_config(None, overrides),
                                 beam_args=beam_args)
    for line in [*summary(report), *features_summary(report)]:
        say(f"   {line}")
    return report


def blamed_columns(report: dict) -> list[str]:
    """The joined columns that explain the replay's divergence, largest share first."""
    columns = report.get("features", {}).get("columns", {})
    ranked = sorted(columns.items(), key=lambda kv: -kv[1]["share"])
    return [name for name, m in ranked if m["changed"] and m["share"] > 0]


def versions_logged(logs: str, after: int, at_least: int, wait_s: float = 10.0
                    ) -> list[set[str]]:
    """Per logged primary record from the `after`-th on, in log order: the snapshot versions
    it was decorated from; read again (up to `wait_s`) until there are `at_least` of them."""
    from tandem.schemas.request_log import PRIMARY, read_records

    deadline = time.monotonic() + wait_s
    while True:
        logged = [set(r.sources.values()) for r in read_records(logs) if r.role == PRIMARY]
        if len(logged) - after >= at_least or time.monotonic() > deadline:
            return logged[after:]
        time.sleep(0.2)

