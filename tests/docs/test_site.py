"""The docs site: `mkdocs build --strict` passes (no broken link or anchor, no page left out of
the nav), and the built pages render offline in headless Chromium, asking nothing of any host
but the one serving them, as the reports do."""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests import browser
from tests.conftest import ROOT

PAGES = ["index.html", "getting-started.html", "reports.html", "runtime.html",
         "reference/config.html"]


def build(root: str, site: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           site], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("site"))
    proc = build(ROOT, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _copy_of_the_docs(tmp_path) -> str:
    root = str(tmp_path / "repo")
    shutil.copytree(os.path.join(ROOT, "docs"), os.path.join(root, "docs"))
    shutil.copy(os.path.join(ROOT, "mkdocs.yml"), root)
    return root


def test_the_site_builds_strict(site):
    assert os.path.exists(os.path.join(site, "index.html"))
    for page in PAGES:
        assert os.path.exists(os.path.join(site, page)), page


@pytest.mark.parametrize("breakage, message", [
    (("concepts.md", "\nSee [nowhere](no-such-page.md).\n"), "no-such-page.md"),
    (("concepts.md", "\nSee [a section](guides/gateway.md#no-such-anchor).\n"), "no-such-anchor"),
    (("orphan.md", "# A page the nav does not list\n"), "orphan.md"),
])
def test_a_broken_link_or_a_page_left_out_of_the_nav_fails_the_build(breakage, message,
                                                                      tmp_path):
    root = _copy_of_the_docs(tmp_path)
    name, text = breakage
    with open(os.path.join(root, "docs", name), "a") as f:
        f.write(text)
    proc = build(root, str(tmp_path / "site"))
    assert proc.returncode != 0
    assert message in proc.stderr


def test_no_page_loads_anything_from_another_host(site):
    """No script, stylesheet, font or image by URL: Material's web fonts are off
    (`theme.font: false`) and nothing comes from a CDN."""
    remote = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""")
    for path in glob.glob(os.path.join(site, "**", "*.html"), recursive=True):
        with open(path, encoding="utf-8") as f:
            html = f.read()
        found = [m.group(0) for m in remote.finditer(html)]
        assert found == [], (path, found)
    for path in glob.glob(os.path.join(site, "**", "*.css"), recursive=True):
        with open(path, encoding="utf-8") as f:
            assert not re.search(r"url\(\s*[\"']?(?:https?:)?//", f.read()), path


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_a_page_renders_offline_in_chromium(site, page, tmp_path):
    rendered = browser.render_site(site, page, str(tmp_path / "page.png"))
    elsewhere = [u for u in rendered.requests if not u.startswith(rendered.origin)
                 and not u.startswith("data:")]
    assert elsewhere == []
    assert rendered.server_hits == []  # every image, script and stylesheet was there
    assert rendered.errors == []
    assert "tandem" in rendered.title
    assert browser.ink(rendered.screenshot) > 0.02
