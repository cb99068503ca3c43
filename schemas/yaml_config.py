"""The YAML config files every command reads (pipeline, gateway, replay): reading one, and
applying `--set dotted.key=value` overrides, stated once. Each caller turns YamlConfigError
into its own error type, so the message reaches the user as one line, exit status 2."""

from __future__ import annotations

import yaml


class YamlConfigError(ValueError):
    """A config file that cannot be read, or an override that cannot be applied."""


def read_yaml(path: str, what: str = "config") -> dict:
    """The file's top-level mapping ({} for an empty file)."""
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise YamlConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    except yaml.YAMLError as e:  # its message spans lines, with a caret drawing; one line here
        raise YamlConfigError(f"{what} {path} is not valid YAML: {' '.join(str(e).split())}") \
            from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise YamlConfigError(f"{what} {path} must be a mapping at the top level")
    return raw


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `dotted.key=value` override (value parsed as YAML) to a raw config dict."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise YamlConfigError(f"override {assignment!r} must look like key=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise YamlConfigError(f"override {assignment!r}: '{part}' is not a mapping")
    node[parts[-1]] = yaml.safe_load(value) if value else ""
