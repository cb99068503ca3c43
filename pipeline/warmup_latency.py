"""`tandem score`, Monitoring 6: is the newest model version slower than the previous one?

The model server measures each version's warmup latency once, as the version loads. Two such
numbers are taken minutes apart, and on a shared machine the load between them moves a
sub-millisecond median by more than any model change would (1.6x between two loads of the same
model on a busy 2-core machine). So this check measures the two versions itself, as the server
does (`Servable.warm_up`: every warmup request one at a time, the median), but in interleaved
rounds, A B B A A B ..., so both see the same machine. Each round gives one ratio B / A; the
verdict is on their median, and the spread of the ratios from round to round says how much of
it is the machine:

    slower  when the median ratio exceeds the spread allows (two standard errors of the median
            of the log ratios, from their median absolute deviation) and is above the limit
            (`score.max_latency_regression`), the smallest slowdown worth a failure.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

ROUNDS = 10


@dataclasses.dataclass(frozen=True)
class LatencyComparison:
    """Two versions' warmup medians over interleaved rounds, and what they say."""

    old: int
    new: int
    requests: int  # warmup requests per version per round
    old_ms: tuple[float, ...]  # per round
    new_ms: tuple[float, ...]

    @property
    def log_ratios(self) -> np.ndarray:
        return np.log(np.array(self.new_ms) / np.array(self.old_ms))

    @property
    def ratio(self) -> float:
        """The median over rounds of new / old."""
        return float(math.exp(np.median(self.log_ratios)))

    @property
    def noise(self) -> float:
        """How far from 1 the median ratio can lie when the versions are equal: two standard
        errors of the median log ratio (1.2533 x the robust sigma, 1.4826 x MAD, over
        sqrt(rounds)), as a factor."""
        logs = self.log_ratios
        sigma = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
        return float(math.exp(2 * 1.2533 * sigma / math.sqrt(len(logs))))

    def slower(self, limit: float) -> bool:
        return self.ratio > self.noise and self.ratio > limit

    def line(self, limit: float) -> str:
        return (f"version {self.new} vs {self.old} in {len(self.new_ms)} interleaved rounds of "
                f"{self.requests} warmup requests: median latency "
                f"{np.median(self.new_ms):.3f} vs {np.median(self.old_ms):.3f} ms, "
                f"{self.ratio:.2f}x (round-to-round noise {self.noise:.2f}x; slower only "
                f"beyond it and above {limit:g}x)")


def versions(push_dir: str) -> list[int]:
    """The version directories under a model's push directory that a server could load."""
    if not os.path.isdir(push_dir):
        return []
    return sorted(int(v) for v in os.listdir(push_dir) if v.isdigit()
                  and os.path.isfile(os.path.join(push_dir, v, "saved_model.pb")))


def compare(push_dir: str, model_name: str, old: int, new: int,
            rounds: int = ROUNDS) -> LatencyComparison | None:
    """Replay both versions' warmup requests in interleaved rounds; None when one of them
    has no warmup requests to replay."""
    from tandem.serving.model_server.servable import Servable

    loaded = {v: Servable(model_name, v, os.path.join(push_dir, str(v))) for v in (old, new)}
    counts = {v: s.warm_up() for v, s in loaded.items()}  # traces the graphs: not counted
    if not all(counts.values()):
        return None
    medians: dict[int, list[float]] = {old: [], new: []}
    for r in range(rounds):
        # A B, then B A: a machine that gets busier or quieter during a round favours
        # neither version.
        for v in (old, new) if r % 2 == 0 else (new, old):
            loaded[v].warm_up()
            medians[v].append(loaded[v].warmup_stats["latency_seconds"] * 1000)
    return LatencyComparison(old, new, min(counts.values()), tuple(medians[old]),
                             tuple(medians[new]))
