"""Config binding: every YAML config (pipeline, gateway, replay) is bound to its dataclasses
by this one binder, so a bad key reads the same in all of them, in one line that names the
config and the dotted key:

    unknown key 'primary.timout_s' in gateway config; known: address, model_name, ...
    key 'evaluation.threshold' in pipeline config: expected a number, got 'abc'
    missing required key 'label' in pipeline config
    key 'checks.min_importance' in pipeline config was removed: <what replaced it>

A field's type hint says what its value may be: int, float (finite: YAML's .nan and .inf are
refused), bool, str, a Literal's choices, list[...] and dict[str, ...] (bare list and dict
too), `X | None`, or a nested dataclass (a section). Three coercions, and no others: an integer where a number goes becomes a float; an
empty value (YAML `key:`) of a section is the section's defaults; and an empty value of a
string that is not required is "". A key is required when its field has no default.

Only types are checked here; each config keeps its own rules across keys (two keys that
exclude each other) beside its dataclasses, raising its own error in the same words. A range
reads the same everywhere through `check_range`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from tandem.schemas.exit_status import BadInputError
from tandem.schemas.yaml_config import YamlConfigError, apply_override, read_yaml

T = TypeVar("T")

# Field metadata of a dataclass field that the loader sets, not the file (e.g. `source`).
NOT_A_KEY = {"config_key": False}

_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          list: "a list", dict: "a mapping"}


class ConfigKeyError(BadInputError):
    """A config key that is unknown, missing, removed, or has a value of the wrong type."""


@dataclasses.dataclass(frozen=True)
class _Binding:
    """One bind call: which config (for the message), its error type, its removed keys."""

    config: str
    error: type[BadInputError]
    removed: Mapping[str, str]

    def wrong(self, key: str, expected: str, value: Any) -> BadInputError:
        where = f"key '{key}' in {self.config}" if key else self.config
        return self.error(f"{where}: expected {expected}, got {value!r}")

    def value(self, value: Any, hint: Any, key: str, default: Any = dataclasses.MISSING) -> Any:
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint):
            return self.section(hint, {} if value is None else value, key)
        if origin in (typing.Union, types.UnionType):
            if value is None:
                return None
            (inner,) = (a for a in typing.get_args(hint) if a is not type(None))
            return self.value(value, inner, key)
        if origin is Literal:
            choices = typing.get_args(hint)
            if value not in choices:
                raise self.wrong(key, "one of " + ", ".join(map(str, choices)), value)
            return value
        if hint is list or origin is list:
            if not isinstance(value, list):
                raise self.wrong(key, "a list", value)
            (item,) = typing.get_args(hint) or (Any,)
            return [self.value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        if hint is dict or origin is dict:
            if not isinstance(value, dict):
                raise self.wrong(key, "a mapping", value)
            _, item = typing.get_args(hint) or (str, Any)
            return {str(k): self.value(v, item, f"{key}.{k}") for k, v in value.items()}
        if hint is Any:
            return value
        if hint is str and value is None and default is not dataclasses.MISSING:
            return ""
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
            raise self.wrong(key, _WORDS.get(hint, hint.__name__), value)
        if hint is float and not math.isfinite(value):  # YAML's .nan and .inf: no limit means
            raise self.wrong(key, "a finite number", value)  # null where a key allows it
        return value

    def section(self, cls: type[T], raw: Any, prefix: str) -> T:
        if not isinstance(raw, Mapping):
            raise self.wrong(prefix, "a mapping", raw)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("config_key", True)}
        dotted = {str(k): (f"{prefix}.{k}" if prefix else str(k)) for k in raw}
        for name, key in dotted.items():
            if name not in fields and key in self.removed:
                raise self.error(f"key '{key}' in {self.config} was removed: "
                                 f"{self.removed[key]}")
        unknown = [key for name, key in dotted.items() if name not in fields]
        if unknown:
            raise self.error(f"unknown key '{unknown[0]}' in {self.config}; known: "
                             f"{', '.join(sorted(fields))}")
        kwargs = {}
        for name, field in fields.items():
            key = f"{prefix}.{name}" if prefix else name
            if name in raw:
                kwargs[name] = self.value(raw[name], hints[name], key, field.default)
            elif (field.default is dataclasses.MISSING
                  and field.default_factory is dataclasses.MISSING):
                raise self.error(f"missing required key '{key}' in {self.config}")
        return cls(**kwargs)


def bind(cls: type[T], raw: Any, config: str, error: type[BadInputError] = ConfigKeyError,
         removed: Mapping[str, str] | None = None) -> T:
    """`raw` (a YAML file's mapping) as an instance of the dataclass `cls`. `config` names the
    config in messages ("gateway config"); `error` is the caller's own BadInputError subclass,
    so its callers catch one type; `removed` maps a dotted key of an earlier version to what
    replaced it."""
    return _Binding(config, error, removed or {}).section(cls, raw, "")


def read_config(path: str | None, config: str, overrides: list[str] | None = None,
                error: type[BadInputError] = ConfigKeyError) -> dict:
    """A config file's mapping ({} without a path) with `--set dotted.key=value` overrides
    applied, ready to bind; a file that cannot be read or an override that cannot be applied
    raises `error`."""
    try:
        raw = read_yaml(path, config) if path else {}
        for assignment in overrides or []:
            apply_override(raw, assignment)
    except YamlConfigError as e:
        raise error(str(e)) from None
    return raw


def check_range(value: Any, key: str, config: str, error: type[BadInputError],
                low: float | None = None, high: float | None = None, why: str = "") -> None:
    """A number's range (inclusive bounds; None: unbounded; a None value: unset, not checked),
    in the binder's words: "key 'monitor.bootstrap' in pipeline config: expected a number
    >= 20 (...), got 0"."""
    if value is None or ((low is None or value >= low) and (high is None or value <= high)):
        return
    span = (f"between {low:g} and {high:g}" if low is not None and high is not None
            else f">= {low:g}" if low is not None else f"<= {high:g}")
    raise _Binding(config, error, {}).wrong(
        key, f"{'an integer' if isinstance(value, int) else 'a number'} {span}"
        + (f" ({why})" if why else ""), value)


def check_ranges(bound: Any, ranges: Mapping[str, tuple[float | None, float | None, str]],
                 config: str, error: type[BadInputError]) -> None:
    """`check_range` for each dotted key of `ranges` ({key: (low, high, why)}) on a bound
    config; a `*` part stands for every name of a mapping (e.g. `monitor.features.*.psi`)."""
    def values(obj: Any, parts: list[str], key: str):
        if not parts:
            yield key, obj
            return
        head, rest = parts[0], parts[1:]
        if head == "*":
            for name, item in obj.items():
                yield from values(item, rest, f"{key}.{name}")
        else:
            yield from values(getattr(obj, head), rest, f"{key}.{head}" if key else head)

    for dotted, (low, high, why) in ranges.items():
        for key, value in values(bound, dotted.split("."), ""):
            check_range(value, key, config, error, low, high, why)
