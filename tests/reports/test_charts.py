"""Charts drawn together (reports/charts.py draw_together): a report's many charts drawn by
worker processes are the charts one process draws, byte for byte, each in its own place."""

import os

import matplotlib
import numpy as np
import pytest

from tandem.reports import charts
from tandem.reports.html import esc


def _page() -> str:
    """A page of eight charts of both kinds, each after a heading that names it."""
    rng = np.random.default_rng(3)
    parts = []
    for i in range(4):
        counts = rng.integers(1, 50, 10)
        parts.append(f"<h2>h{i}</h2>" + charts.figure(charts.histogram(
            [("a", np.linspace(0, 1, 11), counts)], title=f"h{i}")))
        parts.append(f"<h2>t{i}</h2>" + charts.figure(charts.top_values(
            [("a", [f"v{j}" for j in range(5)], list(rng.dirichlet(np.ones(5))))],
            title=f"t{i}")))
    return "".join(parts)


@pytest.fixture
def workers_for_few(monkeypatch):
    """Two worker processes for the eight charts (one process draws fewer than 24)."""
    monkeypatch.setattr(charts, "_workers", lambda n: 2)


def _nothing_drawn_here(monkeypatch):
    def refuse(job):
        raise AssertionError(f"{job[0]} drawn in this process")

    monkeypatch.setattr(charts, "_draw", refuse)


def test_workers_draw_the_charts_one_process_draws_each_in_its_place(workers_for_few,
                                                                      monkeypatch):
    here = _page()
    _nothing_drawn_here(monkeypatch)  # the workers load their own, unpatched, chart code
    together = charts.draw_together(_page)
    assert together == here
    assert together.count("<svg") == 8 and "\x00" not in together
    # each chart after its own heading: its title is the heading's text
    for name in ("h0", "t0", "h3", "t3"):
        after = together[together.index(f"<h2>{name}</h2>"):]
        assert f">{name}<" in after[:after.index("</svg>")]


@pytest.mark.parametrize("breakage", ["no processes", "a worker that fails"])
def test_without_workers_the_charts_are_drawn_here(workers_for_few, monkeypatch, breakage):
    if breakage == "no processes":
        import subprocess

        def no_processes(*args, **kwargs):
            raise OSError("no processes here")

        monkeypatch.setattr(subprocess, "Popen", no_processes)
    else:
        monkeypatch.setattr(charts, "WORKER_MODULE", "tandem.reports.no_such_module")
    assert charts._draw_in_workers([("histogram", ([("a", [0, 1], [1])],), {})], 2) is None
    assert charts.draw_together(_page) == _page()


def test_workers_only_for_many_charts_and_never_more_than_the_cores():
    cores = charts._cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert charts._workers(charts.POOL_MIN_CHARTS - 1) == 1
    assert charts._workers(charts.POOL_MIN_CHARTS) == min(cores, charts.POOL_MAX_WORKERS)
    assert charts._workers(10_000) == min(cores, charts.POOL_MAX_WORKERS)


def test_a_callers_matplotlib_settings_do_not_change_a_chart():
    drawn = charts.histogram([("a", [0, 1, 2], [1, 2])], title="x")
    with matplotlib.rc_context({"axes.facecolor": "#ff0000", "font.size": 20}):
        assert charts.histogram([("a", [0, 1, 2], [1, 2])], title="x") == drawn


def test_no_text_of_a_report_poses_as_a_charts_place():
    posing = "\x00chart:0\x00"
    page = charts.draw_together(lambda: esc(posing) + "|" + posing + "|"
                                + charts.histogram([("a", [0, 1, 2], [1, 2])]))
    assert esc(posing) == "\ufffdchart:0\ufffd"
    first, second, chart = page.split("|")
    assert first == "\ufffdchart:0\ufffd" and second == posing and chart.startswith("<svg")


def test_nested_blocks_draw_once_at_the_outer_end():
    inner = []
    page = charts.draw_together(lambda: "<p>a</p>" + charts.draw_together(
        lambda: inner.append(charts.histogram([("a", [0, 1, 2], [1, 2])])) or inner[0]))
    assert inner[0].startswith("\x00")  # a placeholder while the outer block builds
    assert page.startswith("<p>a</p><svg") and "\x00" not in page


def test_a_users_unguarded_script_runs_once(tmp_path):
    """The workers are `python -m` the chart worker: a caller's script without a
    `__main__` guard is not run again in them (as multiprocessing's spawn would)."""
    import subprocess
    import sys

    script = tmp_path / "report.py"
    script.write_text(
        "from tandem.reports import charts\n"
        "charts._workers = lambda n: 2\n"
        "print('script ran')\n"
        "page = charts.draw_together(lambda: ''.join(\n"
        "    charts.histogram([('a', [0, 1, 2], [1, i + 1])]) for i in range(4)))\n"
        "print(page.count('<svg'), 'charts')\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["script ran", "4 charts"]
