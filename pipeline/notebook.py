"""tandem in a notebook: the same self-contained reports, displayed inline.

    from tandem.pipeline import notebook as tn
    config, overrides = tn.find_run()         # `make run`'s loop, else `tandem run`'s
    run = tn.latest_run(config, overrides)    # the latest run's artifacts, from ML Metadata
    tn.show_statistics(run["statistics"])     # train and eval side by side
    tn.show_drift(run["statistics"], serving_stats)
    tn.show_build_record(run["pushed_model"])

Each report is shown in an <iframe srcdoc>: it keeps its own Content-Security-Policy and
styles, and, unlike Facets, needs no network when the notebook is opened.
"""

from __future__ import annotations

import html
import os
from typing import Any


def find_run(start: str | None = None) -> tuple[str, list[str]]:
    """The config (name or path) and overrides of the run to show, found without being told:
    TANDEM_CONFIG and TANDEM_SET (`key=value;...`) when set; else the loop that `make run`
    left (`outputs/loop/loop.json`, which records them); else `tandem run --config
    listening`'s outputs. Both are looked for in `start` (the working directory: a notebook's
    own folder under `jupyter lab notebooks/`) and every directory above it."""
    from tandem.pipeline.loop import read_loop_record

    if os.environ.get("TANDEM_CONFIG") or os.environ.get("TANDEM_SET"):
        overrides = [s for s in os.environ.get("TANDEM_SET", "").split(";") if s]
        return os.environ.get("TANDEM_CONFIG", "listening"), overrides
    here = os.path.abspath(start or os.getcwd())
    while True:
        record = read_loop_record(os.path.join(here, "outputs", "loop"))
        if record is not None:
            return record["config"], list(record["overrides"])
        listening = os.path.join(here, "outputs", "listening")
        if os.path.exists(os.path.join(listening, "metadata.sqlite")):
            return "listening", [f"output_dir={listening}"]
        parent = os.path.dirname(here)
        if parent == here:
            raise LookupError("no run found: run `make run` (or `tandem run --config "
                              "listening`) first, or set TANDEM_CONFIG and TANDEM_SET")
        here = parent


def latest_run(config: str = "listening", overrides: list[str] | None = None) -> dict[str, Any]:
    """The output artifacts (ML Metadata protos, by key) of the config's latest run, plus
    `config` (the loaded PipelineConfig)."""
    from tandem.pipeline.config import load_config
    from tandem.pipeline.runner import latest_outputs

    loaded = load_config(config, overrides)
    outputs = latest_outputs(loaded)
    if not outputs:
        raise LookupError(f"no run of '{loaded.name}' in {loaded.metadata_path}: run "
                          f"`tandem run --config {config}` first")
    return {"config": loaded, **outputs}


def _uri(value: Any) -> str:
    return value.uri if hasattr(value, "uri") else str(value)


def _statistics(value: Any, split: str = "train"):
    """Statistics from an artifact (its `split`), a statistics file, or a proto."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from tandem.components.monitor.job import load_statistics

    if isinstance(value, statistics_pb2.DatasetFeatureStatisticsList):
        return value
    path = _uri(value)
    split_file = os.path.join(path, f"Split-{split}", "FeatureStats.pb")
    return load_statistics(split_file if os.path.exists(split_file) else path)


def frame(page_html: str, height: int = 720):
    """Any report's HTML as an inline, isolated frame in the notebook's output."""
    from IPython.display import HTML

    return HTML(f'<iframe srcdoc="{html.escape(page_html, quote=True)}" '
                f'style="width:100%;height:{height}px;border:1px solid #d0d7de" '
                'sandbox="allow-scripts"></iframe>')


def show_statistics(statistics: Any, compare: Any = None, schema: str | None = None,
                    names: tuple[str, str] = ("train", "eval"), height: int = 720):
    """One dataset's statistics, or two side by side. An ExampleStatistics artifact with no
    `compare` shows its train and eval splits."""
    import tensorflow_data_validation as tfdv

    from tandem.pipeline.statistics_report import statistics_page

    first = _statistics(statistics, "train")
    if compare is None and os.path.exists(os.path.join(_uri(statistics), "Split-eval")):
        compare = _statistics(statistics, "eval")
    elif compare is not None:
        compare = _statistics(compare)
    loaded = tfdv.load_schema_text(schema) if schema else None
    anomalies = tfdv.validate_statistics(first, loaded) if loaded is not None else None
    page = statistics_page(first, compare, loaded, anomalies, names=names,
                           title="tandem statistics")
    return frame(page.render(), height)


def show_drift(reference: Any, current: Any, schema: str | None = None,
               names: tuple[str, str] = ("training", "serving"), height: int = 720):
    """Training against serving (or a window against the previous one), with PSI,
    Wasserstein and L-infinity per feature and the alerts."""
    return show_statistics(_statistics(reference), _statistics(current), schema, names, height)


def show_report(path: str, height: int = 720):
    """A report tandem wrote (replay, monitor, run): report.html or its directory."""
    if os.path.isdir(path):
        path = os.path.join(path, "report.html")
    with open(path, encoding="utf-8") as f:
        return frame(f.read(), height)


def show_build_record(model: Any):
    """A model's build record (what it was built from) as a table."""
    from IPython.display import HTML

    from tandem.components.build_record import flatten, load_record
    from tandem.reports.html import table

    path = _uri(model)
    if hasattr(model, "custom_properties") and "pushed_destination" in model.custom_properties:
        path = model.custom_properties["pushed_destination"].string_value
    record = load_record(path)
    rows = [[k, str(v)] for k, v in flatten(
        {k: v for k, v in record.items() if k != "checks"}).items()]
    rows += [[f"check {c['check']}", ("passed: " if c["passed"] else "FAILED: ") + c["summary"]]
             for c in record.get("checks") or []]
    return HTML(table(["field", "value"], rows))
