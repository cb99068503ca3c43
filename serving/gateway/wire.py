"""Gateway: request examples read at the wire, without a tf.Example per request example.

Why: with the protobuf stack TensorFlow pins (3.20, C++ messages built by reflection), parsing
a small tf.Example and then reading its feature map from Python costs ~15 µs per example, most
of the gateway's time at batch 64. What the gateway needs of a request example is little: per
feature, its name, its verdict against the schema, and (for entity keys and the request id)
its first bytes value. Each of those depends only on the bytes of one map entry
(`features.feature[name]` on the wire), and most entries repeat across requests (an hour, a
device, a country), so each distinct entry is parsed and checked once and cached; a request
example costs a walk over its entries and a dictionary lookup each.

Only the layout every tf.Example serializer writes is walked: one `features` field of map
entries, each a key then a value. Anything else (unknown fields, a repeated `features`, bytes
that are not a tf.Example) makes `read` answer None, and the caller takes the full protobuf
path, which answers exactly as before (including the error for bytes that are not a tf.Example).
A duplicate key keeps the last entry, as protobuf's map parsing does.
"""

from __future__ import annotations

from typing import NamedTuple

from tensorflow.core.example import feature_pb2

_TAG_FEATURES = 0x0A  # Example.features, Features.feature (map entry), MapEntry.key
_TAG_VALUE = 0x12  # MapEntry.value


class Entry(NamedTuple):
    """One feature of a request example, as the gateway uses it."""

    name: str
    violations: tuple[str, ...]  # against the validator's schema
    required: int  # 1 when the schema requires the feature
    kind: str | None  # the Feature oneof that is set ("bytes_list", ...), None if none
    first: bytes | None  # the first bytes_list value (entity keys, the request id)


def _varint(data: bytes, p: int) -> tuple[int, int]:
    """(value, position after it); IndexError when the bytes end inside it."""
    b = data[p]
    if b < 0x80:
        return b, p + 1
    value, shift = b & 0x7F, 7
    while True:
        p += 1
        b = data[p]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, p + 1
        shift += 7


class RequestReader:
    """Reads serialized request examples into {feature name: Entry} (see the module docstring).

    `verdict(name, feature)` is the validator's check of one feature: (violations, required);
    `single_bytes(name, value)` is `required` when the check passes the feature holding just
    that bytes value, else None (then `verdict` decides).
    Entries of `uncached` features (the request id: a new value per example) are read each
    time rather than filling the cache. Not thread-safe for writers, and needs not be: a
    lost or repeated cache insert only costs a second parse."""

    def __init__(self, verdict, single_bytes, uncached: frozenset[str] = frozenset(),
                 cache_entries: int = 1 << 16):
        self._verdict, self._single_bytes, self._uncached = verdict, single_bytes, uncached
        self._cache: dict[bytes, Entry] = {}
        self.cache_entries = cache_entries

    def _entry(self, body: bytes) -> Entry | None:
        """A map entry's body (key, then value) as an Entry; None for another layout.

        A value that is one short bytes value (an id, a key) is read from its bytes and, when
        the schema's fast check passes it, needs no Feature message."""
        n = len(body)
        if n > 6 and body[0] == _TAG_FEATURES and body[1] < 0x80:
            p = 2 + body[1]
            if p + 6 <= n < p + 0x82 and body[p] == _TAG_VALUE and body[p + 1] == n - p - 2 and \
                    body[p + 2] == _TAG_FEATURES and body[p + 3] == n - p - 4 and \
                    body[p + 4] == _TAG_FEATURES and body[p + 5] == n - p - 6:
                try:
                    name = body[2:2 + body[1]].decode()
                except UnicodeDecodeError:
                    return None
                value = body[p + 6:]
                verdict = self._single_bytes(name, value)
                if verdict is not None:
                    return Entry(name, (), verdict, "bytes_list", value)
        if not body or body[0] != _TAG_FEATURES:
            return None
        n, p = _varint(body, 1)
        key, p = body[p:p + n], p + n
        if p > len(body):
            return None
        value = b""
        if p < len(body):
            if body[p] != _TAG_VALUE:
                return None
            n, p = _varint(body, p + 1)
            if p + n != len(body):
                return None
            value = body[p:]
        try:
            name = key.decode()  # a map key is a proto3 string: UTF-8, as protobuf checks
            feature = feature_pb2.Feature.FromString(value)
        except Exception:  # noqa: BLE001 - DecodeError, UnicodeDecodeError: the full path says
            return None
        kind = feature.WhichOneof("kind")
        first = None
        if kind == "bytes_list" and feature.bytes_list.value:
            first = feature.bytes_list.value[0]
        violations, required = self._verdict(name, feature)
        return Entry(name, tuple(violations), required, kind, first)

    def read(self, data: bytes) -> dict[str, Entry] | None:
        """The example's features by name; None when the bytes are not in the layout this
        reader walks (the caller parses them with protobuf instead)."""
        try:
            end = len(data)
            if not end:
                return {}
            if data[0] != _TAG_FEATURES:
                return None
            n, p = _varint(data, 1)
            if p + n != end:
                return None
            cache, out = self._cache, {}
            while p < end:
                if data[p] != _TAG_FEATURES:
                    return None
                n = data[p + 1]
                if n < 0x80:
                    start = p + 2
                else:
                    n, start = _varint(data, p + 1)
                stop = start + n
                if stop > end:
                    return None
                raw = data[p:stop]
                entry = cache.get(raw)
                if entry is None:
                    entry = self._entry(data[start:stop])
                    if entry is None:
                        return None
                    if entry.name not in self._uncached:
                        if len(cache) >= self.cache_entries:
                            cache.clear()
                        cache[raw] = entry
                out[entry.name] = entry
                p = stop
            return out
        except IndexError:
            return None
