"""`tandem score`: the ML Test Score (Breck et al., 2017) of a pipeline, from its own evidence.

28 tests, 7 in each of four sections. A test scores 1 when it is automated (a check that ran,
found in the run's artifacts), 0.5 when it is done by hand and a reviewer's note says so (in
the reviews file the config names), 0 otherwise. A section's score is its sum; the system's
is the minimum over the sections. Nothing is scored manual by default, and nothing is re-run:
the evidence is what ML Metadata, the build record, the Evaluator, the replay, the monitor and
the promotion history already hold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from tandem.pipeline.score_checks import CHECKS
from tandem.pipeline.score_evidence import Failed, gather
from tandem.schemas.exit_status import BadInputError

SECTIONS = ("data", "model", "infrastructure", "monitoring")
RUBRIC: list[tuple[str, str, str]] = [
    ("data", "D1", "Feature expectations are captured in a schema"),
    ("data", "D2", "All features are beneficial"),
    ("data", "D3", "No feature's cost is too much"),
    ("data", "D4", "Features adhere to meta-level requirements"),
    ("data", "D5", "The data pipeline has appropriate privacy controls"),
    ("data", "D6", "New features can be added quickly"),
    ("data", "D7", "All input feature code is tested"),
    ("model", "M1", "Model specs are reviewed and submitted"),
    ("model", "M2", "Offline and online metrics correlate"),
    ("model", "M3", "All hyperparameters have been tuned"),
    ("model", "M4", "The impact of model staleness is known"),
    ("model", "M5", "A simpler model is not better"),
    ("model", "M6", "Model quality is sufficient on important data slices"),
    ("model", "M7", "The model is tested for considerations of inclusion"),
    ("infrastructure", "I1", "Training is reproducible"),
    ("infrastructure", "I2", "Model specs are unit tested"),
    ("infrastructure", "I3", "The ML pipeline is integration tested"),
    ("infrastructure", "I4", "Model quality is validated before serving"),
    ("infrastructure", "I5", "The model is debuggable"),
    ("infrastructure", "I6", "Models are canaried before serving"),
    ("infrastructure", "I7", "Serving models can be rolled back"),
    ("monitoring", "Mon1", "Dependency changes result in notification"),
    ("monitoring", "Mon2", "Data invariants hold for inputs"),
    ("monitoring", "Mon3", "Training and serving are not skewed"),
    ("monitoring", "Mon4", "Models are not too stale"),
    ("monitoring", "Mon5", "Models are numerically stable"),
    ("monitoring", "Mon6", "Computing performance has not regressed"),
    ("monitoring", "Mon7", "Prediction quality has not regressed"),
]
IDS = [key for _, key, _ in RUBRIC]


class ScoreError(BadInputError):
    """Bad input for `tandem score` (exit status 2): the message names it."""


@dataclasses.dataclass
class Result:
    status: str = "missing"  # automated | failed (ran, did not hold) | manual | missing
    points: float = 0.0
    evidence: str = ""


def load_reviews(path: str | None) -> dict[str, dict]:
    """Manual evidence: `reviews: [{test, reviewer, date, link, note}]`. An entry without a
    reviewer, a date (a past or present day, YYYY-MM-DD) or a link, or for an unknown test,
    is refused."""
    if not path:
        return {}
    from tandem.schemas.yaml_config import YamlConfigError, read_yaml

    try:
        raw = read_yaml(path, "reviews file") or {}
    except YamlConfigError as e:
        raise ScoreError(str(e)) from None
    entries = raw.get("reviews") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ScoreError(f"{path}: expected 'reviews:' with a list of entries")
    out: dict[str, dict] = {}
    for i, entry in enumerate(entries, 1):
        where = f"{path}: review {i}"
        if not isinstance(entry, dict):
            raise ScoreError(f"{where}: expected a mapping")
        test = entry.get("test")
        if test not in IDS:
            raise ScoreError(f"{where}: unknown test {test!r} (one of {', '.join(IDS)})")
        for key in ("reviewer", "date", "link"):
            if not str(entry.get(key) or "").strip():
                raise ScoreError(f"{where} ({test}): no {key}; a manual point needs who "
                                 "reviewed it, when, and a link to the review")
        out[test] = {**entry, "date": _review_date(entry["date"], f"{where} ({test})")}
    return out


def _review_date(value: Any, where: str) -> str:
    """A review's date as YYYY-MM-DD: a real calendar day, not in the future."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        try:
            value = dt.date.fromisoformat(str(value).strip())
        except ValueError:
            raise ScoreError(f"{where}: date {value!r} is not a day written YYYY-MM-DD") \
                from None
    if value > dt.datetime.now(dt.timezone.utc).date():
        raise ScoreError(f"{where}: date {value.isoformat()} is in the future; a manual "
                         "point is for a review that happened")
    return value.isoformat()


def score(config, run_dir: str | None = None) -> dict[str, Any]:
    ev = gather(config, run_dir)
    reviews = load_reviews(config.score.reviews)
    rows = []
    for section, key, title in RUBRIC:
        result = Result()
        check = CHECKS.get(key)
        found = check(ev) if check else None
        if found and not isinstance(found, Failed):
            result = Result("automated", 1.0, found)
        elif found:
            result = Result("failed", 0.0, str(found))
        elif key in reviews:
            r = reviews[key]
            result = Result("manual", 0.5, f"reviewed by {r['reviewer']} on {r['date']}: "
                                           f"{r['link']}")
        rows.append({"section": section, "test": key, "title": title,
                     **dataclasses.asdict(result)})
    sections = {s: sum(r["points"] for r in rows if r["section"] == s) for s in SECTIONS}
    return {"tests": rows, "sections": sections, "score": min(sections.values()),
            "run": run_dir, "metadata": config.metadata_path}


def format_score(result: dict) -> list[str]:
    lines = [f"{'section':<15} {'test':<5} {'status':<9} {'pts':>4}  title / evidence"]
    for r in result["tests"]:
        lines.append(f"{r['section']:<15} {r['test']:<5} {r['status']:<9} {r['points']:>4.1f}  "
                     f"{r['title']}")
        if r["evidence"]:
            lines.append(f"{'':<37}{r['evidence']}")
    lines.append("")
    for section, points in result["sections"].items():
        lines.append(f"{section:<15} {points:.1f} / 7")
    lines.append(f"ML Test Score (the minimum over sections): {result['score']:.1f}")
    return lines
