"""Local runner: runs the pipeline with LocalDagRunner, prints progress and the verdict."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Any, TextIO

from tandem.pipeline.beam import run_local_dag, with_running_mode
from tandem.pipeline.config import STAGES, PipelineConfig
from tandem.pipeline.preflight import InputError, check_inputs
from tandem.schemas import load_schema, schema_fingerprint
from tandem.schemas.exit_status import CHECK_FAILED, OK, BadInputError
from tandem.schemas.files import atomic_write


class ComponentFailed(RuntimeError):
    """A component raised what is bad input elsewhere (a record, a log): the run failed."""


@dataclasses.dataclass
class RunResult:
    exit_code: int
    outputs: dict[str, Any]  # artifact type -> ML Metadata artifact (latest run)
    anomalies: list[tuple[str, str, str, str]]  # (split, feature, type, description)
    elapsed: float
    verdict: str | None = None
    blessed: bool | None = None  # None when the run did not reach the Evaluator
    pushed: str | None = None  # the pushed version's directory
    report: str | None = None  # the statistics report (statistics_report_path)


class ProgressReporter(logging.Handler):
    """Turns the orchestrator's log records into one line per component event."""

    def __init__(self, out: TextIO):
        super().__init__(logging.INFO)
        self.out = out
        self.started: dict[str, float] = {}
        self.current: str | None = None
        self.cached: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg == "Component %s is running.":
            (self.current,) = record.args
            self.started[self.current] = time.monotonic()
            self._line(f"[{self.current}] started")
        elif msg == "Component %s is finished.":
            (node,) = record.args
            elapsed = time.monotonic() - self.started.get(node, time.monotonic())
            note = " (cached)" if node in self.cached else ""
            self._line(f"[{node}] finished in {elapsed:.1f}s{note}")
        elif msg == "Trainer epoch %d/%d: %s":
            epoch, epochs, shown = record.args
            self._line(f"[Trainer] epoch {epoch}/{epochs}: {shown}")
        elif msg == "Trainer check %s: %s":
            name, summary = record.args
            self._line(f"[Trainer] check {name}: {summary}")
        elif msg == "Trainer chose %s":
            (choice,) = record.args
            self._line(f"[Trainer] chose {choice}")
        elif msg.startswith("A cached execution") and self.current:
            self.cached.add(self.current)
        elif msg == "Execution %d failed." and self.current:
            elapsed = time.monotonic() - self.started.get(self.current, time.monotonic())
            self._line(f"[{self.current}] failed after {elapsed:.1f}s")

    def _line(self, text: str) -> None:
        self.out.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.out.flush()


def _route_logs(reporter: ProgressReporter, verbose: bool) -> tuple[logging.Logger, list]:
    """Send orchestrator (absl) records to the progress reporter; only errors also reach
    the terminal unless verbose."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    logger = logging.getLogger("absl")
    added: list[logging.Handler] = [reporter]
    if not verbose:
        logger.propagate = False
        errors = logging.StreamHandler(sys.stderr)
        # Library warnings (deprecations, performance notes) stay in --verbose output.
        errors.setLevel(logging.ERROR)
        errors.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        # A failed component is already reported by the progress line and the summary.
        errors.addFilter(lambda r: r.msg != "Execution %d failed.")
        added.append(errors)
    for handler in added:
        logger.addHandler(handler)
    return logger, added


def stage_schema(config: PipelineConfig) -> str:
    """Copy the curated schema to a content-addressed path: ImportSchemaGen caches on the
    path, so a changed schema must get a new one to be re-imported."""
    schema = load_schema(config.schema)
    target = os.path.join(config.output_dir, "schemas", schema_fingerprint(schema))
    os.makedirs(target, exist_ok=True)
    path = os.path.join(target, "schema.pbtxt")
    if not os.path.exists(path):
        with open(config.schema, "rb") as f:
            atomic_write(path, f.read())
    return path


def latest_outputs(config: PipelineConfig) -> dict[str, Any]:
    """Output artifacts (ML Metadata protos) of the most recent pipeline run, by output key
    (examples, statistics, schema, anomalies, transform_graph, model, evaluation, blessing,
    pushed_model), cached executions included."""
    return run_outputs(config, -1)


def run_outputs(config: PipelineConfig, index: int) -> dict[str, Any]:
    """`latest_outputs` of the `index`-th pipeline run in the order they ran (0 the first,
    -1 the latest) in the config's ML Metadata, e.g. v1's training run after the loop's
    retraining ran in the same store; {} when there is no such run."""
    from tandem.components.metadata import open_store

    store = open_store(config.metadata_path)
    runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    if not -len(runs) <= index < len(runs):
        return {}
    executions = store.get_executions_by_context(runs[index].id)
    exec_types = {t.id: t.name for t in store.get_execution_types()}
    # Resolver nodes re-emit existing artifacts (the baseline model); they are not outputs.
    producing = [e.id for e in executions if "Resolver" not in exec_types.get(e.type_id, "")]
    keyed: dict[int, str] = {}
    for event in store.get_events_by_execution_ids(producing):
        if event.type in (event.OUTPUT, event.DECLARED_OUTPUT) and event.path.steps:
            keyed[event.artifact_id] = event.path.steps[0].key
    outputs: dict[str, Any] = {}
    for artifact in sorted(store.get_artifacts_by_id(list(keyed)), key=lambda a: a.id):
        outputs[keyed[artifact.id]] = artifact
    return outputs


def _custom(artifact, key: str):
    value = artifact.custom_properties.get(key)
    if value is None:
        return None
    return getattr(value, value.WhichOneof("value"))


def statistics_report_path(config: PipelineConfig, outputs: dict[str, Any]) -> str:
    """Where a run's statistics report goes: `reports/span-<span>/statistics-<id>.html`, by the
    span it ingested and its statistics artifact's id (the `<id>` of
    `pipeline_root/StatisticsGen/statistics/<id>/`). A later run (a new span, a retraining on
    the request log) writes its own; a cached rerun rewrites the one of the same statistics."""
    span = _custom(outputs["examples"], "span") if "examples" in outputs else None
    statistics = os.path.basename(outputs["statistics"].uri.rstrip("/"))
    return os.path.join(config.output_dir, "reports", f"span-{span or 0}",
                        f"statistics-{statistics}.html")


def pushed_destination(outputs: dict[str, Any]) -> str | None:
    """The version directory the latest run pushed (or an earlier run, when cached)."""
    if "pushed_model" in outputs and _custom(outputs["pushed_model"], "pushed") == 1:
        return _custom(outputs["pushed_model"], "pushed_destination")
    return None


def is_blessed(outputs: dict[str, Any]) -> bool | None:
    """The Evaluator's verdict on the latest run's candidate; None without an evaluation."""
    if "blessing" not in outputs:
        return None
    return _custom(outputs["blessing"], "blessed") == 1


def evaluation_verdict(config: PipelineConfig, outputs: dict[str, Any]) -> str | None:
    """'blessed'/'NOT blessed' with the deciding metric, candidate vs baseline."""
    if "blessing" not in outputs:
        return None
    import tensorflow_model_analysis as tfma

    from tandem.pipeline.evaluation import deciding_metric_name

    blessed = is_blessed(outputs)
    name = deciding_metric_name(config)
    values: dict[str, float] = {}
    evaluation = outputs.get("evaluation")
    if evaluation is not None:
        from tandem.components.slice_gate import evaluation_metrics

        overall = evaluation_metrics(evaluation.uri)
        for role, model in (("candidate", "candidate"), ("baseline", "baseline"),
                            ("change", "diff")):
            if name in overall.get(("", model), {}):
                values[role] = overall[("", model)][name]
    parts = [f"{name} {values['candidate']:.4f}" if "candidate" in values else name]
    naive = _naive_bar(config, outputs)
    if naive:
        margin = abs(naive["bar"] - naive["score"])
        parts.append(f"bar {naive['bar']:.4f}: the naive predictor, {naive['predictor']}, "
                     f"scores {naive['score']:.4f} ± {margin:.4f} at n={naive['n']}")
    if "baseline" in values:
        parts.append(f"last blessed model {values['baseline']:.4f}")
    elif blessed:
        parts.append("no blessed model yet to compare with")
    if "change" in values:
        parts.append(f"change {values['change']:+.4f}")
        tolerance = _custom(evaluation, "change_tolerance") if evaluation is not None else None
        if tolerance is not None and config.evaluation.max_regression is None:
            parts.append(f"allowed {tolerance:.4f} worse: the paired sampling error at "
                         f"n={_custom(evaluation, 'change_tolerance_n')}")
    lines = [f"{'blessed' if blessed else 'NOT blessed'} ({', '.join(parts)})"]
    if evaluation is not None and not blessed:
        result = tfma.load_validation_result(evaluation.uri)
        from tandem.components.slice_gate import slice_name

        for per_slice in result.metric_validations_per_slice:
            where = slice_name(per_slice.slice_key)
            for failure in per_slice.failures:
                key = failure.metric_key
                what = "change vs last blessed" if key.is_diff else "value"
                lines.append(
                    f"  failed: {key.name} {what} {failure.metric_value.double_value.value:+.4f}"
                    f"{f' on slice {where}' if where else ''} "
                    f"breaks {_threshold_text(failure.metric_threshold)}"
                )
    return "\n".join(lines)


def _naive_bar(config: PipelineConfig, outputs: dict[str, Any]) -> dict[str, Any] | None:
    """The naive predictor's bar the Evaluator judged the candidate against (no
    evaluation.threshold configured), from the candidate's build record."""
    if config.evaluation.threshold is not None or "model" not in outputs:
        return None
    from tandem.components.build_record import RecordError, load_record

    try:
        naive = load_record(outputs["model"].uri).get("naive")
    except RecordError:
        return None
    return naive if naive and naive.get("bar") is not None else None


def _threshold_text(threshold) -> str:
    from google.protobuf import text_format

    return " ".join(text_format.MessageToString(threshold, as_one_line=True).split())


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    widths[-1] = min(widths[-1], 100)
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=False)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    return "\n".join(lines)


def run(
    config: PipelineConfig, until: str | None = None, out: TextIO = sys.stdout,
    verbose: bool = False,
) -> RunResult:
    """Run the pipeline (through `until`). Bad input raises InputError before Beam starts
    (and before TFX is even imported, so the answer comes in a second)."""
    until = until or STAGES[-1]
    start = time.monotonic()
    summary = check_inputs(config)
    config = with_running_mode(config, summary.files)  # `auto` settled by the input's size
    if STAGES.index(until) >= STAGES.index("evaluate"):
        from tandem.pipeline.evaluation import eval_config

        eval_config(config)  # a bad evaluation setting is a config error, found now


    from tandem.components.evaluator import NoBar
    from tandem.components.slice_gate import SlicesFailed
    from tandem.components.validation_gate import (
        AnomaliesFound,
        ModelChecksFailed,
        advice,
        anomaly_rows,
        load_anomalies,
    )
    from tandem.pipeline.beam import check_job_service, runner_name
    from tandem.pipeline.pipeline import create_pipeline

    check_job_service(config.beam.extra_args)  # a wrong endpoint fails now, not in a minute

    where = f"span {summary.span}" if summary.span is not None else config.data.location
    out.write(
        f"tandem: pipeline '{config.name}' on {where} ({len(summary.files)} file(s), "
        f"label '{config.label}' checked on {summary.rows_checked} rows: "
        f"{', '.join(summary.label_values)}) -> {config.output_dir}, "
        f"Beam {runner_name(config)}\n"
    )
    os.makedirs(config.output_dir, exist_ok=True)
    pipeline = create_pipeline(config, stage_schema(config), until=until)

    reporter = ProgressReporter(out)
    absl_logger, handlers = _route_logs(reporter, verbose)
    anomalies: list[tuple[str, str, str, str]] = []
    failed_checks: list[dict] = []
    failed_slices = ""
    try:
        try:
            run_local_dag(pipeline)
            exit_code = OK
        except AnomaliesFound as found:
            exit_code = CHECK_FAILED
            for split in found.splits:
                for row in anomaly_rows(load_anomalies(found.uri, split)):
                    anomalies.append((split, *row))
        except ModelChecksFailed as failed:
            exit_code = CHECK_FAILED
            failed_checks = failed.failed
        except SlicesFailed as failed:
            exit_code = CHECK_FAILED
            failed_slices = str(failed)
        except NoBar as e:  # a model built elsewhere and no threshold: a config error
            raise InputError(str(e)) from None
        except BadInputError as e:
            # Inside a component, once work has started, a bad record or artifact is a failed
            # run (exit 3), not bad input to the command (exit 2: refused before any work).
            raise ComponentFailed(f"{type(e).__name__}: {e}") from e
        outputs = latest_outputs(config)
    finally:
        for handler in handlers:
            absl_logger.removeHandler(handler)
        absl_logger.propagate = True
    elapsed = time.monotonic() - start
    if anomalies:
        out.write("\nData anomalies: the run stopped before anything downstream ran.\n")
        out.write(format_table(anomalies, ("split", "feature", "anomaly type", "description")))
        out.write("\n")
        for line in advice(anomalies):
            out.write(f"What to do: {line}\n")
    if failed_checks:
        out.write("\nModel checks failed: the model was not evaluated or pushed.\n")
        for check in failed_checks:
            out.write(f"  {check['check']}: {check['summary']}\n")
    verdict = evaluation_verdict(config, outputs)
    blessed = is_blessed(outputs)
    if exit_code == OK and blessed is False:
        exit_code = CHECK_FAILED  # "nothing pushed" is a failed check, not a success
    if failed_slices:
        verdict = (verdict or "") + f"\n  slices failed, nothing pushed: {failed_slices}"
    pushed = pushed_destination(outputs)
    status = ("FAILED: anomalies found" if anomalies
              else "FAILED: model checks" if failed_checks
              else "FAILED: slices below the threshold" if failed_slices
              else "FAILED: the candidate was not blessed" if blessed is False else "OK")
    out.write(f"\n{status} in {elapsed:.1f}s. Outputs:\n")
    for key in ("examples", "statistics", "schema", "anomalies", "transform_graph", "model",
                "evaluation"):
        if key in outputs:
            out.write(f"  {key:<18} {outputs[key].uri}\n")
    out.write(f"  {'ML Metadata':<18} {config.metadata_path}\n")
    report = None
    if "statistics" in outputs:
        from tandem.pipeline.statistics_report import write_run_report

        report = write_run_report(
            outputs["statistics"].uri, config.schema,
            outputs["anomalies"].uri if "anomalies" in outputs else None,
            statistics_report_path(config, outputs),
            f"tandem: '{config.name}' statistics and anomalies")
        out.write(f"  {'report':<18} {report}\n")
    if verdict:
        out.write(f"\nModel {verdict}\n")
    if "pushed_model" in outputs:
        if pushed:
            version = os.path.basename(pushed.rstrip("/"))
            if "Pusher" in reporter.cached:
                out.write(f"Nothing new to push: version {version} of '{config.model_name}' "
                          f"was pushed by an earlier run on the same inputs ({pushed})\n")
            else:
                out.write(f"Pushed version {version} of '{config.model_name}' to {pushed}\n")
        else:
            out.write("Nothing pushed: the candidate was not blessed.\n")
    return RunResult(exit_code=exit_code, outputs=outputs, anomalies=anomalies, elapsed=elapsed,
                     verdict=verdict, blessed=blessed, pushed=pushed, report=report)
