"""Identifier features: declared once, in the curated schema, and read by every stage that
judges distributions (`tandem monitor`, the statistics report, schema proposals).

An identifier (a request, user or track id) names an example; it is not a signal. Its values
are new in every dataset by design, so a distribution test on it always "finds" a change.
Identifiers are described (how many carry one, how many are unique) and never judged for
drift or skew.

The declaration is a Feature annotation of the tensorflow_metadata Schema, which TFDV keeps
and ignores:

    feature { name: "request_id" type: BYTES annotation { tag: "identifier" } ... }

It lives in the schema rather than the pipeline config because it is a fact about the data,
reviewed with its other contracts, and the schema is what every reader already has: the
monitor and its TFX component (as an artifact), the run's report, the gateway. A string
feature the schema does not declare is still treated as one when nearly every example holds
its own value (the default below), so an undeclared id never raises a drift alarm.
"""

from __future__ import annotations

from collections.abc import Iterable

from tandem.schemas.statistics import feature_name

TAG = "identifier"
# A string feature with at least this many unique values per example carrying it, in every
# dataset of at least MIN_EXAMPLES such examples, is an identifier.
UNIQUE_SHARE = 0.95
MIN_EXAMPLES = 100


def declared_identifiers(schema) -> list[str]:
    """The features the schema declares identifiers (`annotation { tag: "identifier" }`)."""
    if schema is None:
        return []
    return [f.name for f in schema.feature if TAG in f.annotation.tag]


def declare_identifiers(schema, names: Iterable[str]) -> None:
    """Mark these features of `schema` as identifiers (in place)."""
    wanted = set(names)
    for feature in schema.feature:
        if feature.name in wanted and TAG not in feature.annotation.tag:
            feature.annotation.tag.append(TAG)


def unique_share(feature) -> float | None:
    """Unique values per example carrying a string feature; None for other features and
    for fewer than MIN_EXAMPLES examples (too few to tell)."""
    if not feature.HasField("string_stats"):
        return None
    present = feature.string_stats.common_stats.num_non_missing
    if present < MIN_EXAMPLES:
        return None
    return feature.string_stats.unique / present


def identifiers(schema, datasets: Iterable = ()) -> dict[str, str]:
    """Every identifier, with why: declared in `schema`, or a string feature unique in at
    least UNIQUE_SHARE of its examples in every one of `datasets` (DatasetFeatureStatistics)
    that holds enough of it."""
    found = {name: "declared in the schema" for name in declared_identifiers(schema)}
    shares: dict[str, list[float | None]] = {}
    for dataset in datasets:
        for feature in dataset.features:
            shares.setdefault(feature_name(feature), []).append(unique_share(feature))
    for name, values in sorted(shares.items()):
        known = [v for v in values if v is not None]
        if name not in found and known and min(known) >= UNIQUE_SHARE:
            found[name] = f"unique in {min(known):.0%} of its examples"
    return found
