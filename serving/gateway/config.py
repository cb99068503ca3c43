"""Gateway: its YAML config, read strictly (an unknown key or a wrong type is one clear line,
in the words of every config: schemas/config_binding.py).

Each key's type, default and meaning sit on its field below; docs/reference/config.md is
written from them (python -m tandem.pipeline.docs_reference), and deploy/gateway/listening.yaml
is a complete example.
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
    """Model A, the model server that answers every request."""

    address: str = ""  # HOST:PORT of the model server's gRPC API (required)
    model_name: str = ""  # map any requested name to this one; empty: the client's name
    timeout_s: float = 10.0  # deadline of one call to the model server
    version_label: str = ""  # e.g. stable: a request that names no version goes to it


@dataclasses.dataclass
class Shadow:
    """Model B: requests mirrored to it after A has answered, off the request path."""

    address: str = ""  # HOST:PORT of B's model server; empty: no mirroring
    model_name: str = ""  # B's model name; empty: no mirroring
    version_label: str = ""  # e.g. canary; empty: the latest version
    sample_percent: float = 100.0  # share of requests mirrored, by a hash of the request id
    queue_size: int = 1000  # mirror calls waiting; past it further ones are dropped, counted
    timeout_s: float = 10.0  # deadline of one call to B
    workers: int = 2  # threads that send the mirror calls


Policy = Literal["flag", "reject"]


@dataclasses.dataclass
class JoinSpec:
    """One entity join as the config writes it: {key, table, columns}."""

    key: str  # the request's entity key feature, e.g. user_id
    table: str  # the feature source's table holding that entity
    columns: list[str]  # the table's columns joined into the example


@dataclasses.dataclass
class Decorate:
    """Decoration: the request's entities joined with the feature sources' columns."""

    sqlite: str = ""  # the generator's features.sqlite (the embedded source)
    redis: str = ""  # redis://HOST:PORT (the production source); used when set
    joins: list[JoinSpec] = dataclasses.field(default_factory=list)  # empty: pass through
    # default: fill an entity no source knows with `defaults` and flag it; reject: NOT_FOUND
    on_missing: Literal["default", "reject"] = "default"
    # {column: value} for unknown entities; by default the middle of the schema's domain
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    # how long an entity's looked-up columns are reused; 0: never; 1e9: while it runs
    cache_s: float = 60.0


@dataclasses.dataclass
class Validate:
    """The curated schema's SERVING environment checked on every example, and the alerts."""

    policy: Policy = "flag"  # flag: pass and record the violations; reject: INVALID_ARGUMENT
    features: dict[str, Policy] = dataclasses.field(default_factory=dict)  # policy per feature
    window_s: float = 60.0  # sliding window of the per-feature violation rate
    min_examples: int = 100  # examples a window needs before an alert can fire
    # {feature: rate} an alert fires above; default: the violation share the schema's
    # presence and domain-mass constraints allow, at least alert_floor
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    alert_floor: float = 0.01  # the lowest default threshold
    webhook: str = ""  # URL POSTed a JSON body when an alert fires or clears


@dataclasses.dataclass
class Log:
    """The request log: decorated requests and A's answers as PredictionLog TFRecords."""

    dir: str = ""  # local or any tf.io.gfile path; empty: nothing is logged
    sample_percent: float = 100.0  # share of requests logged, by a hash of the request id
    max_bytes: int = 128 << 20  # a file rotates past this size
    max_age_s: float = 3600.0  # or past this age
    fsync_interval_s: float = 1.0  # how often a thread syncs the open file to disk
    id_feature: str = "request_id"  # the example feature that holds its id


@dataclasses.dataclass
class GatewayConfig:
    """The gateway's YAML (`tandem serve gateway --gateway-config FILE`)."""

    primary: Primary = dataclasses.field(default_factory=Primary)
    shadow: Shadow = dataclasses.field(default_factory=Shadow)
    schema: str = ""  # the curated schema.pbtxt whose SERVING environment is validated
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
