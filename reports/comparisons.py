"""A pipeline comparison (`ptbench compare`'s comparison.json) as results-store measurements,
and the report's comparison section read back from them.

Stored per comparison run: each claim's verdict as a status ('pass' when it is the verdict the
comparison file expects, 'fail' when it changed, the verdict and its statistics in the detail);
under each bug, each claim's mean paired difference (tracked, no expected verdict); whether
each method learns; and accuracy per pipeline, seed and
budget point (`comparison/id_accuracy`, `comparison/ood_accuracy`, with the budget in `flops`),
so that tomorrow's comparison is judged against today's like any other value over seeds.
"""

from __future__ import annotations

import pandas as pd

from ptbench.reports.records import Measurement
from ptbench.reports.render import Items, Section, Table, Text

CLAIM = "claim"
CLAIM_WITH_BUG = "claim_with_bug"
LEARNS = "learns"
CURVE = "comparison/"


def _claim(c: dict) -> Measurement:
    ok = bool(c["as_expected"])
    return Measurement(metric=CLAIM, value=1.0 if ok else 0.0, kind="status",
                       status="pass" if ok else "fail", config=c["name"],
                       pipeline=f"{c['a']} vs {c['b']}", detail=c["explain"],
                       labels={"verdict": c["verdict"], "expect": c["expect"]})


def _claim_with_bug(c: dict, bug: str) -> Measurement:
    """Under a bug a claim has no expected verdict: its paired difference is tracked."""
    return Measurement(metric=CLAIM_WITH_BUG, value=c["mean"], direction="none", config=c["name"],
                       pipeline=f"{c['a']} vs {c['b']}", detail=c["explain"],
                       labels={"verdict": c["verdict"], "bug": bug})


def measurements_from_comparison(summary: dict) -> list[Measurement]:
    """Everything of a comparison summary that a later run is judged against."""
    name = summary["name"]
    found = [_claim(c) for c in summary.get("claims", [])]
    for bug in summary.get("bugs", []):
        # (a claim without a paired difference has no value: NaN cannot be judged night to night)
        found += [_claim_with_bug(c, bug["name"]) for c in bug["claims"] if c["mean"] is not None]
    for pipeline, v in summary.get("learning", {}).items():
        found.append(Measurement(metric=LEARNS, value=1.0 if v["learns"] else 0.0, kind="status",
                                 status="pass" if v["learns"] else "fail", pipeline=pipeline,
                                 config=name, detail=v["explain"]))
    for pipeline, metrics in summary.get("per_seed", {}).items():
        for metric, points in metrics.items():
            for point, seeds in points.items():
                found += [Measurement(metric=CURVE + metric, value=float(value), pipeline=pipeline,
                                      config=name, seed=int(seed), flops=float(point),
                                      labels={"budget": point})
                          for seed, value in seeds.items()]
    return found


def comparison_section(frame: pd.DataFrame) -> Section:
    """Claims (verdict, expected or changed) and mean accuracy per budget, from a run's rows."""
    section = Section("comparison", "Pipeline comparison",
                      empty="no pipeline comparison in this run (ptbench compare CONFIG --out DIR "
                            "stores one; ptbench report --import DIR/comparison.json adds one)")
    if frame.empty or "metric" not in frame:
        return section
    claims = frame[frame["metric"] == CLAIM]
    if not claims.empty:
        changed = claims[claims["status"] != "pass"]
        section.blocks.append(Text(
            f"{len(claims)} claim verdict(s); {len(changed)} differ from the expected verdict",
            emphasis=True))
        section.blocks.append(Items(list(claims["detail"])))
    with_bug = frame[frame["metric"] == CLAIM_WITH_BUG]
    if not with_bug.empty:
        section.blocks += [Text("The same claims with a framework bug switched on", emphasis=True),
                           Items(list(with_bug["detail"]))]
    learns = frame[frame["metric"] == LEARNS]
    if not learns.empty:
        section.blocks.append(Items(list(learns["detail"])))
    for metric in ("id_accuracy", "ood_accuracy"):
        rows = frame[frame["metric"] == CURVE + metric]
        if rows.empty:
            continue
        table = rows.pivot_table(index="pipeline", columns="flops", values="value", aggfunc="mean")
        table.columns = [f"{c:.3g}" for c in table.columns]
        table = table.round(3).reset_index()
        section.blocks.append(Table(table, caption=f"{metric.replace('_', ' ')}: mean over "
                                                   "seeds at each FLOPs budget"))
    return section
