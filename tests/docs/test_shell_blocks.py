"""Every shell block in README.md and docs/ is run, or marked not runnable with a reason; the
`tandem` commands in all of them parse with the real parser, and the repository files they name
exist, so an example that drifts from the code fails here (tests/docs/shell_blocks.py)."""

import contextlib
import glob
import io
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.docs.shell_blocks import blocks, commands, documents, repo_paths, shell_blocks

BLOCKS = shell_blocks()
# Commands the test knows how to check without running them; anything else (curl, kubectl,
# a shell assignment) may only appear in a block marked not-run.
TANDEM = {"tandem", ".venv/bin/tandem"}
PYTHON = {"python", ".venv/bin/python"}


def _make_targets() -> set[str]:
    with open(os.path.join(ROOT, "Makefile")) as f:
        return set(re.findall(r"^([a-z][\w-]*):", f.read(), re.M))


def _check_tandem(argv: list[str]) -> str | None:
    from tandem.pipeline.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:
            if e.code:
                return err.getvalue().strip().splitlines()[-1]
    return None


def problems(block) -> list[str]:
    found = []
    for argv in commands(block.text):
        name, args = argv[0], argv[1:]
        missing = [p for p in repo_paths(argv) if not glob.glob(os.path.join(ROOT, p))]
        found += [f"{' '.join(argv)}: no such file {p}" for p in missing]
        if name in TANDEM:
            error = _check_tandem(args)
            if error:
                found.append(f"{' '.join(argv)}: {error}")
        elif name == "make":
            unknown = [t for t in args if "=" not in t and t not in _make_targets()]
            found += [f"make: no target {t}" for t in unknown]
        elif name in PYTHON and args[:1] == ["-m"]:
            import importlib.util

            if importlib.util.find_spec(args[1]) is None:
                found.append(f"python -m {args[1]}: no such module")
        elif name in PYTHON and args and args[0].endswith(".py"):
            pass  # the path is checked above
        elif name == ".venv/bin/jupyter":
            pass
        elif block.not_run is None:
            found.append(f"{name}: not a command this test can check; mark the block "
                         "<!-- not-run: REASON -->")
    return found


def test_the_docs_have_shell_blocks_to_check():
    assert len(BLOCKS) > 20
    assert any(b.path == "README.md" for b in BLOCKS)


def test_every_code_block_names_its_language():
    """An unlabelled block would escape this test: commands are sh, output is text."""
    unlabelled = [b.where for path in documents() for b in blocks(path) if not b.lang]
    assert unlabelled == []


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_shell_block_commands_parse_and_name_files_that_exist(block):
    assert problems(block) == []


def test_a_block_not_run_says_why():
    terse = [b.where for b in BLOCKS if b.not_run is not None and len(b.not_run.split()) < 3]
    assert terse == [], "give a reason, not a word"


RUN = [b for b in BLOCKS if b.not_run is None]
# What a block may run here: commands that finish in seconds and write nothing in the
# repository. A block with anything else is not started; it must be marked not-run.
CHEAP = (["tandem", "--help"], ["tandem", "data", "profiles"], ["tandem", "score", "--help"],
         ["python", "-m", "tandem.pipeline.docs_reference", "--check"])


def _cheap(argv: list[str]) -> bool:
    words = [os.path.basename(argv[0]), *argv[1:]]
    return any(words[:len(c)] == c for c in CHEAP)


@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_a_block_not_marked_runs_and_exits_0(block, tmp_path):
    slow = [" ".join(argv) for argv in commands(block.text) if not _cheap(argv)]
    assert slow == [], (f"{block.where}: not started, it would take long or write files; "
                        "mark the block <!-- not-run: REASON -->")
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    script = tmp_path / "block.sh"
    script.write_text("set -euo pipefail\n" + block.text + "\n")
    proc = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{block.where}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
