"""Docs: the config and CLI reference pages, written from the code so that they cannot drift.

The config reference reads the config dataclasses (pipeline, gateway, replay): each field's
key, type and default from the class, its meaning from the comment beside or above it. The
CLI reference reads the argparse parser `tandem` itself runs. `python -m
tandem.pipeline.docs_reference` writes docs/reference/; `--check` exits 1 when a page on disk
differs from what the code says (tests/pipeline/test_docs_reference.py runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import sys
import types
import typing
from typing import Any, Literal

PAGES = ("config.md", "cli.md")
_FIELD = re.compile(r"^    (\w+): [^=]+?(?: = .*?)?(?:  # (.*))?$")
_COMMENT = re.compile(r"^    # ?(.*)$")


def _field_comments(cls: type) -> dict[str, str]:
    """Each field's comment: the lines of `#` right above it, then the one beside it."""
    lines, _ = inspect.getsourcelines(cls)
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        line = line.rstrip("\n")
        comment = _COMMENT.match(line)
        if comment:
            above.append(comment.group(1))
            continue
        field = _FIELD.match(line)
        if field and not line.lstrip().startswith(("def ", "@")):
            text = " ".join(above + ([field.group(2)] if field.group(2) else []))
            comments[field.group(1)] = text.strip()
        above = []
    return comments


def _type(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"{_type(inner[0])} or null"
    if origin is Literal:
        return " \\| ".join(str(c) for c in typing.get_args(hint))
    if hint is list or origin is list:
        args = typing.get_args(hint)
        return f"list of {_type(args[0])}" if args else "list"
    if hint is dict or origin is dict:
        args = typing.get_args(hint)
        return f"mapping to {_type(args[1])}" if args else "mapping"
    if dataclasses.is_dataclass(hint):
        return "section"
    if hint is Any:
        return "any"
    return {int: "integer", float: "number", str: "string", bool: "true/false"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _default(field: dataclasses.Field) -> str:
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return "required"
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if value is None:
        return "`null`"
    if value == "":
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, dict)):
        return f"`{value!r}`".replace("'", "")
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _range(bounds: tuple[float | None, float | None, str] | None) -> str:
    """A key's range (schemas/config_binding.py check_range) as the type column shows it."""
    if bounds is None:
        return ""
    low, high, _ = bounds
    return (f", {low:g} to {high:g}" if low is not None and high is not None
            else f", >= {low:g}" if low is not None else f", <= {high:g}")


def _section_rows(cls: type, prefix: str, tables: list[tuple[str, type]],
                  ranges: dict) -> list[str]:
    """The rows of one section's table; nested sections are queued in `tables`."""
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    rows = []
    for field in dataclasses.fields(cls):
        if not field.metadata.get("config_key", True):
            continue
        hint = hints[field.name]
        key = f"{prefix}{field.name}"
        nested = _nested(hint)
        if nested is not None:
            cls_, suffix = nested
            tables.append((f"{key}{suffix}", cls_))
            kind = {"": "section", "[]": "list of sections"}.get(suffix, "mapping of name to section")
            meaning = comments.get(field.name) or (cls_.__doc__ or "").split("\n\n")[0]
            default = "required" if _default(field) == "required" else ""
            rows.append(f"| `{key}` | {kind} (below) | {default} | "
                        f"{_cell(' '.join(meaning.split()))} |")
            continue
        bounds = ranges.get(key.replace("<name>", "*"))
        rows.append(f"| `{key}` | {_type(hint)}{_range(bounds)} | {_default(field)} | "
                    f"{_cell(comments.get(field.name, ''))} |")
    return rows


def _nested(hint: Any) -> tuple[type, str] | None:
    """A section, a list of sections (`[]`) or a mapping to sections (`.<name>`)."""
    if dataclasses.is_dataclass(hint):
        return hint, ""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list and args and dataclasses.is_dataclass(args[0]):
        return args[0], "[]"
    if typing.get_origin(hint) is dict and args and dataclasses.is_dataclass(args[1]):
        return args[1], ".<name>"
    return None


def _config_tables(title: str, cls: type, intro: str, ranges: dict | None = None) -> list[str]:
    out = [f"## {title}", "", intro, ""]
    tables: list[tuple[str, type]] = [("", cls)]
    while tables:
        key, section = tables.pop(0)
        doc = " ".join((section.__doc__ or "").split())
        if key:
            out += [f"### `{key}`", ""]
            if doc:
                out += [doc, ""]
        prefix = f"{key}." if key else ""
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        out += _section_rows(section, prefix, tables, ranges or {})
        out.append("")
    return out


def config_page() -> str:
    from tandem.components.shadow.replay import RANGES as REPLAY_RANGES
    from tandem.components.shadow.replay import ReplayConfig
    from tandem.pipeline.config import RANGES, PipelineConfig
    from tandem.serving.gateway.config import GatewayConfig

    out = ["# Config reference", "",
           "<!-- Generated by `python -m tandem.pipeline.docs_reference` from the config "
           "dataclasses; do not edit by hand. -->", "",
           "Every key of the three YAML configs, with its type, its default and what it "
           "means, read from the dataclasses the configs are bound to. An unknown key, a "
           "wrong type, a missing required key, a number that is not finite (YAML's `.nan`, "
           "`.inf`) or out of the range its type shows is refused in one line that names the "
           "key (exit status 2). An empty default is the empty string, which each key's "
           "meaning explains. Any key can be overridden on the command line with "
           "`--set dotted.key=value` (the value is read as YAML).", ""]
    out += _config_tables(
        "Pipeline config", PipelineConfig,
        "`--config FILE` (or a shipped name: `listening`, `taxi`) for `tandem run`, "
        "`retrain`, `schema propose`, `monitor`, `score`, `loop` and `compile`; "
        "`pipeline/config.py`. Paths are relative to the working directory; "
        "`pkg:<package>/<path>` names a file inside an installed package.", RANGES)
    out += _config_tables(
        "Gateway config", GatewayConfig,
        "`tandem serve gateway --gateway-config FILE`; `serving/gateway/config.py`. "
        "A complete example: `deploy/gateway/listening.yaml`.")
    out += _config_tables(
        "Replay config", ReplayConfig,
        "`--replay-config FILE` for `tandem shadow replay`, `shadow validate` and `compile "
        "promotion`; `components/shadow/replay.py`. An example: `deploy/local/replay.yaml`.",
        REPLAY_RANGES)
    return "\n".join(out).rstrip() + "\n"


def _leaves(parser: argparse.ArgumentParser, path: list[str], help: str = ""):
    """(command words, parser, help) of every command that runs something, in --help order."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser, help
        return
    for action in subs:
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, child in action.choices.items():
            yield from _leaves(child, path + [name], helps.get(name, ""))


def _flag_rows(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if (isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS
                or action.dest == "verbose"):
            continue
        if action.option_strings:
            names = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.nargs != 0:
                names += f" `{formatter._format_args(action, action.dest.upper())}`"
        else:
            names = f"`{action.metavar or action.dest}`"
        default = ""
        if not (action.default is None or action.default is False  # 0 is a default to show
                    or action.default in ([], "", argparse.SUPPRESS)) and action.nargs != 0:
            default = f"`{action.default}`"
        if action.required:
            default = "required"
        text = formatter._expand_help(action) if action.help else ""
        rows.append(f"| {_cell(names)} | {_cell(default)} | {_cell(' '.join(text.split()))} |")
    return rows


def cli_page() -> str:
    from tandem.pipeline.cli import build_parser

    parser = build_parser()
    out = ["# CLI reference", "",
           "<!-- Generated by `python -m tandem.pipeline.docs_reference` from the argparse "
           "parser of `tandem`; do not edit by hand. -->", "",
           "Every `tandem` command with its flags, read from the parser `tandem` runs. "
           "`--verbose` is accepted before or after any command (library logs and, on a "
           "failure, the full trace). Flags are taken only by their full names. The exit "
           "statuses are listed in [Troubleshooting](../troubleshooting.md#exit-status).", ""]
    for words, leaf, help in _leaves(parser, ["tandem"]):
        out += [f"## `{' '.join(words)}`", ""]
        description = leaf.description or help
        if description:
            out += [" ".join(description.split()), ""]
        usage = leaf.format_usage().strip()
        usage = re.sub(r"\s+", " ", usage.removeprefix("usage: "))
        out += ["```text", usage, "```", "", "| flag | default | meaning |", "|---|---|---|"]
        out += _flag_rows(leaf)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render() -> dict[str, str]:
    """Each reference page's name and text."""
    os.environ["COLUMNS"] = "100"  # argparse wraps usage by the terminal's width
    return {"config.md": config_page(), "cli.md": cli_page()}


def stale(directory: str) -> list[str]:
    """The pages under `directory` that differ from what the code says (or are missing)."""
    found = []
    for name, text in render().items():
        path = os.path.join(directory, name)
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check docs/reference/*.md.")
    parser.add_argument("--out", default=os.path.join("docs", "reference"))
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a page is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale(args.out)
        for path in out_of_date:
            print(f"{path} is out of date: run python -m tandem.pipeline.docs_reference",
                  file=sys.stderr)
        return 1 if out_of_date else 0
    os.makedirs(args.out, exist_ok=True)
    for name, text in render().items():
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(text)
        print(os.path.join(args.out, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
