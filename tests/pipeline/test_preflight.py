"""Tests for the input checks that run before Beam starts, and the CLI's exit status 2."""

import dataclasses
import shutil

import pytest

from tandem.pipeline import cli
from tandem.pipeline.config import DataConfig, load_config
from tandem.pipeline.datasets import listening
from tandem.pipeline.preflight import InputError, check_inputs, check_label, resolve_input_files


def _config(location, fmt="tfrecord", pattern="span-{SPAN}/*.tfrecord.gz", **kw):
    config = load_config("listening")
    data = DataConfig(location=str(location), format=fmt, pattern=pattern)
    return dataclasses.replace(config, data=data, **kw)


def test_clean_data_passes_and_the_latest_span_is_chosen(clean_listening, tmp_path):
    summary = check_inputs(_config(clean_listening))
    assert summary.span == 1 and summary.rows_checked == 4500
    assert summary.label_values == ["0", "1"]
    root = tmp_path / "spans"
    shutil.copytree(clean_listening / "span-1", root / "span-1")
    shutil.copytree(clean_listening / "span-1", root / "span-12")
    span, files, glob = resolve_input_files(_config(root))
    assert span == 12 and all("span-12" in f for f in files)
    assert glob.endswith("span-12/*.tfrecord.gz")


def test_missing_location_and_no_matching_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_inputs(_config(tmp_path / "absent"))
    with pytest.raises(InputError, match="no input files match"):
        check_inputs(_config(tmp_path))


def test_a_file_as_data_location_names_the_directory_and_pattern_to_use(tmp_path):
    (tmp_path / "rows.csv").write_text("skipped,x\n0,1\n1,2\n")
    with pytest.raises(InputError, match=r"is a file; .*data.location=.* data.pattern=rows.csv"):
        check_inputs(_config(tmp_path / "rows.csv", "csv", "*.csv"))


def test_a_csv_that_is_not_utf8_is_named_with_its_line(tmp_path):
    (tmp_path / "a.csv").write_bytes("skipped,city\n0,Zürich\n".encode()
                                     + "1,Málaga\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"not UTF-8 text: byte 0xe1 on line 3"):
        check_inputs(_config(tmp_path, "csv", "*.csv"))
    # UTF-8 with non-ASCII text is fine.
    (tmp_path / "a.csv").write_bytes("skipped,city\n0,Zürich\n1,Málaga\n".encode())
    assert check_inputs(_config(tmp_path, "csv", "*.csv")).rows_checked == 2


def test_an_output_dir_that_cannot_be_made_is_named(clean_listening, tmp_path):
    (tmp_path / "file").write_text("")
    config = _config(clean_listening, output_dir=str(tmp_path / "file" / "out"))
    with pytest.raises(InputError, match=r"output directory .*/file/out cannot be created: .*"
                                         r"\(output_dir\)"):
        check_inputs(config)


def test_csv_without_label_column(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="no label column 'skipped'"):
        check_inputs(_config(tmp_path, "csv", "*.csv"))


def test_empty_inputs(tmp_path):
    (tmp_path / "a.csv").write_text("skipped,x\n")
    with pytest.raises(InputError, match="input is empty"):
        check_inputs(_config(tmp_path, "csv", "*.csv"))
    (tmp_path / "span-1").mkdir()
    (tmp_path / "span-1" / "d.tfrecord.gz").write_bytes(b"")
    with pytest.raises(InputError, match="input is empty"):
        check_inputs(_config(tmp_path))


def test_corrupt_tfrecord_is_named(tmp_path):
    (tmp_path / "span-1").mkdir()
    (tmp_path / "span-1" / "d.tfrecord").write_bytes(b"this is not a tfrecord file at all")
    with pytest.raises(InputError, match="not a readable TFRecord"):
        check_inputs(_config(tmp_path, pattern="span-{SPAN}/*.tfrecord"))


@pytest.mark.parametrize(
    "values, problem, message",
    [
        (["0", "1", "2"], "binary_classification", "3 distinct values"),
        (["yes", "yes"], "binary_classification", "one value"),
        (["1", "3"], "binary_classification", "needs 0 and 1"),
        (["0.5", "1"], "multiclass_classification", "fractional"),
        (["a", "b", "x1"], "regression", "must be numeric"),
        (["1", ""], "regression", "missing"),
        (["0", "-1", "2"], "multiclass_classification", "negative class id -1"),
    ],
)
def test_labels_that_do_not_fit_the_problem_type(values, problem, message):
    with pytest.raises(InputError, match=message):
        check_label(values, "y", problem)


def test_labels_that_fit():
    assert check_label([0, 1, 1], "y", "binary_classification") == ["0", "1"]
    assert check_label([b"cat", b"dog"], "y", "binary_classification") == ["cat", "dog"]
    assert check_label(["a", "b", "c"], "y", "multiclass_classification") == ["a", "b", "c"]
    assert check_label(["1.5", "2", "-3"], "y", "regression") == ["-3 to 2"]


def test_cli_reports_bad_input_with_one_line_and_status_2(tmp_path, capsys, clean_listening):
    code = cli.main(["run", "--config", "listening", "--set", f"data.location={tmp_path}/nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"tandem: error: data location {tmp_path}/nope does not exist (data.location)"]
    code = cli.main(["run", "--config", "listening", "--set", "beam.direct_num_workers=x"])
    assert code == 2
    assert "beam.direct_num_workers" in capsys.readouterr().err
    listening.generate(str(tmp_path / "d"), 50, formats=("csv",))
    code = cli.main([
        "run", "--config", "listening", "--set", f"data.location={tmp_path}/d",
        "--set", "data.format=csv", "--set", "data.pattern=span-{SPAN}/*.csv",
        "--set", "problem_type=regression", "--set", "label=country",
        "--set", "evaluation.metric=rmse", "--set", "evaluation.threshold=1.0",
    ])
    assert code == 2
    assert "label 'country' must be numeric" in capsys.readouterr().err
    assert cli.main(["data", "generate", "--rows", "5", "--out", str(tmp_path), "--drift", "x"]) == 2


def test_an_unexpected_failure_exits_3_with_one_line_and_the_trace_behind_verbose(
    monkeypatch, capsys
):
    import tandem.pipeline.runner

    def broken(*args, **kwargs):
        raise RuntimeError("disk\nfell off")

    monkeypatch.setattr(tandem.pipeline.runner, "run", broken)
    assert cli.main(["run", "--config", "listening"]) == 3
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "tandem: unexpected error: RuntimeError: disk fell off "
        "(run with --verbose for the full trace)"
    ]
    assert cli.main(["run", "--config", "listening", "--verbose"]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("disk' in err
    assert err.splitlines()[-1] == "tandem: unexpected error: RuntimeError: disk fell off"



def test_request_log_labels_are_checked_as_the_schema_types_the_label(tmp_path):
    """A request-log config's labels are read as the schema's kind of label: class names
    pass for a string label (and before any schema exists), "cat" is refused for an integer
    one with its file and line."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from tandem.schemas import curated_schema_path, load_schema, write_schema

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "requests-1.tfrecord.gz").write_bytes(b"")
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr0,night\nr1,day\nr2,evening\n")
    schema = load_schema(curated_schema_path("listening"))
    label = next(f for f in schema.feature if f.name == "skipped")
    label.name, label.type = "daypart", schema_pb2.BYTES
    label.ClearField("int_domain")
    write_schema(schema, str(tmp_path / "schema.pbtxt"))
    config = dataclasses.replace(
        load_config("listening", ["label=daypart", "problem_type=multiclass_classification",
                                  "evaluation.metric=accuracy"]),
        data=DataConfig(location=str(tmp_path / "logs"), format="request_log",
                        labels=str(labels)))
    from tandem.pipeline.preflight import check_data

    assert check_data(dataclasses.replace(config, schema=str(tmp_path / "schema.pbtxt"))) \
        .label_values == ["day", "evening", "night"]
    assert check_data(dataclasses.replace(config, schema=str(tmp_path / "none.pbtxt"))) \
        .label_values == ["day", "evening", "night"]
    ids = dataclasses.replace(config, schema=curated_schema_path("listening"), label="skipped")
    with pytest.raises(InputError, match=f"{labels}:2: label 'night' is not an integer"):
        check_data(ids)
