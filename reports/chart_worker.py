"""A chart worker for reports/charts.py `draw_together`: reads a pickled list of chart jobs on
stdin and writes their SVG, pickled, on stdout. Run as `python -m tandem.reports.chart_worker`,
a fresh interpreter that loads the chart code alone (never the caller's script); anything a
library prints while drawing goes to stderr, so stdout carries only the result."""

import os
import pickle
import sys


def main() -> None:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    from tandem.reports import charts

    jobs = pickle.load(sys.stdin.buffer)
    drawn = [charts._draw(job) for job in jobs]
    pickle.dump(drawn, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.close()


if __name__ == "__main__":
    main()
