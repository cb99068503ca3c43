"""Gateway: its YAML config, read strictly (an unknown key or a wrong type is one clear line,
in the words of every config: schemas/config_binding.py).

Every key, with its default (deploy/gateway/listening.yaml is a complete example):

    primary:  address (HOST:PORT, required), model_name (map any requested name to this one;
              empty: pass the client's model_spec through), timeout_s (10), version_label
              (e.g. stable: a request that names no version goes to this label)
    shadow:   address, model_name (empty: no mirroring), version_label (e.g. canary; empty:
              the latest version), sample_percent (100), queue_size (1000), timeout_s (10),
              workers (2)
    schema:   path of the curated schema (its SERVING environment is validated)
    decorate: sqlite, redis (redis://HOST:PORT; used when set), joins ([{key, table, columns}];
              empty: examples pass through), on_missing (default | reject), defaults
              ({column: value} for unknown entities; by default derived from the schema),
              cache_s (60: how long an entity's looked-up columns are reused; 0: never)
    validate: policy (flag | reject), features ({feature: flag | reject}), window_s (60),
              min_examples (100), thresholds ({feature: rate}), alert_floor (0.01),
              webhook (URL, optional)
    log:      dir (required to log), sample_percent (100), max_bytes (128 MiB),
              max_age_s (3600), fsync_interval_s (1.0), id_feature (request_id)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

from tandem.schemas.config_binding import bind, read_config
from tandem.schemas.exit_status import BadInputError
from tandem.serving.gateway.sources import Join


class GatewayConfigError(BadInputError):
    """A gateway config that cannot be used; the message names the key."""


@dataclasses.dataclass
class Primary:
    address: str = ""
    model_name: str = ""
    timeout_s: float = 10.0
    version_label: str = ""


@dataclasses.dataclass
class Shadow:
    address: str = ""
    model_name: str = ""
    version_label: str = ""
    sample_percent: float = 100.0
    queue_size: int = 1000
    timeout_s: float = 10.0
    workers: int = 2


Policy = Literal["flag", "reject"]


@dataclasses.dataclass
class JoinSpec:
    """One entity join as the config writes it: {key, table, columns}."""

    key: str
    table: str
    columns: list[str]


@dataclasses.dataclass
class Decorate:
    sqlite: str = ""
    redis: str = ""
    joins: list[JoinSpec] = dataclasses.field(default_factory=list)
    on_missing: Literal["default", "reject"] = "default"
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    cache_s: float = 60.0


@dataclasses.dataclass
class Validate:
    policy: Policy = "flag"
    features: dict[str, Policy] = dataclasses.field(default_factory=dict)
    window_s: float = 60.0
    min_examples: int = 100
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    alert_floor: float = 0.01
    webhook: str = ""


@dataclasses.dataclass
class Log:
    dir: str = ""
    sample_percent: float = 100.0
    max_bytes: int = 128 << 20
    max_age_s: float = 3600.0
    fsync_interval_s: float = 1.0
    id_feature: str = "request_id"


@dataclasses.dataclass
class GatewayConfig:
    primary: Primary = dataclasses.field(default_factory=Primary)
    shadow: Shadow = dataclasses.field(default_factory=Shadow)
    schema: str = ""
    decorate: Decorate = dataclasses.field(default_factory=Decorate)
    validate: Validate = dataclasses.field(default_factory=Validate)
    log: Log = dataclasses.field(default_factory=Log)

    def join_list(self) -> list[Join]:
        return [Join(j.key, j.table, tuple(j.columns)) for j in self.decorate.joins]


def _check(config: GatewayConfig, base: str) -> None:
    if not config.primary.address:
        raise GatewayConfigError("missing required key 'primary.address' in gateway config "
                                 "(the model server, HOST:PORT)")
    for name in ("schema",):
        if not getattr(config, name):
            raise GatewayConfigError(f"missing required key '{name}' in gateway config (the "
                                     "curated schema.pbtxt)")
    for i, join in enumerate(config.decorate.joins):
        if not join.columns:
            raise GatewayConfigError(f"key 'decorate.joins[{i}].columns' in gateway config: "
                                     "expected a list of column names, got []")
    if config.decorate.joins and not (config.decorate.sqlite or config.decorate.redis):
        raise GatewayConfigError("key 'decorate.joins' in gateway config needs a source: "
                                 "decorate.sqlite or decorate.redis")
    for key in ("shadow.sample_percent", "log.sample_percent"):
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if not 0 <= value <= 100:
            raise GatewayConfigError(f"key '{key}' in gateway config: expected a percentage "
                                     f"0-100, got {value}")
    if config.shadow.queue_size < 1 or config.shadow.workers < 1:
        raise GatewayConfigError("keys 'shadow.queue_size' and 'shadow.workers' in gateway "
                                 "config: expected at least 1")
    if config.validate.window_s <= 0:
        raise GatewayConfigError("key 'validate.window_s' in gateway config: expected a "
                                 "positive number")
    for feature, rate in config.validate.thresholds.items():
        if not 0 <= rate <= 1:
            raise GatewayConfigError(f"key 'validate.thresholds.{feature}' in gateway config: "
                                     f"expected a rate 0-1, got {rate!r}")
    # Relative paths are relative to the config file's directory's project, i.e. the CWD,
    # unless they only exist beside the config file.
    for section, name in (("", "schema"), ("decorate", "sqlite"), ("log", "dir")):
        owner = getattr(config, section) if section else config
        value = getattr(owner, name)
        if value and "://" not in value and not os.path.isabs(value) and not os.path.exists(
                value) and os.path.exists(os.path.join(base, value)):
            setattr(owner, name, os.path.join(base, value))


def load_config(path: str, overrides: list[str] | None = None) -> GatewayConfig:
    raw = read_config(path, "gateway config", overrides, GatewayConfigError)
    config = bind(GatewayConfig, raw, "gateway config", GatewayConfigError)
    _check(config, os.path.dirname(os.path.abspath(path)))
    return config
