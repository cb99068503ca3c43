"""The shell blocks of README.md and docs/: found, split into commands, and checked.

A block fenced as ```sh (or bash, shell) is run by tests/docs/test_shell_blocks.py unless
the line before it is `<!-- not-run: REASON -->`. Either way, every `tandem` command in it is
parsed by the parser `tandem` itself runs, and every repository path it names must exist.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shlex

from tests.conftest import ROOT

SHELL = {"sh", "bash", "shell"}
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.*?)\s*-->$")
SEPARATORS = {"&&", "||", "|", ";", "&"}
REPO_PATH = re.compile(r"^(deploy|schemas|pipeline|notebooks|bench|docs|tests|components|"
                       r"serving|reports)/")


@dataclasses.dataclass
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    not_run: str | None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def documents() -> list[str]:
    docs = sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    return [os.path.join(ROOT, "README.md"), *docs]


def blocks(path: str) -> list[Block]:
    lines = open(path, encoding="utf-8").read().split("\n")
    found, i = [], 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            indent = len(lines[i]) - len(lines[i].lstrip())
            lang = stripped[3:].strip()
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            body = "\n".join(line[indent:] for line in lines[i + 1:j])
            before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()),
                          "")
            marker = NOT_RUN.match(before)
            found.append(Block(os.path.relpath(path, ROOT), i + 1, lang, body,
                               marker.group(1) if marker else None))
            i = j
        i += 1
    return found


def shell_blocks() -> list[Block]:
    return [b for path in documents() for b in blocks(path) if b.lang in SHELL]


def commands(text: str) -> list[list[str]]:
    """The block's commands as argument lists: continuations joined, comments dropped, a
    quoted argument may span lines, and `&&`, `|`, `;`, `&` separate commands."""
    out: list[list[str]] = []
    pending = ""
    for line in text.replace("\\\n", " ").split("\n"):
        pending = f"{pending}\n{line}" if pending else line
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # a quote still open: the argument goes on on the next line
            continue
        pending = ""
        command: list[str] = []
        for token in tokens:
            if token in SEPARATORS:
                if command:
                    out.append(command)
                command = []
            else:
                command.append(token)
        if command:
            out.append(command)
    assert not pending, f"unclosed quote in: {pending!r}"
    return out


WRITTEN = {"--out", "--kubeflow"}  # flags naming what a command writes, not what it reads


def repo_paths(argv: list[str]) -> list[str]:
    """The repository paths an argument list reads (also as `--flag=path`)."""
    paths = []
    for previous, arg in zip(["", *argv], argv, strict=False):
        flag, _, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if previous in WRITTEN or flag in WRITTEN:
            continue
        if REPO_PATH.match(value):
            paths.append(value)
    return paths
