"""Charts drawn together (reports/charts.py draw_together): a report's many charts drawn by a
pool of processes are the charts one process draws, byte for byte, each in its own place."""

import numpy as np
import pytest

from tandem.reports import charts


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
def pool_for_few(monkeypatch):
    """A pool of two processes for the eight charts (one is used for fewer than 24)."""
    monkeypatch.setattr(charts, "POOL_MIN_CHARTS", 2)
    monkeypatch.setattr(charts, "_workers", lambda n: 2)


def test_a_pool_draws_the_charts_one_process_draws_each_in_its_place(pool_for_few,
                                                                      monkeypatch):
    import concurrent.futures

    here = _page()
    mapped = []

    class Pool(concurrent.futures.ProcessPoolExecutor):
        def map(self, fn, *iterables, **kwargs):
            jobs = list(iterables[0])
            mapped.extend(jobs)
            return super().map(fn, jobs, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Pool)
    together = charts.draw_together(_page)
    assert len(mapped) == 8  # every chart went to the pool's processes
    assert together == here
    assert together.count("<svg") == 8 and "\x00" not in together
    # each chart after its own heading: its title is the heading's text
    for name in ("h0", "t0", "h3", "t3"):
        after = together[together.index(f"<h2>{name}</h2>"):]
        assert f">{name}<" in after[:after.index("</svg>")]


def test_without_a_pool_the_charts_are_drawn_here(pool_for_few, monkeypatch):
    import concurrent.futures

    def no_pool(*args, **kwargs):
        raise OSError("no processes here")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    assert charts.draw_together(_page) == _page()


def test_nested_blocks_draw_once_at_the_outer_end():
    inner = []
    page = charts.draw_together(lambda: "<p>a</p>" + charts.draw_together(
        lambda: inner.append(charts.histogram([("a", [0, 1, 2], [1, 2])])) or inner[0]))
    assert inner[0].startswith("\x00chart:")  # a placeholder while the outer block builds
    assert page.startswith("<p>a</p><svg") and "\x00" not in page


def test_a_pool_only_for_many_charts_and_never_more_processes_than_cores():
    import os

    cores = len(os.sched_getaffinity(0))
    assert charts._workers(charts.POOL_MIN_CHARTS - 1) == 1
    assert charts._workers(charts.POOL_MIN_CHARTS) == min(cores, charts.POOL_MAX_WORKERS)
    assert charts._workers(10_000) == min(cores, charts.POOL_MAX_WORKERS)
