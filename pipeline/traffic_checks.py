"""The two checks on logged traffic, the monitor and the shadow replay, as the CLI, the loop and
the TFX pipelines run them: components/ measures, reports/ draws the page. The jobs take the
page's renderer from their caller (the TFX executors by dotted name, as an exec property), so
that no component imports reports/."""

from __future__ import annotations

from typing import Any

from tandem.components.monitor import job
from tandem.components.shadow import replay
from tandem.reports.replay import render_text
from tandem.reports.stats import monitor_html


def dotted_name(fn) -> str:
    """A module-level function's import path, as an executor loads it."""
    return f"{fn.__module__}.{fn.__qualname__}"


MONITOR_RENDER = dotted_name(monitor_html)
REPLAY_RENDER = dotted_name(render_text)


def run_monitor(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """components/monitor/job.py's run_monitor, with its report.html."""
    return job.run_monitor(*args, render=monitor_html, **kwargs)


def run_replay(*args: Any, **kwargs: Any) -> dict:
    """components/shadow/replay.py's run_replay, with its report.html."""
    return replay.run_replay(*args, render=render_text, **kwargs)
