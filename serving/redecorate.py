"""Re-decoration: a logged, decorated example joined again from another feature-source snapshot
with the gateway's own Decorator, as the gateway would have decorated it from that snapshot.

A logged example is the request's own bytes followed by one fragment per join (see
serving/gateway/decorate.py). Re-decorating takes the joined columns out of those bytes
without re-serializing what stays (`ColumnSplitter` walks the top-level fields and drops the
map entries of joined columns; a field that holds none is kept byte for byte), then appends
the candidate snapshot's fragments. So the same snapshot gives back the logged bytes exactly,
and any difference is the snapshot's.

`Redecorator` also swaps one column at a time (the logged example with only that column taken
from the candidate), which is how the replay attributes a divergence to the columns that
caused it, and tells which entities the candidate lacks that the serving snapshot has.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from tensorflow.core.example import example_pb2

from tandem.serving.gateway.decorate import FILL, Decorator
from tandem.serving.gateway.sources import Join
from tandem.serving.gateway.wire import RequestReader


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _fields(data: bytes, start: int = 0, end: int | None = None):
    """(field number, start of the field, start of its payload, end) of each length-delimited
    field in data[start:end]; other wire types are skipped (a tf.Example has none)."""
    pos, end = start, len(data) if end is None else end
    while pos < end:
        begin = pos
        tag, pos = _varint(data, pos)
        wire = tag & 7
        if wire == 2:
            length, pos = _varint(data, pos)
            yield tag >> 3, begin, pos, pos + length
            pos += length
        elif wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire} in a tf.Example")


def _entry_key(data: bytes, start: int, end: int) -> str | None:
    for number, _, p, q in _fields(data, start, end):
        if number == 1:
            return data[p:q].decode("utf-8", "replace")
    return None


def _split_field(data: bytes, begin: int, p: int, q: int, columns: frozenset[str]
                 ) -> tuple[bytes, dict[str, bytes]]:
    """One top-level Features field's bytes without `columns` (b"" when nothing is left), and
    the map entries taken out."""
    entries: list[bytes] = []
    taken: dict[str, bytes] = {}
    for inner, b, ep, eq in _fields(data, p, q):
        key = _entry_key(data, ep, eq) if inner == 1 else None
        if key is not None and key in columns:
            taken[key] = data[b:eq]
        else:
            entries.append(data[b:eq])
    if not taken:
        return data[begin:q], taken
    payload = b"".join(entries)
    return (b"\n" + _encode_varint(len(payload)) + payload) if entries else b"", taken


class ColumnSplitter:
    """Takes columns out of serialized tf.Examples (module docstring). A field that names none
    of them (by a regex on their names as map keys) is kept untouched; one that does is
    walked once and remembered, since a fragment repeats in every example of its entity."""

    MEMO = 200_000

    def __init__(self, columns):
        self.columns = frozenset(columns)
        self.pattern = names_pattern(self.columns)
        self._memo: dict[bytes, tuple[bytes, dict[str, bytes]]] = {}

    def split(self, data: bytes) -> tuple[bytes, dict[str, bytes]]:
        """(the example's bytes without the columns, {column: its map entry's bytes})."""
        stripped, fields = self.split_fields(data)
        if len(fields) == 1:
            return stripped, self.taken(fields[0])
        taken: dict[str, bytes] = {}
        for field in fields:
            taken.update(self.taken(field))
        return stripped, taken

    def split_fields(self, data: bytes) -> tuple[bytes, tuple[bytes, ...]]:
        """(the example's bytes without the columns, the top-level fields that held any of
        them, in order): each such field's entries are `taken(field)`."""
        pattern, memo = self.pattern, self._memo
        if pattern is None:
            return data, ()  # no column has a name the wire can show
        kept: list[bytes] = []
        fields: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:  # the top-level `features` fields, walked inline
            if data[pos] != 0x0A:
                return self._split_any(data)
            length = data[pos + 1] if pos + 1 < end else 0x80
            p = pos + 2
            if length >= 0x80:
                length, p = _varint(data, pos + 1)
            q = p + length
            if q > end:
                return self._split_any(data)
            field = data[pos:q]
            found = memo.get(field)  # a fragment seen before: no search
            if found is None:
                if pattern.search(data, p, q) is None:
                    kept.append(field)
                    pos = q
                    continue
                found = self._remember(field, _split_field(data, pos, p, q, self.columns))
            kept.append(found[0])
            if found[1]:
                fields.append(field)
            pos = q
        return kept[0] if len(kept) == 1 else b"".join(kept), tuple(fields)

    def taken(self, field: bytes) -> dict[str, bytes]:
        """The entries `split_fields` took out of one of the fields it returned."""
        found = self._memo.get(field)
        if found is None:  # the memo was cleared since
            found = self._remember(field, _split_field(field, 0, *_payload(field),
                                                       self.columns))
        return found[1]

    def _remember(self, field: bytes, found: tuple[bytes, dict[str, bytes]]
                  ) -> tuple[bytes, dict[str, bytes]]:
        if len(self._memo) >= self.MEMO:
            self._memo.clear()
        self._memo[field] = found
        return found

    def _split_any(self, data: bytes) -> tuple[bytes, tuple[bytes, ...]]:
        """`split_fields` for any layout: other field numbers and wire types are kept as they
        are, and bytes that name none of the columns are not walked."""
        if self.pattern.search(data) is None:
            return data, ()
        kept: list[bytes] = []
        fields: list[bytes] = []
        for number, begin, p, q in _fields(data):
            if number != 1 or not self.pattern.search(data, p, q):
                kept.append(data[begin:q])
                continue
            field = data[begin:q]
            found = self._memo.get(field) or self._remember(
                field, _split_field(data, begin, p, q, self.columns))
            kept.append(found[0])
            if found[1]:
                fields.append(field)
        return b"".join(kept), tuple(fields)


def _payload(field: bytes) -> tuple[int, int]:
    """(start, end) of one length-delimited field's payload, the field alone in `field`."""
    _, p = _varint(field, 0)
    length, p = _varint(field, p)
    return p, p + length


def _key_entry(marker: bytes, value: bytes) -> bytes:
    """The map entry's body of a key feature holding one bytes value, from its name and value
    tag (`marker`): the Feature is one bytes_list of one value."""
    values = b"\n" + _encode_varint(len(value)) + value
    feature = b"\n" + _encode_varint(len(values)) + values
    return marker + _encode_varint(len(feature)) + feature


def names_pattern(columns: Sequence[str]) -> re.Pattern | None:
    """A regex finding any of `columns` as a map key on the wire (as decorate.py finds them)."""
    names = [c.encode() for c in sorted(columns) if len(c.encode()) < 128]
    if not names:
        return None
    return re.compile(b"|".join(re.escape(b"\n" + bytes([len(c)]) + c) for c in names))


@dataclasses.dataclass(frozen=True)
class RedecorationSpec:
    """What a replay worker needs to re-decorate (plain values, so Beam can ship it): the
    gateway config's joins as (key, table, columns), the candidate snapshot, the serving one,
    and the defaults for an unknown entity (the gateway's: the schema's and the config's).
    An unknown entity is always filled with them, whatever the gateway's `on_missing`: the
    replay counts it (`Redecorated.missing`) instead of refusing the request."""

    joins: tuple[tuple[str, str, tuple[str, ...]], ...]
    candidate: str
    serving: str
    defaults: dict[str, Any]


@dataclasses.dataclass
class Redecorated:
    """A batch re-decorated: per example its new bytes, the joined columns whose value the
    candidate changed, and whether one of its entities is missing from the candidate though
    the serving snapshot has it (`missing`), or from both (`unknown`)."""

    data: list[bytes]
    changed: list[tuple[str, ...]]
    missing: list[bool]
    unknown: list[bool]


class Redecorator:
    """Opens both snapshots and re-decorates batches of logged examples (module docstring).

    The entity keys are read at the wire, as the gateway reads a request (`RequestReader`,
    serving/gateway/wire.py), from the logged bytes with the joined columns taken out; bytes
    in another layout are parsed with protobuf instead, as the gateway parses them."""

    def __init__(self, spec: RedecorationSpec):
        from tandem.serving.snapshots import open_snapshot

        self.joins = [Join(k, t, tuple(c)) for k, t, c in spec.joins]
        self.candidate = open_snapshot(spec.candidate)
        self.serving = open_snapshot(spec.serving)
        self.columns = [c for j in self.joins for c in j.columns]
        self._split = ColumnSplitter(self.columns)
        # A snapshot does not change under a replay: each entity is looked up once (the
        # decorators' caches never expire) and its fragment's entries split once.
        self._decorator = Decorator(self.joins, self.candidate, FILL, spec.defaults,
                                    cache_s=float("inf"))
        self._serving = Decorator(self.joins, self.serving, FILL, spec.defaults,
                                  cache_s=float("inf"))
        # One decorator per column, joining only that column: for the one-at-a-time swaps.
        self._single = {c: (Decorator([Join(j.key, j.table, (c,))], self.candidate,
                                      FILL, spec.defaults, cache_s=float("inf")),
                            ColumnSplitter([c]))
                        for j in self.joins for c in j.columns}
        # Only the entity keys are read; no schema check (the gateway checked the request).
        self._reader = RequestReader(lambda name, feature: ((), 0), lambda name, value: 0,
                                     cache_entries=1 << 16)
        # A joined column the splitter cannot find by name (128 bytes or longer) stays in the
        # stripped bytes; the Decorator's protobuf path takes it out (its change is not named
        # in `changed`, as names_pattern skips such names).
        self._wire = all(len(c.encode()) < 128 for c in self.columns)
        # Each join key (once), with its name as a map entry's key on the wire, then its
        # value's tag (`_keys`).
        self._markers = {j.key: b"\n" + _encode_varint(len(j.key.encode())) + j.key.encode()
                         + b"\x12" for j in self.joins}
        # (join, a logged fragment, the new one) -> the columns that differ (`_change`); used
        # only when no two joins share a column, so that a fragment's columns name its join.
        self._changes: dict[tuple[int, bytes, bytes], tuple[str, ...] | bool] = {}
        self._disjoint = len(set(self.columns)) == len(self.columns)

    def _decorate(self, decorator: Decorator, stripped: Sequence[bytes]
                  ) -> tuple[list[bytes], Any]:
        """`decorator` on request bytes that carry no joined column: the keys read by
        TensorFlow's example parser for the whole batch when that reads them as the gateway
        does (`_keys`), else read at the wire when every example is in the layout the reader
        walks, else parsed."""
        keys = self._keys(stripped) if self._wire and stripped else None
        if keys is not None:
            return decorator.decorate_keys(keys, stripped)
        rows = [self._reader.read(s) for s in stripped] if self._wire else [None]
        if all(row is not None for row in rows):
            return decorator.decorate_read(rows, stripped)
        return decorator.decorate([example_pb2.Example.FromString(s) for s in stripped],
                                  list(stripped))

    def _keys(self, stripped: Sequence[bytes]) -> dict[str, list[str]] | None:
        """Each join key's value per example, {key: [value, ...]}, from one call of
        tf.io.parse_example over the batch; None, for the gateway's readers to read them,
        unless every key is one entry holding one bytes value in UTF-8 (the parser reads a
        Feature that also holds other lists, or a key named twice, otherwise than protobuf
        may, and a key missing or of another kind is the gateway's readers' to name)."""
        import tensorflow as tf

        spec = {key: tf.io.RaggedFeature(tf.string) for key in self._markers}
        try:
            parsed = tf.io.parse_example(list(stripped), spec)
        except (tf.errors.InvalidArgumentError, ValueError):
            return None
        out: dict[str, list[str]] = {}
        for key, marker in self._markers.items():
            lengths = parsed[key].row_lengths().numpy()
            if len(lengths) != len(stripped) or not (lengths == 1).all():
                return None  # a key missing, or with several values
            values = parsed[key].flat_values.numpy().tolist()
            # The key's one entry on the wire is the plain one for that value (one bytes_list
            # of one value): a Feature holding other lists too reads otherwise in protobuf.
            for data, value in zip(stripped, values, strict=True):
                if data.count(marker) != 1 or _key_entry(marker, value) not in data:
                    return None
            try:
                out[key] = [v.decode() for v in values]
            except UnicodeDecodeError:
                return None
        return out

    def _entries(self, fragment: bytes) -> dict[str, bytes]:
        """A new fragment's entries, by column (the splitter remembers each fragment)."""
        return self._split.split(fragment)[1]

    def redecorate(self, logged: Sequence[bytes]) -> Redecorated:
        split = self._split.split_fields
        stripped, old = zip(*map(split, logged), strict=True) if logged else ((), ())
        data, decoration = self._decorate(self._decorator, stripped)
        unknown_here = set(decoration.unknown)
        known_there: set[int] = set()
        if unknown_here:  # which of them the serving snapshot knows: those are gated
            subset = sorted(unknown_here)
            _, served = self._decorate(self._serving, [stripped[i] for i in subset])
            known_there = {subset[k] for k in range(len(subset)) if k not in served.unknown}
        changed = []
        joins, pairs, change = len(self.joins), self._changes, self._change
        for fields, fragments in zip(old, decoration.fragments, strict=True):
            # The usual layout: one logged fragment per join, in the joins' order, each
            # compared with its new fragment once per (old, new) pair.
            if len(fields) == joins and self._disjoint:
                found = ()
                for j in range(joins):
                    pair = (j, fields[j], fragments[j].data)
                    columns = pairs.get(pair)
                    if columns is None:
                        columns = change(*pair)
                    if columns is False:
                        break
                    found += columns
                else:
                    changed.append(found)
                    continue
            changed.append(self._changed_any(fields, fragments))
        return Redecorated(data, changed, [i in known_there for i in range(len(data))],
                           [i in unknown_here and i not in known_there
                            for i in range(len(data))])

    def _change(self, j: int, field: bytes, fragment: bytes) -> tuple[str, ...] | bool:
        """The columns of join `j` whose entry differs between a logged fragment and the new
        one (remembered); False when the logged fragment holds another join's columns."""
        if len(self._changes) >= ColumnSplitter.MEMO:
            self._changes.clear()
        before, new = self._split.taken(field), self._entries(fragment)
        columns = self.joins[j].columns
        found: tuple[str, ...] | bool = False
        if all(c in columns for c in before):
            found = () if before == new else tuple(c for c in columns
                                                    if before.get(c) != new.get(c))
        self._changes[(j, field, fragment)] = found
        return found

    def _changed_any(self, fields: Sequence[bytes], fragments: Sequence[Any]
                     ) -> tuple[str, ...]:
        """The joined columns whose entry differs, for any layout of the logged fields."""
        before: dict[str, bytes] = {}
        for field in fields:
            before.update(self._split.taken(field))
        new: dict[str, bytes] = {}
        for fragment in fragments:
            new.update(self._entries(fragment.data))
        return () if before == new else tuple(c for c in self.columns
                                              if before.get(c) != new.get(c))

    def swap(self, logged: Sequence[bytes], column: str) -> list[bytes]:
        """The logged examples with only `column` taken from the candidate snapshot."""
        decorator, splitter = self._single[column]
        return self._decorate(decorator, [splitter.split(d)[0] for d in logged])[0]

    def close(self) -> None:
        self.candidate.close()
        self.serving.close()


def open_redecorator(spec: RedecorationSpec) -> Redecorator:
    """The factory a replay worker calls in its setup() (a module-level name Beam pickles)."""
    return Redecorator(spec)
