"""Ordering claims judged on paired seeds (`ptbench.reports.stats.paired_claim`): the
difference a - b per seed, held when its 95% CI lies above -delta, not held when below,
inconclusive otherwise. Each verdict is compared with the one the comparison file expects."""

from __future__ import annotations

from dataclasses import dataclass

from ptbench.comparison.config import Claim, ComparisonConfig
from ptbench.comparison.trials import TrialResult
from ptbench.reports.stats import ClaimResult, paired_claim


@dataclass(frozen=True)
class JudgedClaim:
    claim: Claim
    result: ClaimResult
    differences: list[float]
    seeds: list[int]
    detail: str
    """Where each side was measured (budget points, FLOPs)."""
    bug: str = ""
    """The bug switched on ('' for the clean comparison, the one `expect` is about)."""

    @property
    def as_expected(self) -> bool:
        return str(self.result.verdict) == self.claim.expect

    def explain(self) -> str:
        if self.bug:
            return f"{self.result.explain()} [{self.detail}]"
        expected = "as expected" if self.as_expected else f"CHANGED: expected {self.claim.expect}"
        return f"{self.result.explain()} [{self.detail}] ({expected})"


def _side(cfg: ComparisonConfig, claim: Claim, side: str, results: dict[int, TrialResult],
          seeds: list[int]) -> tuple[list[float], str]:
    pipeline = getattr(claim, side)
    if claim.kind == "at_least":
        point = claim.at or min(cfg.stop_point(claim.a), cfg.stop_point(claim.b))
        values = [results[s].at(point)[claim.metric] for s in seeds]
        return values, f"{pipeline} at {point:.3g}"
    stop = cfg.stop_point(pipeline)
    values = [results[s].at(stop)[claim.metric] - results[s].start[claim.metric] for s in seeds]
    spent = sum(results[s].flops for s in seeds) / len(seeds)
    return values, f"{pipeline} gain at {stop:.3g} ({spent:.3g} FLOPs spent)"


def judge(cfg: ComparisonConfig, claim: Claim, a: dict[int, TrialResult],
          b: dict[int, TrialResult], *, bug: str = "") -> JudgedClaim:
    """Judge `claim` from the per-seed results of its two pipelines (`a` and `b`: seed -> result),
    on the seeds both have; `bug` names the bug switched on, if any."""
    seeds = sorted(set(a) & set(b))
    va, where_a = _side(cfg, claim, "a", a, seeds)
    vb, where_b = _side(cfg, claim, "b", b, seeds)
    scale = claim.fraction if claim.kind == "fraction_of_gain" else 1.0
    differences = [x - scale * y for x, y in zip(va, vb, strict=True)]
    name = claim.name + (f" (with {bug})" if bug else "")
    result = paired_claim(differences, claim.delta, name=name)
    return JudgedClaim(claim, result, differences, seeds, f"{where_a} vs {where_b}", bug)
