"""`tandem score`: the rubric and the manual evidence it accepts."""

import pytest

from pipeline.score import IDS, RUBRIC, SECTIONS, ScoreError, load_reviews


def test_the_rubric_has_seven_tests_in_each_of_four_sections():
    assert len(RUBRIC) == 28 and len(set(IDS)) == 28
    assert all(sum(1 for s, _, _ in RUBRIC if s == section) == 7 for section in SECTIONS)


def test_a_manual_entry_needs_a_reviewer_a_date_and_a_link(tmp_path):
    good = tmp_path / "reviews.yaml"
    good.write_text("reviews:\n  - {test: D5, reviewer: dana, date: 2026-11-20, "
                    "link: 'https://review.example/1'}\n")
    assert load_reviews(str(good))["D5"]["reviewer"] == "dana"
    for entry, message in (
            ("{test: D5, date: 2026-11-20, link: x}", r"\(D5\): no reviewer"),
            ("{test: D5, reviewer: '', date: 2026-11-20, link: x}", r"\(D5\): no reviewer"),
            ("{test: D5, reviewer: dana, link: x}", r"\(D5\): no date"),
            ("{test: D5, reviewer: dana, date: 2026-11-20}", r"\(D5\): no link"),
            ("{test: Z9, reviewer: dana, date: 2026-11-20, link: x}", "unknown test 'Z9'")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"reviews:\n  - {entry}\n")
        with pytest.raises(ScoreError, match=message):
            load_reviews(str(bad))


def test_an_importance_that_cannot_tell_counts_as_run_with_its_reason_as_evidence():
    from pipeline.score import CHECKS, Evidence, Failed

    summary = ("cannot tell (n=193, auc 0.9909 ± 0.0143): the metric's 95% interval reaches "
               "the ceiling, so no drop could show for 2 of 3 features: noise, other")

    def d2(status: str):
        check = {"check": "importance", "status": status, "passed": status != "failed",
                 "summary": summary}
        return CHECKS["D2"](Evidence(config=None, run_dir=None, trained={"checks": [check]},
                                     trained_path="serving/1/build_record.json"))

    found = d2("cannot tell")
    assert found == f"{summary}: serving/1/build_record.json" and not isinstance(found, Failed)
    assert isinstance(d2("failed"), Failed)
