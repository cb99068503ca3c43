"""The page: sections of text, tables and figures, written as one HTML file."""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from typing import Any

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1f2328; background: #fff; }
header { padding: 16px 24px; border-bottom: 1px solid #d0d7de; background: #f6f8fa; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { color: #59636e; font-size: 12px; }
main { padding: 8px 24px 40px; }
section { margin: 20px 0; }
h2 { font-size: 16px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: 600; }
.fail { color: #cf222e; font-weight: 600; }
.warn { color: #9a6700; font-weight: 600; }
.note { color: #59636e; font-size: 12px; }
figure { display: inline-block; margin: 4px 12px 4px 0; vertical-align: top; }
figure svg { display: block; height: auto; }
figcaption { font-size: 12px; color: #59636e; }
details.feature { border: 1px solid #d0d7de; border-radius: 6px; margin: 6px 0;
                  padding: 4px 10px; }
details.feature > summary { cursor: pointer; font-weight: 600; }
details.feature.flagged { border-color: #cf222e; }
#filter { padding: 4px 8px; width: 260px; margin: 6px 0; }
"""

# Filters feature blocks by name; marks the page once its figures have laid out.
_SCRIPT = """
(function () {
  var box = document.getElementById('filter');
  if (box) {
    box.addEventListener('input', function () {
      var q = box.value.toLowerCase();
      document.querySelectorAll('[data-feature]').forEach(function (el) {
        el.style.display = el.dataset.feature.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
  }
})();
"""


def esc(value: Any) -> str:
    """Text for HTML: markup escaped, and NUL (which HTML forbids, and which marks a chart's
    place while a report is built: charts.draw_together) as U+FFFD, as browsers show it."""
    return html.escape(str(value), quote=True).replace("\x00", "\ufffd")


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: integers with separators, floats to `digits` significant."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        return f"{value:.{digits}g}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], raw: bool = False,
          attrs: str = "") -> str:
    """An HTML table. Cells are escaped unless `raw`; numbers are right-aligned."""
    out = [f"<table{(' ' + attrs) if attrs else ''}><thead><tr>"]
    out += [f"<th>{esc(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for cell in row:
            if isinstance(cell, (int, float)) and not isinstance(cell, bool):
                out.append(f'<td class="num">{esc(fmt(cell))}</td>')
            else:
                out.append(f"<td>{cell if raw else esc(fmt(cell))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def status(passed: bool | None, yes: str = "pass", no: str = "FAIL") -> str:
    if passed is None:
        return '<span class="warn">n/a</span>'
    return f'<span class="pass">{esc(yes)}</span>' if passed \
        else f'<span class="fail">{esc(no)}</span>'


class Page:
    """An HTML report being assembled; `render()` gives the self-contained document."""

    def __init__(self, title: str, meta: Sequence[str] = ()):
        self.title = title
        self.meta = list(meta)
        self.parts: list[str] = []

    def add(self, fragment: str) -> Page:
        self.parts.append(fragment)
        return self

    def heading(self, text: str, level: int = 2) -> Page:
        return self.add(f"<h{level}>{esc(text)}</h{level}>")

    def text(self, text: str, cls: str = "") -> Page:
        return self.add(f'<p{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{esc(text)}</p>')

    def section(self, title: str, *fragments: str) -> Page:
        return self.add(f"<section><h2>{esc(title)}</h2>{''.join(fragments)}</section>")

    def render(self) -> str:
        meta = "".join(f"<div class=\"meta\">{esc(m)}</div>" for m in self.meta)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(self.title)}</title><style>{_STYLE}</style></head>"
            f"<body><header><h1>{esc(self.title)}</h1>{meta}</header><main>"
            + "".join(self.parts)
            + f"</main><script>{_SCRIPT}</script></body></html>\n")

    def write(self, path: str) -> str:
        """Writes the page (local path or any tf.io.gfile path) and returns the path."""
        text = self.render()
        if "://" in path:
            import tensorflow as tf

            tf.io.gfile.makedirs(os.path.dirname(path))
            with tf.io.gfile.GFile(path, "w") as f:
                f.write(text)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return path
