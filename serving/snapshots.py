"""Feature-source snapshots read whole, for the checks that judge a snapshot before the gateway
decorates from it (`tandem features diff`, the replay with `--candidate-features`).

The gateway only ever looks entities up by key (serving/gateway/sources.py); a diff needs every
entity of a table, so this module reads a snapshot table by table: SQLite by one SELECT, Redis
by a SCAN over the table's hashes, as `tandem features load` wrote them. A snapshot is named
the way the gateway config names a source: a SQLite path, or `redis://HOST:PORT[/DB]` with an
optional `?prefix=NAME` (default tandem) when one Redis holds several snapshots.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import urllib.parse
from typing import Any

from tandem.serving.gateway.sources import (
    FeatureSource,
    Join,
    RedisSource,
    SourceError,
    SqliteSource,
    check_joins,
)

REDIS_SCAN = 1000  # keys per SCAN call and per pipelined HGETALL batch


@dataclasses.dataclass(frozen=True)
class Table:
    """One table of a snapshot: its key column, each column's type (INT, FLOAT, BYTES; the key
    first) and its rows, key -> value columns in the order of `columns`."""

    name: str
    key: str
    types: dict[str, str]
    rows: dict[str, tuple]

    @property
    def columns(self) -> list[str]:
        return [c for c in self.types if c != self.key]


def redis_spec(spec: str) -> tuple[str, str]:
    """A Redis snapshot's (address without the query, key prefix)."""
    parsed = urllib.parse.urlparse(spec)
    prefix = urllib.parse.parse_qs(parsed.query).get("prefix", ["tandem"])[0]
    return urllib.parse.urlunparse(parsed._replace(query="")), prefix


def open_snapshot(spec: str) -> FeatureSource:
    """The source a snapshot spec names (raises SourceError, one line, when it cannot be read)."""
    if spec.startswith("redis://"):
        url, prefix = redis_spec(spec)
        return RedisSource(url, prefix=prefix)
    if "://" in spec:
        raise SourceError(f"'{spec}' is not a feature source: use a SQLite file or "
                          "redis://HOST:PORT[?prefix=NAME]")
    return SqliteSource(spec)


def snapshot_name(source: FeatureSource) -> str:
    """kind@version: how reports and alerts name a snapshot."""
    return f"{source.kind}@{source.version}"


def table_names(source: FeatureSource) -> list[str]:
    if isinstance(source, SqliteSource):
        return sorted(source.keys)
    return sorted(_redis_meta(source))


def _redis_meta(source: RedisSource) -> dict[str, dict[str, str]]:
    import redis

    url, _ = redis_spec(source.url)
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        meta = client.hgetall(f"{source.prefix}:meta")
    except redis.RedisError as e:
        raise SourceError(f"feature source {source.url}: {e}") from None
    finally:
        client.close()
    return {k.decode()[6:]: json.loads(v) for k, v in meta.items() if k.startswith(b"types:")}


# What SQLite may store in a column of each declared kind (it stores anything anywhere).
_SQLITE_STORED = {"INT": ("integer", "null"), "FLOAT": ("real", "integer", "null"),
                  "BYTES": ("text", "null")}


def check_values(source: FeatureSource, table: str, columns) -> None:
    """Every stored value of a SQLite snapshot's `columns` has its column's declared type
    (raises SourceError naming the first that does not): a value the gateway could not put in
    a tf.Example would otherwise fail the first request that reads it."""
    if not isinstance(source, SqliteSource):
        return  # Redis stores strings, decoded by the declared type as they are read
    types = source.types(table)
    key = source.keys[table]
    for column in columns:
        allowed = _SQLITE_STORED.get(types.get(column, ""))
        if allowed is None:
            continue
        marks = ", ".join("?" for _ in allowed)
        try:
            bad = source._con().execute(
                f'SELECT "{key}", "{column}", typeof("{column}") FROM "{table}" '
                f'WHERE typeof("{column}") NOT IN ({marks}) LIMIT 1', allowed).fetchone()
        except sqlite3.Error as e:
            raise SourceError(f"feature source {snapshot_name(source)}: {e}") from None
        if bad is not None:
            raise SourceError(f"table '{table}' column '{column}' is {types[column]} in "
                              f"{snapshot_name(source)} but entity {bad[0]!r} holds "
                              f"{bad[1]!r} ({bad[2]})")


def read_table(source: FeatureSource, table: str) -> Table:
    """Every row of `table` (raises SourceError when the snapshot has no such table, or a
    value of another type than its column's)."""
    types = dict(source.types(table))
    if isinstance(source, SqliteSource):
        check_values(source, table, list(types))
        columns, cursor = source.rows(table)
        key = source.keys[table]
        return Table(table, key, {key: types[key], **{c: types[c] for c in columns}},
                     {str(row[0]): tuple(row[1:]) for row in cursor})
    return _read_redis_table(source, table, types)


def _read_redis_table(source: RedisSource, table: str, types: dict[str, str]) -> Table:
    import redis

    from tandem.serving.gateway.sources import _DECODE

    url, _ = redis_spec(source.url)
    client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
    prefix = f"{source.prefix}:{table}:"
    hashes: dict[str, dict[bytes, bytes]] = {}
    try:
        batch: list[bytes] = []
        for name in client.scan_iter(match=prefix.encode() + b"*", count=REDIS_SCAN):
            batch.append(name)
            if len(batch) >= REDIS_SCAN:
                _fetch(client, batch, prefix, hashes)
                batch = []
        _fetch(client, batch, prefix, hashes)
    except redis.RedisError as e:
        raise SourceError(f"feature source {source.url}: {e}") from None
    finally:
        client.close()
    # `tandem features load` writes the value columns as fields, never the key: the key is the
    # first column (in the table's order) that no entity carries.
    seen = {f.decode() for fields in hashes.values() for f in fields}
    key = next((c for c in types if c not in seen), next(iter(types)))
    columns = [c for c in types if c != key]
    decode = [_DECODE[types[c]] for c in columns]
    rows: dict[str, tuple[Any, ...]] = {}
    for entity, fields in hashes.items():
        rows[entity] = tuple(None if (v := fields.get(c.encode())) is None else d(v)
                             for c, d in zip(columns, decode, strict=True))
    return Table(table, key, {key: types[key], **{c: types[c] for c in columns}}, rows)


def _fetch(client, names: list[bytes], prefix: str, into: dict) -> None:
    if not names:
        return
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    for name, fields in zip(names, pipe.execute(), strict=True):
        into[name.decode()[len(prefix):]] = fields


def check_candidate(candidate: FeatureSource, serving: FeatureSource,
                    joins: list[Join]) -> None:
    """A candidate snapshot can replace the serving one for these joins: every table and
    column is there, with the type the serving snapshot gives it (the key's too)."""
    check_joins(candidate, joins)
    for join in joins:
        have, want = candidate.types(join.table), serving.types(join.table)
        for column in (join.key, *join.columns):
            if column in want and have[column] != want[column]:
                what = "key" if column == join.key else "column"
                raise SourceError(f"table '{join.table}' {what} '{column}' is {have[column]} in "
                                  f"{snapshot_name(candidate)} but {want[column]} in the "
                                  f"serving source {snapshot_name(serving)}")
        check_values(candidate, join.table, [join.key, *join.columns])
