"""What the pages promise a newcomer: a README short enough to read, whose links lead somewhere;
a glossary that defines each term the guides use, with the ML Test Score's ids and titles as
tandem scores them; and troubleshooting that quotes the errors tandem really prints."""

import os
import re

import pytest

from tests.conftest import ROOT


def _read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_the_readme_is_a_landing_page_of_at_most_200_lines():
    readme = _read("README.md")
    assert len(readme.splitlines()) <= 200
    for must in ("make run", "make test", "== summary", ".venv/bin/jupyter lab notebooks/",
                 "docs/img/report-statistics.png", "docs/img/report-monitoring.png",
                 "docs/img/report-replay.png", "## Exit status"):
        assert must in readme, must


def test_every_relative_link_of_the_readme_leads_to_a_file_and_its_anchor():
    """mkdocs checks the links between pages; the README is outside the site, so here."""
    readme = _read("README.md")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len(links) > 15
    for link in links:
        if "://" in link:
            continue
        path, _, anchor = link.partition("#")
        assert os.path.exists(os.path.join(ROOT, path)), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", _read(path), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-")
                     for h in headings}
            assert anchor in slugs, link


GLOSSARY = ["Blessed", "Span", "Decoration", "Version label; stable and canary", "Parity",
            "Flip rate", "PSI (population stability index)", "Benjamini–Hochberg",
            "Hanley–McNeil", "ServerCore"]


@pytest.mark.parametrize("term", GLOSSARY)
def test_the_glossary_defines_each_term_once(term):
    assert _read("docs", "concepts.md").count(f"**{term}.**") == 1


def test_the_glossary_lists_every_ml_test_score_id_with_the_title_tandem_scores():
    from tandem.pipeline.score import RUBRIC

    concepts = _read("docs", "concepts.md")
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (.+?) \|$", concepts, re.M)
    assert [(section, key, title) for key, section, title in rows[1:]] == RUBRIC


def test_troubleshooting_quotes_the_errors_the_code_prints():
    """Each quoted message's fixed words are found in the source that prints it."""
    page = _read("docs", "troubleshooting.md")
    sources = {
        "tandem needs Python 3.10 (TFX 1.16 supports nothing newer)": "Makefile",
        "the tests need Debian packages:": "Makefile",
        "cannot bind gRPC port": "serving/model_server/server.py",
        "cannot start the server:": "pipeline/cli/serve.py",
        "cannot bind the gateway's gRPC port": "serving/gateway/server.py",
        "unknown key '": "schemas/config_binding.py",
        "in pipeline config was removed": None,
        "Data anomalies: the run stopped before anything downstream ran.": "pipeline/runner.py",
        "Nothing pushed: the candidate was not blessed.": "pipeline/runner.py",
        "Model checks failed: the model was not evaluated or pushed.": "pipeline/runner.py",
        "beam args: no Beam job service answers at --job_endpoint=": "pipeline/beam.py",
        "no run found: run `make run` (or `tandem run --config ": "pipeline/notebook.py",
    }
    for words, source in sources.items():
        assert words in page, words
        if source:
            assert words in _joined(_read(source)), (words, source)


def _joined(source: str) -> str:
    """Source text with Python's implicitly joined string literals joined:
    `"cannot " "bind"` and `f"a "\n    f"b"` read as one string."""
    return re.sub(r"""(["'])\s*\n\s*f?\1""", "", source)
