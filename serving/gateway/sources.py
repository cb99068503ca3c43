"""Gateway: feature sources, the tables a request's entity keys are joined with.

A source answers one batched lookup per join: every key of a request in one query (SQLite) or
one round trip (Redis). Sources describe themselves: each column's type (INT, FLOAT, BYTES)
and a version string, the snapshot a decorated example came from.

SQLite is the embedded default (the `features.sqlite` the data generator writes). Redis is the
production source; `copy_to_redis` (`tandem features load --to redis://...`) fills it from the
SQLite file, one hash per entity:

    <prefix>:<table>:<key>     column -> value (a NULL column is no field)
    <prefix>:meta              version -> the SQLite file's fingerprint,
                               types:<table> -> JSON {column: INT|FLOAT|BYTES}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tandem.schemas.exit_status import BadInputError
from tandem.serving.errors import Unavailable

SQL_TYPES = {"INTEGER": "INT", "INT": "INT", "REAL": "FLOAT", "FLOAT": "FLOAT", "TEXT": "BYTES"}
SQLITE_BATCH = 900  # under SQLite's default limit of host parameters per statement


class SourceError(BadInputError):
    """A feature source that cannot be opened or does not hold what the config names."""


@dataclasses.dataclass(frozen=True)
class Join:
    """Entity key feature -> table -> columns."""

    key: str
    table: str
    columns: tuple[str, ...]


class FeatureSource(Protocol):
    kind: str
    version: str

    def types(self, table: str) -> dict[str, str]: ...

    def lookup(self, join: Join, keys: Sequence[str]) -> dict[str, tuple]:
        """{key: column values} for the keys found; a source that cannot answer raises
        Unavailable (the caller gets UNAVAILABLE, as for a model server that is down)."""

    def close(self) -> None: ...


def file_fingerprint(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _table_types(types: dict[str, dict[str, str]], where: str, table: str) -> dict[str, str]:
    """A source's column types of `table`, or the one-line error naming the tables it has."""
    if table not in types:
        raise SourceError(f"feature source {where} has no table '{table}' "
                          f"(it has {', '.join(sorted(types)) or 'none'})")
    return types[table]


class SqliteSource:
    """A read-only SQLite file; one connection per thread (sqlite3's rule)."""

    kind = "sqlite"

    def __init__(self, path: str):
        self.path = path
        try:
            self.version = file_fingerprint(path)
        except OSError as e:
            raise SourceError(f"feature source {path}: {e.strerror or e}") from None
        self._local = threading.local()
        self._types: dict[str, dict[str, str]] = {}
        self.keys: dict[str, str] = {}  # table -> its primary key column
        try:
            tables = [r[0] for r in self._con().execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
        except sqlite3.DatabaseError as e:
            raise SourceError(f"feature source {path} is not a SQLite database: {e}") from None
        for table in tables:
            info = self._con().execute(f'PRAGMA table_info("{table}")').fetchall()
            self._types[table] = {row[1]: SQL_TYPES.get(row[2].upper(), "BYTES") for row in info}
            self.keys[table] = next((row[1] for row in info if row[5] == 1), info[0][1])

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            uri = f"file:{urllib.parse.quote(self.path)}?mode=ro"
            con = self._local.con = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return con

    def types(self, table: str) -> dict[str, str]:
        return _table_types(self._types, self.path, table)

    def lookup(self, join: Join, keys: Sequence[str]) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        unique = list(dict.fromkeys(keys))
        cols = ", ".join(f'"{c}"' for c in join.columns)
        con = self._con()
        try:
            for start in range(0, len(unique), SQLITE_BATCH):
                part = unique[start:start + SQLITE_BATCH]
                marks = ",".join("?" * len(part))
                sql = (f'SELECT "{join.key}", {cols} FROM "{join.table}" '
                       f'WHERE "{join.key}" IN ({marks})')
                for row in con.execute(sql, part):
                    found[row[0]] = row[1:]
        except sqlite3.Error as e:
            raise Unavailable(f"feature source {self.path}: {e}") from None
        return found

    def rows(self, table: str) -> tuple[list[str], Any]:
        """(value columns, cursor over (key, *values) rows) of a whole table."""
        columns = [c for c in self._types[table] if c != self.keys[table]]
        cols = ", ".join(f'"{c}"' for c in [self.keys[table], *columns])
        return columns, self._con().execute(f'SELECT {cols} FROM "{table}"')

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


_DECODE: dict[str, Callable[[bytes], Any]] = {
    "INT": int, "FLOAT": float, "BYTES": lambda b: b.decode(),
}


def _redis_client(url: str):
    import redis

    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "redis" or not parsed.hostname or not parsed.port:
        raise SourceError(f"'{url}' is not a Redis address; use redis://HOST:PORT")
    return redis.Redis(host=parsed.hostname, port=parsed.port,
                       db=int((parsed.path or "/0").strip("/") or 0),
                       socket_timeout=5, socket_connect_timeout=5)


class RedisSource:
    """Entity hashes in Redis, as `copy_to_redis` writes them; one pipelined round trip per
    lookup."""

    kind = "redis"

    def __init__(self, url: str, prefix: str = "tandem"):
        import redis

        self.url, self.prefix = url, prefix
        self._client = _redis_client(url)
        try:
            meta = self._client.hgetall(f"{prefix}:meta")
        except redis.RedisError as e:
            raise SourceError(f"feature source {url}: {e}") from None
        if b"version" not in meta:
            raise SourceError(f"feature source {url} holds no tandem tables under '{prefix}:' "
                              "(fill it with `tandem features load --to ...`)")
        self.version = meta[b"version"].decode()
        self._types = {k.decode()[6:]: json.loads(v) for k, v in meta.items()
                       if k.startswith(b"types:")}

    def types(self, table: str) -> dict[str, str]:
        return _table_types(self._types, self.url, table)

    def lookup(self, join: Join, keys: Sequence[str]) -> dict[str, tuple]:
        import redis

        unique = list(dict.fromkeys(keys))
        types = self._types[join.table]
        decoders = [_DECODE[types[c]] for c in join.columns]
        pipe = self._client.pipeline(transaction=False)
        for key in unique:
            pipe.hmget(f"{self.prefix}:{join.table}:{key}", join.columns)
        try:
            answers = pipe.execute()
        except redis.RedisError as e:
            raise Unavailable(f"feature source {self.url}: {e}") from None
        found: dict[str, tuple] = {}
        for key, values in zip(unique, answers, strict=True):
            if all(v is None for v in values):
                continue  # no such entity
            found[key] = tuple(None if v is None else d(v)
                               for v, d in zip(values, decoders, strict=True))
        return found

    def close(self) -> None:
        self._client.close()


def open_source(sqlite: str | None, redis_url: str | None) -> FeatureSource:
    """Redis when configured (production), else the SQLite file."""
    if redis_url:
        return RedisSource(redis_url)
    if sqlite:
        return SqliteSource(sqlite)
    raise SourceError("no feature source configured (decorate.sqlite or decorate.redis)")


def open_spec(spec: str) -> FeatureSource:
    """A source named by one string, as `tandem features promote --to` takes it: a
    redis://HOST:PORT[/DB] address, else a SQLite file."""
    return open_source(None, spec) if "://" in spec else open_source(spec, None)


def check_snapshot(source: FeatureSource, joins: Sequence[Join],
                   current: FeatureSource | None = None) -> None:
    """What a snapshot must hold to replace `current` under a running gateway (raises
    SourceError): the joins' tables and columns, string entity keys (requests carry keys as
    strings), the column types `current` has (the decorated examples keep their types), and
    rows that can be read."""
    check_joins(source, joins)
    for join in joins:
        types = source.types(join.table)
        if types[join.key] != "BYTES":
            raise SourceError(f"table '{join.table}': key column '{join.key}' holds "
                              f"{types[join.key]}, the gateway's entity keys are strings")
        if current is not None:
            was = current.types(join.table)
            changed = [f"{c} {was[c]} -> {types[c]}" for c in join.columns if was[c] != types[c]]
            if changed:
                raise SourceError(f"table '{join.table}': column type(s) changed "
                                  f"({', '.join(changed)})")
        try:
            source.lookup(join, [""])
        except Unavailable as e:
            raise SourceError(str(e)) from None


def check_joins(source: FeatureSource, joins: Sequence[Join]) -> None:
    """Every table and column the joins name exists in the source (raises SourceError)."""
    for join in joins:
        types = source.types(join.table)
        missing = [c for c in (join.key, *join.columns) if c not in types]
        if missing:
            raise SourceError(f"table '{join.table}' has no column(s) {', '.join(missing)} "
                              f"(it has {', '.join(types)})")


def check_source(sqlite: str | None, redis_url: str | None, joins: Sequence[Join]) -> None:
    """Open the configured source and check the joins against it (raises SourceError)."""
    if not joins:
        return
    source = open_source(sqlite, redis_url)
    try:
        check_joins(source, joins)
    finally:
        source.close()


def copy_to_redis(sqlite_path: str, url: str, prefix: str = "tandem",
                  progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every table of a SQLite feature file into Redis (see the module docstring); the
    version key is written last, so a reader never sees a half-loaded snapshot as complete."""
    import redis

    source = SqliteSource(sqlite_path)
    client = _redis_client(url)
    counts: dict[str, int] = {}
    try:
        client.ping()
        client.delete(f"{prefix}:meta")
        for table, types in source._types.items():
            value_columns, rows = source.rows(table)
            pipe = client.pipeline(transaction=False)
            n = 0
            for row in rows:
                fields = {c: (repr(v) if isinstance(v, float) else v)
                          for c, v in zip(value_columns, row[1:], strict=True) if v is not None}
                name = f"{prefix}:{table}:{row[0]}"
                pipe.delete(name)
                if fields:
                    pipe.hset(name, mapping=fields)
                n += 1
                if n % 5000 == 0:
                    pipe.execute()
                    if progress:
                        progress(table, n)
            pipe.execute()
            counts[table] = n
            client.hset(f"{prefix}:meta", f"types:{table}", json.dumps(types))
        client.hset(f"{prefix}:meta", "version", source.version)
    except redis.RedisError as e:
        raise SourceError(f"cannot load {url}: {e}") from None
    finally:
        client.close()
        source.close()
    return counts
