"""Data sources: synthetic music-streaming listening sessions ("will the user skip this track?").

The generator streams: feature-source tables are bounded in size, events are made in fixed
chunks and written as they are made, so memory does not grow with the number of rows.

The label rule (documented in README.md, "The listening dataset"):

    logit = -0.9
          + context  {playlist 0, album -1.2, radio +0.8, search -1.6}
          + shuffle * 0.4
          + account  {free +0.5, premium -0.2, family 0, student +0.1}
          + device   {mobile +0.2, desktop 0, tablet +0.1, smart_speaker -0.3, car -0.5}
          - 0.035 * (popularity - 50)
          + 0.006 * (clip(duration_s, 60, 600) - 210)
          + 1.4 if the genre is one the user's age group dislikes
                (under 30: jazz/classical/country; over 50: hip_hop/electronic/metal)
          - 0.3 if 0 <= hour_of_day < 6
          + a per-user skip tendency ~ N(0, 0.4) that no feature reveals (irreducible noise)
    skipped ~ Bernoulli(sigmoid(logit))

The skip rate is about 44%; the true probability ranks examples with an AUC of about 0.80,
so a good model lands between 0.75 and 0.80 and a constant model at 0.5.

One module past 400 lines because the documented label rule, the tables it draws from and
the writers that stream them are one generator, kept together so rule and code cannot part.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from tandem.schemas.exit_status import BadInputError
from tandem.serving.gateway.sources import file_fingerprint

CHUNK_ROWS = 10_000
ROWS_PER_SHARD = 250_000

COUNTRIES = ["US", "GB", "DE", "FR", "BR", "MX", "SE", "JP", "IN", "CA", "AU", "ES"]
COUNTRY_WEIGHTS = [0.24, 0.1, 0.1, 0.08, 0.1, 0.07, 0.04, 0.06, 0.09, 0.05, 0.03, 0.04]
ACCOUNT_TYPES = ["free", "premium", "family", "student"]
ACCOUNT_WEIGHTS = [0.45, 0.3, 0.15, 0.1]
GENRES = [
    "pop", "rock", "hip_hop", "electronic", "jazz", "classical",
    "country", "latin", "metal", "indie", "rnb", "soul",
]
DEVICES = ["mobile", "desktop", "tablet", "smart_speaker", "car"]
DEVICE_WEIGHTS = [0.55, 0.2, 0.08, 0.1, 0.07]
CONTEXTS = ["playlist", "album", "radio", "search"]
CONTEXT_WEIGHTS = [0.45, 0.2, 0.2, 0.15]

CONTEXT_EFFECT = np.array([0.0, -1.2, 0.8, -1.6])
ACCOUNT_EFFECT = np.array([0.5, -0.2, 0.0, 0.1])
DEVICE_EFFECT = np.array([0.2, 0.0, 0.1, -0.3, -0.5, 0.0])  # last slot: drift device
YOUNG_DISLIKES = {GENRES.index(g) for g in ("jazz", "classical", "country")}
OLD_DISLIKES = {GENRES.index(g) for g in ("hip_hop", "electronic", "metal")}

AGE_MIN, AGE_MAX = 16, 80
LABEL = "skipped"

# Drift profiles: what each one changes, so later stages can prove they detect it.
DRIFT_PROFILES: dict[str, str] = {
    "age_shift": "user ages shift about 18 years older, still inside 16-80 "
    "(a distribution change: drift, no schema rule broken)",
    "new_country": "8% of users come from a country the schema does not know ('NG')",
    "new_device": "10% of requests come from a device type the schema does not know ('smart_tv')",
    "impossible_values": "3% of users have a negative age and 3% of tracks have duration_s = 0",
    "missing_features": "10% of requests lack 'device' and 10% of tracks lack 'popularity'",
    "night_owls": "every request arrives between midnight and 6am (hour_of_day 0-5, inside "
    "the schema's domain; skips follow the documented rule for those hours)",
    "skip_rate": "every logit is raised by 1.0, so the skip rate jumps by about 20 points "
    "(label drift, no schema rule broken)",
}
NEW_COUNTRY = "NG"
NEW_DEVICE = "smart_tv"


class GeneratorError(BadInputError):
    """Raised for arguments the generator cannot honour."""


def parse_drift(spec: str | None) -> frozenset[str]:
    """Parse a comma-separated list of drift profile names."""
    if not spec:
        return frozenset()
    names = frozenset(s.strip() for s in spec.split(",") if s.strip())
    unknown = sorted(names - DRIFT_PROFILES.keys())
    if unknown:
        raise GeneratorError(
            f"unknown drift profile(s) {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(DRIFT_PROFILES))}"
        )
    return names


@dataclasses.dataclass(frozen=True)
class Users:
    age: np.ndarray
    country: np.ndarray  # index into countries
    account_type: np.ndarray
    signup_days: np.ndarray
    skip_tendency: np.ndarray
    countries: list[str]

    def __len__(self) -> int:
        return len(self.age)


@dataclasses.dataclass(frozen=True)
class Tracks:
    genre: np.ndarray
    duration_s: np.ndarray
    popularity: np.ndarray
    release_year: np.ndarray
    popularity_present: np.ndarray

    def __len__(self) -> int:
        return len(self.genre)


def make_users(n: int, rng: np.random.Generator, drift: frozenset[str]) -> Users:
    """The users feature source: a bounded table, independent of the event count. Every
    attribute is drawn before any drift profile draws, so a profile changes only what it
    documents (the same seed gives the same users otherwise)."""
    age = np.clip(np.round(rng.gamma(4.0, 5.0, n) + 14), AGE_MIN, AGE_MAX).astype(np.int64)
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_WEIGHTS)
    account_type = rng.choice(len(ACCOUNT_TYPES), n, p=ACCOUNT_WEIGHTS)
    signup_days = rng.integers(0, 3650, n)
    skip_tendency = rng.normal(0.0, 0.4, n)
    countries = list(COUNTRIES)
    if "age_shift" in drift:
        age = np.clip(age + 18, AGE_MIN, AGE_MAX)
    if "new_country" in drift:
        countries.append(NEW_COUNTRY)
        country = np.where(rng.random(n) < 0.08, len(COUNTRIES), country)
    if "impossible_values" in drift:
        bad = rng.random(n) < 0.03
        age = np.where(bad, -rng.integers(1, 6, n), age)
    return Users(age=age, country=country, account_type=account_type,
                 signup_days=signup_days, skip_tendency=skip_tendency, countries=countries)


def make_tracks(n: int, rng: np.random.Generator, drift: frozenset[str]) -> Tracks:
    """The tracks feature source: a bounded table, independent of the event count; drift
    profiles draw after every attribute, as for users."""
    duration = np.round(np.clip(rng.lognormal(math.log(215), 0.3, n), 60, 600), 1)
    genre = rng.integers(0, len(GENRES), n)
    popularity = np.round(rng.beta(2.0, 3.0, n) * 100, 1)
    release_year = np.clip(np.round(2024 - rng.exponential(10.0, n)), 1960, 2025).astype(
        np.int64)
    if "impossible_values" in drift:
        duration = np.where(rng.random(n) < 0.03, 0.0, duration)
    present = np.ones(n, dtype=bool)
    if "missing_features" in drift:
        present = rng.random(n) >= 0.10
    return Tracks(genre=genre, duration_s=duration, popularity=popularity,
                  release_year=release_year, popularity_present=present)


def skip_logit(
    users: Users, tracks: Tracks, user: np.ndarray, track: np.ndarray, events: dict
) -> np.ndarray:
    """The documented label rule (see module docstring)."""
    age = users.age[user]
    genre = tracks.genre[track]
    young_dislike = (age < 30) & np.isin(genre, list(YOUNG_DISLIKES))
    old_dislike = (age > 50) & np.isin(genre, list(OLD_DISLIKES))
    return (
        -0.9
        + CONTEXT_EFFECT[events["context"]]
        + 0.4 * events["shuffle"]
        + ACCOUNT_EFFECT[users.account_type[user]]
        + DEVICE_EFFECT[events["device"]]
        - 0.035 * (tracks.popularity[track] - 50.0)
        + 0.006 * (np.clip(tracks.duration_s[track], 60, 600) - 210.0)
        + 1.4 * (young_dislike | old_dislike)
        - 0.3 * (events["hour_of_day"] < 6)
        + users.skip_tendency[user]
    )


def table_sizes(rows: int) -> tuple[int, int]:
    """Users and tracks table sizes: they grow with the data but stay bounded."""
    return min(max(rows // 20, 500), 50_000), min(max(rows // 10, 500), 100_000)


@dataclasses.dataclass
class Chunk:
    """One chunk of decorated events, column-wise."""

    columns: dict[str, np.ndarray]
    present: dict[str, np.ndarray]  # per optional column: which rows carry it
    probability: np.ndarray

    def __len__(self) -> int:
        return len(self.probability)


def generate_chunks(
    rows: int, seed: int = 0, drift: frozenset[str] = frozenset(), span: int = 1,
    source_rows: int | None = None,
) -> Iterator[Chunk]:
    """Yield decorated events in chunks; deterministic for (rows, seed, drift, span,
    source_rows). The users and tracks tables are sized for `source_rows` (default `rows`):
    requests meant for a gateway must be drawn from the tables it joins them with."""
    n_users, n_tracks = table_sizes(source_rows or rows)
    users = make_users(n_users, np.random.default_rng([seed, 1]), drift)
    tracks = make_tracks(n_tracks, np.random.default_rng([seed, 2]), drift)
    devices = DEVICES + ([NEW_DEVICE] if "new_device" in drift else [])
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        rng = np.random.default_rng([seed, 3, span, start // CHUNK_ROWS])
        user = rng.integers(0, n_users, n)
        # Popular tracks are requested more often.
        track = np.minimum((rng.pareto(1.2, n) * n_tracks / 20).astype(np.int64), n_tracks - 1)
        events = {
            "hour_of_day": rng.integers(0, 24, n),
            "day_of_week": rng.integers(0, 7, n),
            "device": rng.choice(len(DEVICES), n, p=DEVICE_WEIGHTS),
            "context": rng.choice(len(CONTEXTS), n, p=CONTEXT_WEIGHTS),
            "shuffle": (rng.random(n) < 0.35).astype(np.int64),
        }
        if "new_device" in drift:
            events["device"] = np.where(rng.random(n) < 0.10, len(DEVICES), events["device"])
        if "night_owls" in drift:
            events["hour_of_day"] = rng.integers(0, 6, n)
        logit = skip_logit(users, tracks, user, track, events)
        if "skip_rate" in drift:
            logit = logit + 1.0
        probability = 1.0 / (1.0 + np.exp(-logit))
        label = (rng.random(n) < probability).astype(np.int64)
        index = np.arange(start, start + n)
        columns = {
            "request_id": np.array([f"s{seed}-{span}-{i:09d}" for i in index]),
            "user_id": np.array([f"u{u:06d}" for u in user]),
            "track_id": np.array([f"t{t:06d}" for t in track]),
            "hour_of_day": events["hour_of_day"],
            "day_of_week": events["day_of_week"],
            "device": np.array(devices)[events["device"]],
            "context": np.array(CONTEXTS)[events["context"]],
            "shuffle": events["shuffle"],
            "age": users.age[user],
            "country": np.array(users.countries)[users.country[user]],
            "account_type": np.array(ACCOUNT_TYPES)[users.account_type[user]],
            "signup_days": users.signup_days[user],
            "genre": np.array(GENRES)[tracks.genre[track]],
            "duration_s": tracks.duration_s[track],
            "popularity": tracks.popularity[track],
            "release_year": tracks.release_year[track],
            LABEL: label,
        }
        present = {"popularity": tracks.popularity_present[track]}
        if "missing_features" in drift:
            present["device"] = rng.random(n) >= 0.10
        yield Chunk(columns=columns, present=present, probability=probability)


FEATURE_ORDER = [
    "request_id", "user_id", "track_id", "hour_of_day", "day_of_week", "device", "context",
    "shuffle", "age", "country", "account_type", "signup_days", "genre", "duration_s",
    "popularity", "release_year", LABEL,
]


REQUEST_FEATURES = [
    "request_id", "user_id", "track_id", "hour_of_day", "day_of_week", "device", "context",
    "shuffle",
]
# How requests are decorated: entity key feature -> table -> columns. The gateway's config
# (deploy/gateway/listening.yaml) names the same joins.
JOINS = (
    ("user_id", "users", ("age", "country", "account_type", "signup_days")),
    ("track_id", "tracks", ("genre", "duration_s", "popularity", "release_year")),
)


def joins():
    from tandem.serving.gateway.sources import Join

    return [Join(key, table, columns) for key, table, columns in JOINS]


def _example_bytes(chunk: Chunk, decorator, requests_only: bool = False) -> Iterator[bytes]:
    """The chunk's training examples: each request example, decorated by the gateway's own
    join (tandem.serving.gateway.decorate), then its label. With `requests_only`, what a client
    sends: keys and request-time features, undecorated, no label."""
    from tensorflow.core.example import example_pb2

    cols = [(name, chunk.columns[name], chunk.present.get(name)) for name in REQUEST_FEATURES]
    kinds = {name: values.dtype.kind for name, values, _ in cols}
    lists = {name: values.tolist() for name, values, _ in cols}
    present = {name: p.tolist() for name, _, p in cols if p is not None}
    examples = []
    for i in range(len(chunk)):
        example = example_pb2.Example()
        feature = example.features.feature
        for name, _, _ in cols:
            if name in present and not present[name][i]:
                continue
            kind = kinds[name]
            if kind == "U":
                feature[name].bytes_list.value.append(lists[name][i].encode())
            elif kind == "f":
                feature[name].float_list.value.append(lists[name][i])
            else:
                feature[name].int64_list.value.append(lists[name][i])
        examples.append(example)
    if requests_only:
        for example in examples:
            yield example.SerializeToString()
        return
    decorated, _ = decorator.decorate(examples)
    for data, label in zip(decorated, chunk.columns[LABEL].tolist(), strict=True):
        yield data + label_fragment(label)


def _labels_writer(span_dir: str, kind: str | None, delay_s: float, loss: float, rate: float,
                   start: float, seed: int, span: int):
    """(write(chunk, offset), close() -> count, path) for the late-labels file, or no-ops."""
    if kind is None:
        return None, (lambda: 0), None
    rng = np.random.default_rng([seed, 7, span])
    count = [0]
    if kind == "csv":
        path = os.path.join(span_dir, "labels.csv")
        handle = open(path, "w", newline="")
        out = csv.writer(handle)
        out.writerow(["request_id", "label", "timestamp"])

        def emit(rid: str, label: int, ts: float) -> None:
            out.writerow([rid, label, f"{ts:.3f}"])

        def close() -> int:
            handle.close()
            return count[0]
    else:
        import tensorflow as tf
        from tensorflow.core.example import example_pb2

        path = os.path.join(span_dir, "labels.tfrecord.gz")
        writer = tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(
            compression_type="GZIP"))

        def emit(rid: str, label: int, ts: float) -> None:
            e = example_pb2.Example()
            e.features.feature["request_id"].bytes_list.value.append(rid.encode())
            e.features.feature["label"].int64_list.value.append(label)
            # int64 seconds: a float32 (tf.Example's float) keeps only ~2 minutes of
            # resolution at today's epoch seconds.
            e.features.feature["timestamp"].int64_list.value.append(int(round(ts)))
            writer.write(e.SerializeToString())

        def close() -> int:
            writer.close()
            return count[0]

    def write(chunk: Chunk, offset: int) -> None:
        n = len(chunk)
        sent = start + (offset + np.arange(n)) / rate
        arrives = sent + (rng.exponential(delay_s, n) if delay_s > 0 else np.zeros(n))
        kept = rng.random(n) >= loss
        for rid, label, ts, keep in zip(chunk.columns["request_id"].tolist(),
                                        chunk.columns[LABEL].tolist(), arrives.tolist(),
                                        kept.tolist(), strict=True):
            if keep:
                emit(rid, label, ts)
                count[0] += 1

    return write, close, path


def label_fragment(label: int) -> bytes:
    """The label as a tf.Example of its own, appended to a decorated example (protobuf merges
    concatenated messages), so a training row is exactly the served example plus its label."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature[LABEL].int64_list.value.append(label)
    return example.SerializeToString()


def _csv_rows(chunk: Chunk) -> Iterator[list[Any]]:
    lists = [chunk.columns[name].tolist() for name in FEATURE_ORDER]
    present = [
        chunk.present[name].tolist() if name in chunk.present else None for name in FEATURE_ORDER
    ]
    for i in range(len(chunk)):
        yield [
            "" if (p is not None and not p[i]) else values[i] for values, p in zip(lists, present, strict=False)
        ]


def write_feature_sources(path: str, seed: int, rows: int, drift: frozenset[str]) -> None:
    """Write the users and tracks tables the gateway joins requests with (sized for `rows`)."""
    n_users, n_tracks = table_sizes(rows)
    users = make_users(n_users, np.random.default_rng([seed, 1]), drift)
    tracks = make_tracks(n_tracks, np.random.default_rng([seed, 2]), drift)
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    con = sqlite3.connect(tmp)
    with con:
        con.execute(
            "CREATE TABLE users (user_id TEXT PRIMARY KEY, age INTEGER, country TEXT, "
            "account_type TEXT, signup_days INTEGER)"
        )
        con.executemany(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
            (
                (f"u{i:06d}", int(users.age[i]), users.countries[users.country[i]],
                 ACCOUNT_TYPES[users.account_type[i]], int(users.signup_days[i]))
                for i in range(n_users)
            ),
        )
        con.execute(
            "CREATE TABLE tracks (track_id TEXT PRIMARY KEY, genre TEXT, duration_s REAL, "
            "popularity REAL, release_year INTEGER)"
        )
        con.executemany(
            "INSERT INTO tracks VALUES (?, ?, ?, ?, ?)",
            (
                (f"t{i:06d}", GENRES[tracks.genre[i]], float(tracks.duration_s[i]),
                 float(tracks.popularity[i]) if tracks.popularity_present[i] else None,
                 int(tracks.release_year[i]))
                for i in range(n_tracks)
            ),
        )
    con.close()
    os.replace(tmp, path)


def shard_count(rows: int) -> int:
    return max(1, math.ceil(rows / ROWS_PER_SHARD))


def generate(
    out_dir: str,
    rows: int,
    seed: int = 0,
    drift: frozenset[str] = frozenset(),
    span: int = 1,
    formats: tuple[str, ...] = ("tfrecord",),
    progress=None,
    requests: bool = False,
    labels: str | None = None,
    label_delay_s: float = 0.0,
    label_loss: float = 0.0,
    rate: float = 100.0,
    start_time: float | None = None,
    source_rows: int | None = None,
) -> dict:
    """Write `rows` decorated examples under out_dir/span-<span>/ and the feature sources.

    `source_rows` sizes the users and tracks tables as for that many rows (default `rows`):
    requests sent to a gateway that joins them with the tables of an earlier, larger span
    must come from the same users and tracks, or their labels follow attributes the gateway
    never sees.

    With `requests`, the examples are what a client sends (keys and request-time features, no
    decoration, no label). With `labels` ("csv" or "tfrecord"), the requests' labels are also
    written as `request_id,label,timestamp` (labels.csv or labels.tfrecord.gz): request i is
    taken as sent at start_time + i / rate, its label arrives an exponential delay of mean
    `label_delay_s` later, and a share `label_loss` of labels never arrives.

    Returns the manifest that is also written to out_dir/span-<span>/manifest.json.
    """
    if rows <= 0:
        raise GeneratorError(f"--rows must be a positive integer, got {rows}")
    if span < 0:
        raise GeneratorError(f"--span must be >= 0, got {span}")
    unknown = set(formats) - {"tfrecord", "csv"}
    if unknown or not formats:
        raise GeneratorError(f"unknown format(s) {sorted(unknown)}; use tfrecord and/or csv")
    if labels not in (None, "csv", "tfrecord"):
        raise GeneratorError(f"--label-format must be csv or tfrecord, got {labels!r}")
    if not 0.0 <= label_loss < 1.0:
        raise GeneratorError(f"--label-loss must be in [0, 1), got {label_loss}")
    if label_delay_s < 0 or rate <= 0:
        raise GeneratorError("--label-delay must be >= 0 and --rate > 0")
    if requests and "csv" in formats:
        raise GeneratorError("--requests writes tf.Examples: use --format tfrecord")
    span_dir = os.path.join(out_dir, f"span-{span}")
    os.makedirs(span_dir, exist_ok=True)
    sources_path = os.path.join(out_dir, "features.sqlite")
    write_feature_sources(sources_path, seed, source_rows or rows, drift)
    source = decorator = None
    if "tfrecord" in formats:
        from tandem.serving.gateway.decorate import Decorator
        from tandem.serving.gateway.sources import SqliteSource

        source = SqliteSource(sources_path)
        decorator = Decorator(joins(), source, cache_s=float("inf"))

    label_writer, close_labels, label_path = _labels_writer(
        span_dir, labels, label_delay_s, label_loss, rate,
        time.time() if start_time is None else start_time, seed, span)
    shards = shard_count(rows)
    per_shard = math.ceil(rows / shards)
    writers: dict[str, Any] = {}
    files: list[str] = []
    written = positives = 0
    shard = -1

    def open_shard(index: int) -> None:
        close_shard()
        stem = os.path.join(span_dir, f"data-{index:05d}-of-{shards:05d}")
        if "tfrecord" in formats:
            import tensorflow as tf

            writers["tfrecord"] = tf.io.TFRecordWriter(
                stem + ".tfrecord.gz", options=tf.io.TFRecordOptions(compression_type="GZIP")
            )
            files.append(stem + ".tfrecord.gz")
        if "csv" in formats:
            handle = open(stem + ".csv", "w", newline="")
            writer = csv.writer(handle)
            writer.writerow(FEATURE_ORDER)
            writers["csv"] = (handle, writer)
            files.append(stem + ".csv")

    def close_shard() -> None:
        if "tfrecord" in writers:
            writers.pop("tfrecord").close()
        if "csv" in writers:
            writers.pop("csv")[0].close()

    for chunk in generate_chunks(rows, seed, drift, span, source_rows):
        # A chunk never straddles shards when per_shard is a multiple of CHUNK_ROWS;
        # otherwise rows go to the shard their index falls in.
        offsets = np.arange(written, written + len(chunk)) // per_shard
        records = _example_bytes(chunk, decorator, requests) if "tfrecord" in formats \
            else None
        if label_writer is not None:
            label_writer(chunk, written)
        csv_rows = _csv_rows(chunk) if "csv" in formats else None
        for target in offsets.tolist():
            if target != shard:
                shard = target
                open_shard(shard)
            if records is not None:
                writers["tfrecord"].write(next(records))
            if csv_rows is not None:
                writers["csv"][1].writerow(next(csv_rows))
        written += len(chunk)
        positives += int(chunk.columns[LABEL].sum())
        if progress is not None:
            progress(written, rows)
    close_shard()
    written_labels = close_labels()
    version = None
    if source is not None:
        version = source.version
        source.close()

    manifest = {
        "dataset": "listening",
        "rows": written,
        "seed": seed,
        "span": span,
        "drift": sorted(drift),
        "skip_rate": round(positives / written, 4),
        "files": [os.path.basename(f) for f in files],
        "feature_sources": sources_path,
        "feature_sources_version": version or file_fingerprint(sources_path),
        "requests_only": requests,
    }
    if label_path:
        manifest["labels"] = {"file": os.path.basename(label_path), "written": written_labels,
                              "delay_s": label_delay_s, "loss": label_loss, "rate": rate}
    with open(os.path.join(span_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest
