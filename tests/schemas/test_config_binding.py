"""Tests for the one config binder: types, coercions, and the one error format."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from tandem.schemas.config_binding import NOT_A_KEY, ConfigKeyError, bind, read_config
from tandem.schemas.exit_status import BadInputError


@dataclasses.dataclass(frozen=True)
class Primary:
    address: str
    model: str = ""
    timeout_s: float = 10.0


@dataclasses.dataclass(frozen=True)
class Settings:
    primary: Primary
    retries: int = 3
    verbose: bool = False
    mode: Literal["fast", "safe"] = "safe"
    threshold: float | None = None
    ports: list[int] = dataclasses.field(default_factory=list)
    groups: list[list[str]] = dataclasses.field(default_factory=list)
    limits: dict[str, float] = dataclasses.field(default_factory=dict)
    path: str = dataclasses.field(default="", metadata=NOT_A_KEY)


def _error(raw: dict, **kw) -> str:
    with pytest.raises(ConfigKeyError) as error:
        bind(Settings, raw, "test config", **kw)
    return str(error.value)


def test_a_mapping_binds_to_nested_dataclasses_with_defaults_and_coercions():
    settings = bind(Settings, {"primary": {"address": "h:1", "timeout_s": 2},
                               "ports": [1, 2], "groups": [["a", "b"]],
                               "limits": {"x": 1, "y": 0.5}, "verbose": True}, "test config")
    assert settings == Settings(primary=Primary("h:1", timeout_s=2.0), ports=[1, 2],
                                groups=[["a", "b"]], limits={"x": 1.0, "y": 0.5}, verbose=True)
    assert isinstance(settings.primary.timeout_s, float)  # an integer where a number goes
    assert isinstance(settings.limits["x"], float)
    assert settings.retries == 3 and settings.mode == "safe" and settings.threshold is None


def test_an_unknown_key_names_the_config_its_dotted_path_and_the_known_keys():
    assert _error({"primary": {"address": "h:1", "timout_s": 1}}) == (
        "unknown key 'primary.timout_s' in test config; known: address, model, timeout_s")
    # A field the loader sets is not a key the file may give.
    assert _error({"primary": {"address": "h:1"}, "path": "x"}) == (
        "unknown key 'path' in test config; known: groups, limits, mode, ports, primary, "
        "retries, threshold, verbose")


def test_a_removed_key_says_what_replaced_it():
    raw = {"primary": {"address": "h:1", "timeout": 1}}
    assert _error(raw, removed={"primary.timeout": "use primary.timeout_s (seconds)"}) == (
        "key 'primary.timeout' in test config was removed: use primary.timeout_s (seconds)")


@pytest.mark.parametrize("raw, message", [
    ({"retries": "abc"}, "key 'retries' in test config: expected an integer, got 'abc'"),
    ({"retries": True}, "key 'retries' in test config: expected an integer, got True"),
    ({"verbose": "yes"}, "key 'verbose' in test config: expected true or false, got 'yes'"),
    ({"threshold": "abc"}, "key 'threshold' in test config: expected a number, got 'abc'"),
    ({"mode": "quick"}, "key 'mode' in test config: expected one of fast, safe, got 'quick'"),
    ({"ports": 8080}, "key 'ports' in test config: expected a list, got 8080"),
    ({"ports": [1, "two"]}, "key 'ports[1]' in test config: expected an integer, got 'two'"),
    ({"groups": [["a"], ["b", 3]]},
     "key 'groups[1][1]' in test config: expected a string, got 3"),
    ({"limits": {"x": "high"}}, "key 'limits.x' in test config: expected a number, got 'high'"),
    ({"limits": [1]}, "key 'limits' in test config: expected a mapping, got [1]"),
])
def test_a_wrong_type_names_the_dotted_key_what_it_expected_and_what_it_got(raw, message):
    assert _error({"primary": {"address": "h:1"}, **raw}) == message


def test_a_wrong_type_in_a_nested_section_names_the_whole_path():
    assert _error({"primary": {"address": 80}}) == (
        "key 'primary.address' in test config: expected a string, got 80")
    assert _error({"primary": "h:1"}) == (
        "key 'primary' in test config: expected a mapping, got 'h:1'")


def test_a_missing_required_key_is_named_with_its_path():
    assert _error({}) == "missing required key 'primary' in test config"
    assert _error({"primary": {"model": "m"}}) == (
        "missing required key 'primary.address' in test config")


def test_empty_values_are_none_for_optional_keys_and_refused_for_others():
    settings = bind(Settings, {"primary": {"address": "h:1", "model": None},
                               "threshold": None}, "test config")
    assert settings.threshold is None
    assert settings.primary.model == ""  # a string that is not required
    assert _error({"primary": {"address": None}}) == (
        "key 'primary.address' in test config: expected a string, got None")
    assert _error({"primary": {"address": "h:1"}, "retries": None}) == (
        "key 'retries' in test config: expected an integer, got None")


def test_an_empty_section_takes_its_defaults():
    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Primary = dataclasses.field(default_factory=lambda: Primary("d:1"))
        nested: Settings | None = None

    assert bind(Outer, {"inner": {"address": "h:2"}}, "x").inner == Primary("h:2")
    assert bind(Outer, {}, "x").nested is None
    with pytest.raises(ConfigKeyError, match="missing required key 'inner.address' in x$"):
        bind(Outer, {"inner": None}, "x")


def test_errors_are_the_callers_own_bad_input_type():
    class GatewayError(BadInputError):
        pass

    with pytest.raises(GatewayError, match="^unknown key 'bogus' in gateway config"):
        bind(Primary, {"address": "h:1", "bogus": 1}, "gateway config", GatewayError)
    assert issubclass(ConfigKeyError, BadInputError)  # the CLI maps it to exit status 2


def test_read_config_applies_overrides_and_raises_the_callers_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("primary: {address: h:1}\nretries: 1\n")
    raw = read_config(str(path), "test config", ["retries=5", "primary.model=m"])
    assert bind(Settings, raw, "test config") == Settings(Primary("h:1", "m"), retries=5)
    assert read_config(None, "test config", ["retries=2"]) == {"retries": 2}
    with pytest.raises(ConfigKeyError, match="cannot read test config"):
        read_config(str(tmp_path / "nope.yaml"), "test config")
    with pytest.raises(ConfigKeyError, match="must look like key=value"):
        read_config(str(path), "test config", ["retries"])


def test_a_number_must_be_finite_wherever_it_appears():
    nan = float("nan")
    assert _error({"primary": {"address": "a", "timeout_s": nan}}) == (
        "key 'primary.timeout_s' in test config: expected a finite number, got nan")
    assert _error({"primary": {"address": "a"}, "threshold": float("inf")}) == (
        "key 'threshold' in test config: expected a finite number, got inf")
    assert _error({"primary": {"address": "a"}, "limits": {"x": -float("inf")}}) == (
        "key 'limits.x' in test config: expected a finite number, got -inf")
    bound = bind(Settings, {"primary": {"address": "a", "timeout_s": 1e300}, "threshold": None},
                 "test config")
    assert bound.primary.timeout_s == 1e300 and bound.threshold is None


def test_a_range_reads_like_the_binder():
    from tandem.schemas.config_binding import check_range

    check_range(None, "k", "test config", ConfigKeyError, 0, 1)  # unset: not checked
    check_range(0, "k", "test config", ConfigKeyError, 0, 1)  # bounds are inclusive
    check_range(1.0, "k", "test config", ConfigKeyError, 0, 1)
    cases = [((5, 20, None, "why"), "key 'k' in test config: expected an integer >= 20 (why), "
                                    "got 5"),
             ((1.5, 0, 1, ""), "key 'k' in test config: expected a number between 0 and 1, "
                               "got 1.5"),
             ((3.0, None, 2, ""), "key 'k' in test config: expected a number <= 2, got 3.0")]
    for (value, low, high, why), message in cases:
        with pytest.raises(ConfigKeyError) as error:
            check_range(value, "k", "test config", ConfigKeyError, low, high, why)
        assert str(error.value) == message
