"""The generated reference pages (docs/reference/) say what the code says: a config key or a
flag added, renamed or re-documented without regenerating them fails here."""

import argparse
import dataclasses
import os

from tandem.pipeline import docs_reference
from tests.conftest import ROOT

REFERENCE = os.path.join(ROOT, "docs", "reference")


def test_the_generated_reference_pages_are_up_to_date():
    stale = docs_reference.stale(REFERENCE)
    assert stale == [], (f"out of date: {stale}; regenerate with "
                         "`.venv/bin/python -m tandem.pipeline.docs_reference`")


def test_check_mode_exits_1_on_a_stale_page_and_0_on_fresh_ones(tmp_path, capsys):
    assert docs_reference.main(["--out", str(tmp_path)]) == 0
    assert docs_reference.main(["--out", str(tmp_path), "--check"]) == 0
    page = tmp_path / "config.md"
    page.write_text(page.read_text().replace("`model.embedding_dim`", "`model.embed_dim`"))
    assert docs_reference.main(["--out", str(tmp_path), "--check"]) == 1
    assert "config.md is out of date" in capsys.readouterr().err


def test_every_config_key_has_a_type_a_default_and_a_meaning():
    """Each key the binder accepts is a row, and each row says what the key means."""
    from tandem.components.shadow.replay import ReplayConfig
    from tandem.pipeline.config import PipelineConfig
    from tandem.serving.gateway.config import GatewayConfig

    page = docs_reference.config_page()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert all(not line.rstrip().endswith("|  |") for line in rows), \
        [line for line in rows if line.rstrip().endswith("|  |")]
    for cls in (PipelineConfig, GatewayConfig, ReplayConfig):
        for field in dataclasses.fields(cls):
            if field.metadata.get("config_key", True):
                assert f"| `{field.name}` |" in page
    for key in ("model.embedding_dim", "primary.timeout_s", "shadow.timeout_s",
                "shadow.workers", "log.id_feature", "decorate.sqlite", "decorate.redis",
                "batch_size", "thresholds.bootstrap", "thresholds.seed", "monitor.alpha",
                "checks.importance_repeats", "decorate.joins[].columns",
                "monitor.features.<name>.psi"):
        assert f"| `{key}` |" in page, key


def test_every_command_and_flag_is_in_the_cli_reference():
    from tandem.pipeline.cli import build_parser

    page = docs_reference.cli_page()
    for words, parser, _ in docs_reference._leaves(build_parser(), ["tandem"]):
        assert f"## `{' '.join(words)}`" in page
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:  # internal (a gateway worker's --reuse-port)
                continue
            for flag in action.option_strings:
                if flag not in ("-h", "--help", "--verbose"):
                    assert f"`{flag}`" in page, (words, flag)


def test_a_flag_whose_default_is_zero_shows_it():
    """0 and 0.0 equal False in Python: the default column must still show them."""
    page = docs_reference.cli_page()
    rows = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| `--")}
    assert " | `0` | " in rows["| `--rest_api_num_threads` `REST_API_NUM_THREADS`"]
    assert " | `0.0` | " in rows["| `--label-loss` `SHARE`"]
