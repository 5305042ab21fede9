"""Accuracy against compute: per pipeline and budget point, the mean over seeds with its 95%
confidence interval, and whether each method learns."""

from __future__ import annotations

from dataclasses import dataclass

from ptbench.comparison.trials import TrialResult
from ptbench.reports.stats import mean_interval

CURVE_METRICS = ("id_accuracy", "ood_accuracy")


@dataclass(frozen=True)
class CurvePoint:
    budget: float
    metric: str
    mean: float
    low: float | None
    high: float | None
    n: int
    flops: float | None = None
    """Mean FLOPs actually spent at the eval (the first step at or past the budget)."""


def curve(results: list[TrialResult], points: list[float], metric: str) -> list[CurvePoint]:
    """Mean and CI of `metric` over the seeds in `results`, at every point all of them reached,
    preceded by the start (budget 0)."""
    out = []
    starts = [r.start[metric] for r in results if metric in r.start]
    if starts:
        out.append(CurvePoint(0.0, metric, *mean_interval(starts), len(starts), 0.0))
    for p in points:
        values = [r.at(p) for r in results]
        if not values or any(v is None or metric not in v for v in values):
            continue
        out.append(CurvePoint(p, metric, *mean_interval([v[metric] for v in values]),
                              len(values)))
    return out


@dataclass(frozen=True)
class Learning:
    """Whether a method learns: its ID accuracy gain over its start on every seed."""

    pipeline: str
    gains: list[float]
    min_gain: float

    @property
    def learns(self) -> bool:
        return bool(self.gains) and min(self.gains) >= self.min_gain

    def explain(self) -> str:
        gains = ", ".join(f"{g:+.3f}" for g in self.gains)
        word = "learns" if self.learns else "does not learn"
        return (f"{self.pipeline} {word}: ID accuracy gain over its start {gains} on "
                f"{len(self.gains)} seed(s) (needs >= {self.min_gain:+.2f} on every seed)")


def learning(pipeline: str, results: list[TrialResult], min_gain: float) -> Learning:
    return Learning(pipeline, [r.final["id_accuracy"] - r.start["id_accuracy"] for r in results],
                    min_gain)
