"""The `tandem` command line as a user meets it: the groups in the order of the flow, one
grammar (noun then verb, no mode flags), `tandem compile` (the pipelines for Kubeflow) and
`tandem retrain --until`: what the compiled specs hold, which stages a retrain selects, and bad
input."""

import json
import re
import types

import pytest

from tests.conftest import tandem


@pytest.mark.slow
def test_compile_writes_a_kubeflow_spec_of_the_training_pipeline(tmp_path):
    out = tmp_path / "kf" / "listening.json"
    out.parent.mkdir()
    done = tandem("compile", "training", "--kubeflow", str(out), "--config", "listening",
                  "--image", "registry.example/tandem:7", "--pipeline-root",
                  "gs://bucket/tandem", "--schema-uri", "/tandem/schemas/listening/schema.pbtxt",
                  "--set", "beam.direct_num_workers=3", timeout=300)
    assert done.returncode == 0, done.stderr
    spec = json.loads(out.read_text())
    pipeline = spec["pipelineSpec"]
    tasks = pipeline["root"]["dag"]["tasks"]
    assert {t for t in tasks if not t.startswith("latest_blessed_model_resolver")} == {
        "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
        "ValidationGate", "Transform", "Trainer", "ModelCheckGate", "Evaluator", "SliceGate",
        "Pusher"}
    # The gates sit on the path: nothing trains past the validation gate, nothing is
    # evaluated past the model checks, nothing pushed past the slice gate.
    assert "ValidationGate" in tasks["Transform"]["dependentTasks"]
    assert "ModelCheckGate" in tasks["Evaluator"]["dependentTasks"]
    assert "SliceGate" in tasks["Pusher"]["dependentTasks"]
    assert spec["runtimeConfig"]["gcsOutputDirectory"].startswith("gs://bucket/tandem/")
    executors = pipeline["deploymentSpec"]["executors"].values()
    containers = [e["container"] for e in executors if "container" in e]
    assert containers and {c["image"] for c in containers} == {"registry.example/tandem:7"}
    beam = [c for c in containers if any(a.startswith("--direct_num_workers") for a in c["args"])]
    assert beam and all("--direct_num_workers=3" in c["args"] for c in beam)  # --set took effect
    schema = tasks["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]
    assert schema["runtimeValue"]["constantValue"]["stringValue"] == \
        "/tandem/schemas/listening/schema.pbtxt"
    text = out.read_text()
    for module in ("tandem.components.transform.preprocessing_fn", "tandem.components.trainer.run_fn",
                   "tandem.components.trainer_executor.TrainerExecutor"):
        assert module in text
        assert module in done.stdout  # the modules the image must contain are named
    assert done.stdout.startswith(f"wrote Kubeflow pipeline spec {out} (image "
                                  "registry.example/tandem:7)")


FLOW = ["data", "schema", "run", "retrain", "serve", "features", "traffic", "logs", "monitor",
        "shadow", "promote", "rollback", "score", "explain", "model", "compile", "report", "loop"]


def test_help_lists_the_command_groups_in_the_order_of_the_flow_one_line_each(
        capsys, monkeypatch):
    from tandem.pipeline import cli

    monkeypatch.setenv("COLUMNS", "80")  # a terminal's width: each group still fits one line
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    listed = []
    for line in lines[lines.index("  COMMAND") + 1:]:
        if not line.strip():
            break
        group = re.fullmatch(r"    ([a-z]+) {2,}\S.*", line)
        assert group, f"a group's help runs over one line: {line!r}"
        listed.append(group.group(1))
    assert listed == FLOW


@pytest.mark.parametrize("argv, tasks", [
    (["monitoring", "--config", "listening", "--logs", "gs://bucket/logs/2026-11-28",
      "--training-statistics", "gs://bucket/tandem/StatisticsGen/statistics/3"],
     {"TrafficMonitor", "request_logs", "schema", "training_statistics"}),
    (["promotion", "--baseline", "gs://bucket/models/listening/1", "--candidate",
      "gs://bucket/models/listening/2", "--logs", "gs://bucket/logs/2026-11-28"],
     {"ShadowValidator", "request_logs", "baseline_model", "candidate_model"}),
])
@pytest.mark.slow
def test_compile_monitoring_and_promotion_are_subcommands(argv, tasks, tmp_path):
    out = tmp_path / "kf.json"
    done = tandem("compile", argv[0], "--kubeflow", str(out), "--pipeline-root",
                  "gs://bucket/tandem", *argv[1:], timeout=300)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]) == tasks


@pytest.mark.parametrize("argv", [
    ["compile", "--monitoring", "--kubeflow", "KF", "--config", "listening", "--logs", "gs://l",
     "--pipeline-root", "gs://r"],
    ["compile", "--promotion", "--kubeflow", "KF", "--baseline", "gs://a", "--candidate",
     "gs://b", "--logs", "gs://l", "--pipeline-root", "gs://r"],
    ["compile", "training", "--monitoring", "--kubeflow", "KF", "--config", "listening"],
    ["monitor", "--pipeline", "--logs", "LOGS", "--config", "listening", "--out", "OUT"],
])
def test_an_old_mode_flag_is_refused_by_argparse_with_exit_2(argv, tmp_path):
    argv = [a.replace("KF", str(tmp_path / "kf.json")).replace("LOGS", str(tmp_path))
            .replace("OUT", str(tmp_path / "out")) for a in argv]
    done = tandem(*argv, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("usage: tandem"), done.stderr  # argparse's, before any work
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == [done.stderr.splitlines()[-1]], done.stderr
    assert re.match(r"tandem( \w+)?: error: ", errors[0]), done.stderr
    # ... naming the subcommand that took the mode flag's place.
    new = {"--monitoring": "tandem compile monitoring", "--promotion": "tandem compile promotion",
           "--pipeline": "tandem monitor pipeline"}
    assert [now for flag, now in new.items() if flag in argv][0] in errors[0], done.stderr
    assert not (tmp_path / "kf.json").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--config", "no-such-config"], "cannot read pipeline config no-such-config"),
    (["--config", "listening", "--set", "beam.direct_num_workers=-1"],
     "beam.direct_num_workers"),
    (["--config", "listening", "--set", "model.hidden_unitz=[8]"], "model.hidden_unitz"),
])
def test_compile_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    done = tandem("compile", "training", "--kubeflow", str(tmp_path / "kf.json"), *args,
                  timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "kf.json").exists()


def test_retrain_until_selects_the_stages_up_to_it(tmp_path, monkeypatch):
    """`retrain --until validate` runs LogExampleGen and the validation front only: the
    stage reaches the runner, and the DAG it builds for a request-log span stops there."""
    import tandem.pipeline.runner
    from tandem.pipeline import cli
    from tandem.pipeline.pipeline import create_pipeline

    asked = []

    def run(config, until=None, verbose=False):
        asked.append((config, until))
        return types.SimpleNamespace(exit_code=0)

    monkeypatch.setattr(tandem.pipeline.runner, "run", run)
    logs, labels = tmp_path / "logs", tmp_path / "labels.csv"
    common = ["retrain", "--config", "listening", "--logs", str(logs), "--labels", str(labels),
              "--set", f"output_dir={tmp_path / 'out'}"]
    front = {"request_logs", "labels", "LogExampleGen", "StatisticsGen", "ImportSchemaGen",
             "ExampleValidator", "ValidationGate"}  # the log and labels come in by Importer
    expected = {"validate": front, "train": front | {"Transform", "Trainer", "ModelCheckGate"}}
    for until, components in expected.items():
        assert cli.main([*common, "--until", until]) == 0
        config, asked_until = asked[-1]
        assert asked_until == until
        assert (config.data.format, config.data.location, config.data.labels) == \
            ("request_log", str(logs), str(labels))
        ids = {c.id for c in create_pipeline(config, config.schema, until=until).components}
        assert ids == components
    assert cli.main(common) == 0 and asked[-1][1] == "push"  # the default: the whole pipeline
    with pytest.raises(SystemExit) as bad:
        cli.main([*common, "--until", "deploy"])
    assert bad.value.code == 2


# One flag, one meaning: each renamed flag, what it parses to, and the spelling it replaced
# (or a shortening that would have reached it), which must not parse any more.
RENAMED = [
    (["promote", "--model", "m", "--model-version", "2", "--label", "stable"],
     "--model_config_file", "F", "F", "--config"),
    (["promote", "--model", "m", "--label", "stable", "--model_config_file", "F"],
     "--model-version", "3", 3, "--version"),
    (["rollback", "--model", "m", "--model_config_file", "F"], "--model-version", "3", 3, "--to"),
    (["serve", "gateway"], "--gateway-config", "G", "G", "--config"),
    (["shadow", "replay", "--logs", "L", "--baseline", "A", "--candidate", "B", "--out", "O"],
     "--replay-config", "R", "R", "--config"),
    (["shadow", "validate", "--logs", "L", "--baseline", "A", "--candidate", "B", "--out", "O"],
     "--replay-config", "R", "R", "--config"),
    (["data", "generate", "--rows", "1", "--out", "O", "--requests"],
     "--label-format", "csv", "csv", "--labels"),
    (["loop"], "--out", "W", "W", "--work"),
    (["explain", "--example", "E"], "--model-dir", "D", "D", "--model"),
    (["logs", "cat", "P"], "--with-examples", None, True, "--examples"),
]


@pytest.mark.parametrize("argv, flag, value, parsed, old", RENAMED,
                         ids=[f"{r[0][0]}{r[1]}" for r in RENAMED])
def test_a_renamed_flag_is_taken_under_its_one_name_only(argv, flag, value, parsed, old, capsys):
    from tandem.pipeline.cli import build_parser

    given = [] if value is None else [value]
    args = build_parser().parse_args([*argv, flag, *given])
    assert getattr(args, flag.lstrip("-").replace("-", "_")) == parsed
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args([*argv, old, *given])
    assert refused.value.code == 2
    assert "error:" in capsys.readouterr().err
