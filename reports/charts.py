"""Charts, drawn by matplotlib as inline SVG.

matplotlib's object API (Figure + the SVG canvas) is used rather than pyplot, so rendering a
report never touches a notebook's or a user's pyplot state or backend. Text stays text
(`svg.fonttype: none`): a chart is a few kilobytes rather than a few hundred, which keeps a
report of hundreds of features small, and there is nothing to fetch: no fonts, no images.
"""

from __future__ import annotations

import functools
import io
import os
import re
import threading
from collections.abc import Callable, Sequence

import numpy as np

COLORS = ("#0969da", "#d1242f", "#1a7f37", "#8250df")
_RC = {"svg.fonttype": "none", "svg.hashsalt": "tandem", "font.size": 8,
       "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 9,
       "legend.fontsize": 7, "legend.frameon": False}
_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)


def _figure(width: float = 3.6, height: float = 2.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def svg(fig) -> str:
    """The figure as an inline <svg> element (no XML prolog, no date, stable ids)."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig.tight_layout(pad=0.4)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return _METADATA.sub("", _PROLOG.sub("", buf.getvalue(), count=1), count=1)


def figure(svg_text: str, caption: str = "") -> str:
    from tandem.reports.html import esc

    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{svg_text}{cap}</figure>"


# Charts asked for inside `draw_together` are drawn at its end, by worker processes when there
# are at least this many: matplotlib takes a fifth to a third of a second a chart, so a report
# of hundreds of features waited a minute on one core; fewer charts would not pay for the
# workers' start-up (about a second).
POOL_MIN_CHARTS = 24
POOL_MAX_WORKERS = 4
WORKER_MODULE = "tandem.reports.chart_worker"
_deferred = threading.local()


def _style():
    """matplotlib's defaults and tandem's settings, whatever the caller's rcParams (a
    notebook's style, a matplotlibrc): a chart is the same wherever it is drawn."""
    import matplotlib.style

    return matplotlib.style.context(["default", _RC])


def _with_rc(draw):
    @functools.wraps(draw)
    def wrapped(*args, **kwargs):
        jobs = getattr(_deferred, "jobs", None)
        if jobs is not None:  # inside draw_together: drawn at its end
            jobs.append((draw.__name__, args, kwargs))
            return f"\x00{_deferred.token}:{len(jobs) - 1}\x00"
        with _style():
            return svg(draw(*args, **kwargs))
    return wrapped


def _draw(job: tuple[str, tuple, dict]) -> str:
    """One deferred chart drawn (by a worker, or here)."""
    name, args, kwargs = job
    return globals()[name](*args, **kwargs)


def _cpu_quota() -> int | None:
    """A container's CPU limit in whole cores (cgroup v2, else v1), or None without one."""
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                                     "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            with open(quota_file) as f:
                fields = f.read().split()
            if period_file is not None:
                with open(period_file) as f:
                    fields = [fields[0], f.read().strip()]
            if fields[0] in ("max", "-1"):
                return None
            return max(1, int(fields[0]) // int(fields[1]))
        except (OSError, ValueError, IndexError):
            continue
    return None


def _cores() -> int:
    """The cores this process may use: its CPU affinity, within a container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cpu_quota()
    return cores if quota is None else min(cores, quota)


def _workers(charts: int) -> int:
    return min(_cores(), POOL_MAX_WORKERS) if charts >= POOL_MIN_CHARTS else 1


def _draw_in_workers(jobs: list, workers: int) -> list[str] | None:
    """The jobs' SVG drawn by `workers` processes of `python -m WORKER_MODULE` (pickled jobs
    in, SVG out; fresh interpreters that load the chart code alone, never the caller's script
    or its threads), or None when they cannot be had: nothing started, a worker failed, an
    argument would not pickle. Jobs are dealt round-robin, so costly charts spread."""
    import pickle
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    chunks = [jobs[k::workers] for k in range(workers)]
    procs: list[subprocess.Popen] = []
    try:
        payloads = [pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL) for chunk in chunks]
        for _ in chunks:
            procs.append(subprocess.Popen([sys.executable, "-m", WORKER_MODULE],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL))
        timeout = 120 + 10 * len(chunks[0])
        with ThreadPoolExecutor(len(procs)) as threads:
            outs = list(threads.map(lambda pp: pp[0].communicate(pp[1], timeout=timeout)[0],
                                    zip(procs, payloads, strict=True)))
        if any(proc.returncode for proc in procs):
            return None
        drawn = [pickle.loads(out) for out in outs]
    except (OSError, subprocess.TimeoutExpired, pickle.PickleError, EOFError, TypeError,
            AttributeError):
        return None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if [len(d) for d in drawn] != [len(c) for c in chunks]:
        return None
    return [drawn[i % workers][i // workers] for i in range(len(jobs))]


def draw_together(build: Callable[[], str]) -> str:
    """`build()`'s text, every chart it asked for drawn at the end and put in its place: by
    worker processes (`_draw_in_workers`) when there are many and more than one core, else
    here. The SVG is the same either way (`_style`, a fixed hash salt); workers that cannot
    be had leave the drawing to this process, where a chart's own error shows as it is. The
    placeholders carry a token made for this call, so no text of the report can pose as one
    (and `html.esc` turns NUL into U+FFFD)."""
    if getattr(_deferred, "jobs", None) is not None:  # nested: the outer call draws
        return build()
    token = os.urandom(8).hex()
    jobs: list = []
    _deferred.jobs, _deferred.token = jobs, token
    try:
        text = build()
    finally:
        _deferred.jobs = None
    workers = _workers(len(jobs))
    svgs = _draw_in_workers(jobs, workers) if workers > 1 else None
    if svgs is None:
        svgs = [_draw(job) for job in jobs]
    return re.sub(f"\x00{token}:(\\d+)\x00", lambda m: svgs[int(m.group(1))], text)


@_with_rc
def histogram(series: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str = "",
              xlabel: str = "", marks: Sequence[tuple[float, str]] = (),
              shade: tuple[float, float] | None = None, log_y: bool = False):
    """Histograms from bucket edges and counts, one per (label, edges, counts) series,
    normalised to fractions so datasets of different sizes compare; `marks` draws vertical
    lines (e.g. a threshold), `shade` marks a range (e.g. the schema's domain)."""
    fig, ax = _figure()
    if shade is not None:
        ax.axvspan(shade[0], shade[1], color="#1a7f37", alpha=0.08, lw=0,
                   label="schema domain")
    for i, (label, edges, counts) in enumerate(series):
        edges, counts = np.asarray(edges, float), np.asarray(counts, float)
        total = counts.sum()
        if not len(counts) or total <= 0:
            continue
        ax.stairs(counts / total, edges, label=label, color=COLORS[i % len(COLORS)],
                  fill=len(series) == 1, alpha=0.55 if len(series) == 1 else 0.95, lw=1.2)
    for x, label in marks:
        ax.axvline(x, color="#cf222e", lw=1, ls="--", label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction")
    if len(series) > 1 or marks or shade is not None:
        ax.legend(loc="best")
    return fig


TOP_K = 20  # values drawn per categorical feature (TFDV keeps 20 top values by default)
LABEL_CHARS = 24  # longer values are shortened (short_labels)


def short_labels(values: Sequence[str], limit: int = LABEL_CHARS) -> list[str]:
    """Values shortened to `limit` characters, keeping what tells them apart: long values
    that share a beginning and an end (ids, URLs) show the part where they differ, with as
    much around it as fits and "…" where something was cut ("…tracks/001234?from=ra…"); a
    value with nothing in common with the rest keeps both its ends."""
    long = [v for v in values if len(v) > limit]
    same_start = len(os.path.commonprefix(long)) if len(long) > 1 else 0
    same_end = len(os.path.commonprefix([v[::-1] for v in long])) if len(long) > 1 else 0
    out = []
    for v in values:
        if len(v) <= limit:
            out.append(v)
            continue
        lo = min(same_start, len(v))
        hi = max(len(v) - same_end, lo)
        budget = limit - 2  # room for an ellipsis at each end
        if hi - lo >= budget:  # the differing part alone is too long: both its ends
            keep = limit - 1
            core = v[lo:hi]
            out.append(core[:(keep + 1) // 2] + "…" + core[len(core) - keep // 2:])
            continue
        spare = budget - (hi - lo)
        a = max(0, lo - spare // 2)
        b = min(len(v), a + budget)
        a = max(0, b - budget)
        if a == 0:
            b = min(len(v), b + 1)  # no ellipsis before: one more character after
        if b == len(v):
            a = max(0, a - 1)
        out.append(("…" if a else "") + v[a:b] + ("…" if b < len(v) else ""))
    return out


@_with_rc
def top_values(series: Sequence[tuple[str, Sequence[str], Sequence[float]]], title: str = "",
               limit: int = TOP_K, domain: Sequence[str] | None = None):
    """Horizontal bars of the `limit` most frequent values (as fractions), one bar per
    series; values outside the schema's `domain` are drawn hatched. Every value gets its own
    row, shortened when long, and the fraction axis carries at most four ticks, so no two
    labels meet however many values or however small the fractions."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter
    from matplotlib.transforms import ScaledTranslation

    labels = list(series[0][1])[:limit] if series else []
    for _, values, _ in series[1:]:
        labels += [v for v in list(values)[:limit] if v not in labels]
    labels = labels[:limit]
    fig, ax = _figure(3.6, max(1.4, 0.17 * len(labels) + 0.9))
    height = 0.8 / max(len(series), 1)
    y = np.arange(len(labels))
    allowed = set(domain) if domain is not None else None
    for i, (name, values, fractions) in enumerate(series):
        lookup = dict(zip(values, fractions, strict=False))
        widths = [lookup.get(v, 0.0) for v in labels]
        bars = ax.barh(y + i * height, widths, height=height, color=COLORS[i % len(COLORS)],
                       label=name, alpha=0.85)
        if allowed is not None:
            for bar, value in zip(bars, labels, strict=False):
                if value not in allowed:
                    bar.set_hatch("///")
                    bar.set_edgecolor("#cf222e")
    ax.set_yticks(y + height * (len(series) - 1) / 2)
    ax.set_yticklabels(short_labels(labels))
    ax.set_ylim(max(len(labels), 1) - 0.5 + height * (len(series) - 1), -0.5)  # first on top
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.set_xlabel("share of examples")
    ax.set_title(title)
    if len(series) > 1:  # under the axis label, never on the bars
        below = ax.transAxes + ScaledTranslation(0, -0.36, fig.dpi_scale_trans)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
                  ncol=len(series), borderaxespad=0.0, handlelength=1.0)
    return fig


@_with_rc
def intervals(labels: Sequence[str], values: Sequence[float], lows: Sequence[float],
              highs: Sequence[float], title: str = "", limit: float | None = None,
              xlabel: str = ""):
    """Point estimates with their confidence intervals, one row per label (e.g. a flip
    rate per slice), and the gate's limit as a line."""
    fig, ax = _figure(3.8, max(1.4, 0.24 * len(labels) + 0.8))
    y = np.arange(len(labels))
    v = np.asarray(values, float)
    err = np.vstack([v - np.asarray(lows, float), np.asarray(highs, float) - v])
    over = np.asarray(highs, float) > limit if limit is not None else np.zeros(len(v), bool)
    for flag, color in ((False, COLORS[0]), (True, COLORS[1])):
        idx = np.flatnonzero(over == flag)
        if len(idx):
            ax.errorbar(v[idx], y[idx], xerr=err[:, idx], fmt="o", ms=3.5, color=color,
                        capsize=2.5, lw=1)
    if limit is not None:
        ax.axvline(limit, color="#cf222e", lw=1, ls="--", label=f"limit {limit:g}")
        ax.legend(loc="best")
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return fig


@_with_rc
def density(x: np.ndarray, y: np.ndarray, title: str = "", xlabel: str = "",
            ylabel: str = "", gridsize: int = 20):
    """Where (x, y) pairs fall, as hexagonal bins (a scatter of 100k points would be
    megabytes of SVG), with the diagonal x = y."""
    fig, ax = _figure(3.2, 2.8)
    if len(x):
        hb = ax.hexbin(x, y, gridsize=gridsize, bins="log", cmap="Blues", mincnt=1,
                       linewidths=0.1)
        bar = fig.colorbar(hb, ax=ax, label="requests (log)")
        bar.solids.set_rasterized(False)  # a raster would be an <image>, which CSP refuses
        lo = float(min(np.min(x), np.min(y)))
        hi = float(max(np.max(x), np.max(y)))
        ax.plot([lo, hi], [lo, hi], color="#cf222e", lw=0.8, ls="--")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig


@_with_rc
def lines(x_labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]],
          title: str = "", ylabel: str = "", limit: float | None = None):
    """One line per series over ordered x labels (e.g. a feature's PSI per window)."""
    fig, ax = _figure(4.4, 2.4)
    x = np.arange(len(x_labels))
    for i, (name, values) in enumerate(series):
        y = np.array([np.nan if v is None else v for v in values], float)
        ax.plot(x, y, marker="o", ms=3, lw=1.2, color=COLORS[i % len(COLORS)], label=name)
    if limit is not None:
        ax.axhline(limit, color="#cf222e", lw=1, ls="--", label=f"limit {limit:g}")
    step = max(1, len(x_labels) // 8)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([x_labels[i] for i in range(0, len(x_labels), step)], rotation=20,
                       ha="right")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(loc="best")
    return fig
