"""Reading TFDV statistics protos: a feature's name and its common statistics, the two rules
every reader of statistics (the monitor, the reports, the identifier rule) shares."""

from __future__ import annotations


def feature_name(feature) -> str:
    """A FeatureNameStatistics' name (its path's first step, or the legacy name)."""
    return feature.path.step[0] if feature.path.step else feature.name


def common_stats(feature):
    """The CommonStatistics of a feature, whatever kind of statistics it carries."""
    for kind in ("num_stats", "string_stats", "bytes_stats", "struct_stats"):
        if feature.HasField(kind):
            return getattr(feature, kind).common_stats
    return feature.num_stats.common_stats  # none set: an empty CommonStatistics
