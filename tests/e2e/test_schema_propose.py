"""End-to-end: `tandem schema propose` on real data, reviewed as a diff against the curated schema."""

from pipeline import cli
from schemas import load_schema


def test_propose_writes_a_schema_and_prints_a_readable_diff(clean_listening, tmp_path, capsys):
    out = tmp_path / "proposed.pbtxt"
    code = cli.main([
        "schema", "propose", "--config", "listening", "--out", str(out),
        "--set", f"data.location={clean_listening}", "--set", "beam.direct_running_mode=in_memory",
    ])
    text = capsys.readouterr().out
    assert code == 0, text
    proposed = {f.name: f for f in load_schema(str(out)).feature}
    assert proposed["age"].HasField("int_domain")
    assert proposed["duration_s"].HasField("float_domain")
    assert list(proposed["skipped"].not_in_environment) == ["SERVING"]
    # The curated schema rounds ranges by hand, so the review shows those features...
    assert "changes against the curated schema" in text
    assert "~ feature hour_of_day" in text and "+ max: 25" in text and "- max: 23" in text
    # ...and none of the string domains, which the data reproduces exactly.
    assert "~ feature country" not in text and "~ feature context" not in text
