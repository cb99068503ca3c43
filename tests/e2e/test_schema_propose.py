"""End-to-end: `tandem schema propose` on real data, reviewed as a diff against the curated schema."""

from tandem.pipeline import cli
from tandem.schemas import curated_schema_path, load_schema


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


def test_a_mistyped_label_is_named_before_any_statistics(clean_listening, tmp_path, capsys):
    code = cli.main([
        "schema", "propose", "--config", "listening", "--out", str(tmp_path / "s.pbtxt"),
        "--set", f"data.location={clean_listening}", "--set", "label=skiped",
    ])
    captured = capsys.readouterr()
    assert code == 2
    assert "computing statistics" not in captured.out
    assert "no label 'skiped'" in captured.err or "label 'skiped'" in captured.err
    assert not (tmp_path / "s.pbtxt").exists()


def test_proposing_over_the_curated_file_diffs_against_its_previous_contents(
    clean_listening, tmp_path, capsys
):
    curated = tmp_path / "schema.pbtxt"
    curated.write_text(open(curated_schema_path("listening")).read())
    code = cli.main([
        "schema", "propose", "--config", "listening", "--out", str(curated),
        "--set", f"data.location={clean_listening}", "--set", f"schema={curated}",
        "--set", "beam.direct_running_mode=in_memory",
    ])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "changes against the previous curated schema" in text
    assert "~ feature hour_of_day" in text and "- max: 23" in text
    assert "no difference" not in text
