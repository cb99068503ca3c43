"""The notebook walkthrough, executed as CI executes it (nbclient, the project's kernel) on a
small fresh run."""

import os
import re
from html import unescape

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group("trained_listening")


def alerted_features(frame: str) -> set[str]:
    """The features whose row in a report frame's summary table carries the ALERT flag,
    by their exact names (the row's link to the feature's block)."""
    page = unescape(re.fullmatch(r'<iframe srcdoc="([^"]*)".*', frame, re.S).group(1))
    rows = re.findall(r'<tr><td><a href="#f-([^"]+)">[^<]*</a></td>(.*?)</tr>', page, re.S)
    return {unescape(name) for name, cells in rows if '<span class="fail">ALERT</span>' in cells}


def test_walkthrough_runs_every_cell_and_shows_the_reports(trained_listening, tmp_path,
                                                           monkeypatch):
    config = trained_listening.config
    monkeypatch.setenv("TANDEM_CONFIG", "listening")
    monkeypatch.setenv("TANDEM_SET", f"output_dir={config.output_dir};"
                                     f"data.location={config.data.location}")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "walkthrough.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": ROOT}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    html = [o.data["text/html"] for c in code for o in c.outputs
            if o.output_type in ("display_data", "execute_result") and "text/html" in o.data]
    frames = [h for h in html if h.startswith("<iframe srcdoc=")]
    assert len(frames) == 2  # the run's statistics, and training against serving
    assert "tandem statistics" in frames[0] and "&lt;svg" in frames[0]
    assert "age" in alerted_features(frames[1])  # age_shift is flagged, under its own name
    assert any("model_name" in h and "listening" in h for h in html)  # the build record
    assert any("facets" in h.lower() for h in html)  # TFDV's own view ran too
    nbformat.write(nb, str(tmp_path / "executed.ipynb"))
