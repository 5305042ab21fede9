"""A diagnostics study (`ptbench diagnose`'s study.json) as results-store measurements, and the
report's diagnostics section read back from them.

Stored per study run (config: the claim's key for claims, the study's name otherwise):

    diagnostic_claim                      with a verdict recorded in the study file (expect):
                                          status 'pass' when it is that verdict, 'fail' when
                                          it changed; without: a 'value' (the seeds judged,
                                          direction 'none'); the verdict in the labels (a
                                          descriptive label: it does not split the series)
    diagnostics/coupling/{reward,sft_ce}  along each RL run ('rl from step N'), labels {run,
                                          step}; reward higher is better, sft_ce lower
    diagnostics/misalignment              cosine(SFT gradient, RL gradient) along every run,
                                          labels {run, step: the step along the whole run}
    diagnostics/predicted_best_step       labels {eta: lr | effective}, when a prediction was
    diagnostics/observed_best_step        possible; for the RL run from the last SFT checkpoint
    diagnostics/spectral/T/value_change   per matrix of transition T (sft, rl, random-sft,
    diagnostics/spectral/T/max_angle      random-rl): labels {layer, matrix}; the larger of
                                          the left and right principal angles (radians)
    diagnostics/restore/{ood,id}          UV restore accuracy, labels {reference, p, q}

Everything else has direction 'none' (tracked for drift). The run is a label (part of the
series); a claim's verdict is a descriptive label (not part of it).
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from ptbench.reports import plots
from ptbench.reports.records import Measurement
from ptbench.reports.render import Figure, Items, Section, Table, Text
from ptbench.reports.stats import CLAIM_VERDICTS

CLAIM = "diagnostic_claim"
COUPLING = "diagnostics/coupling/"
MISALIGNMENT = "diagnostics/misalignment"
PREDICTED = "diagnostics/predicted_best_step"
OBSERVED = "diagnostics/observed_best_step"
SPECTRAL = "diagnostics/spectral/"
RESTORE = "diagnostics/restore/"
COUPLING_DIRECTIONS = {"reward": "higher", "sft_ce": "lower"}
RL_RUN = "rl from step "


def _claim(c: dict) -> Measurement:
    """With a verdict recorded in the study file: status 'pass' when the verdict is that one,
    'fail' when it changed (whichever way). Without: a value, the seeds judged (no outcome)."""
    labels = {"verdict": c["verdict"]}
    if c.get("expect") is None:
        return Measurement(metric=CLAIM, value=float(c["n"]), direction="none", config=c["key"],
                           detail=c["explain"], labels=labels)
    ok = c["verdict"] == c["expect"]
    return Measurement(metric=CLAIM, value=1.0 if ok else 0.0, kind="status",
                       status="pass" if ok else "fail", config=c["key"],
                       detail=c["explain"] + ("" if ok else f" (recorded verdict: {c['expect']})"),
                       labels={**labels, "expect": c["expect"]})


def _runs(record: dict) -> dict[str, list[dict]]:
    """Every run of a seed by name, its points in order."""
    runs = {"sft sweep": record["sft_curve"]}
    runs.update({f"{RL_RUN}{start}": points for start, points in record["rl_curves"].items()})
    runs["rl then sft"] = [p for stage in sorted(record["reverse_curves"])
                           for p in record["reverse_curves"][stage]]
    runs["sft after rl"] = record["sft_after_rl_curve"]
    return runs


def _seed_measurements(record: dict, name: str) -> list[Measurement]:
    seed = int(record["seed"])
    found = []

    def add(metric: str, value: float, direction: str = "none", **fields) -> None:
        found.append(Measurement(metric=metric, value=float(value), direction=direction,
                                 config=name, seed=seed, **fields))

    for start, points in record["rl_curves"].items():
        for field, direction in COUPLING_DIRECTIONS.items():
            for p in points:
                if p[field] is not None:
                    add(COUPLING + field, p[field], direction, pipeline=RL_RUN + start,
                        stage=p["stage"], step=p["step"], flops=p["flops"],
                        labels={"run": RL_RUN + start, "step": p["step"]})
    for run, points in _runs(record).items():
        for p in points:
            if p["cosine"] is not None:
                add(MISALIGNMENT, p["cosine"], pipeline=run, stage=p["stage"],
                    step=p["global_step"], flops=p["flops"],
                    labels={"run": run, "step": p["global_step"]})
    last = RL_RUN + str(max(int(s) for s in record["rl_curves"]))
    prediction = record["prediction"]
    for eta in ("lr", "effective"):
        if prediction.get(f"predicted_best_step_{eta}") is not None:
            add(PREDICTED, prediction[f"predicted_best_step_{eta}"], pipeline=last,
                labels={"eta": eta})
    no_prediction = [f"eta {eta}: {prediction[f'why_no_prediction_{eta}']}"
                     for eta in ("lr", "effective") if prediction.get(f"why_no_prediction_{eta}")]
    add(OBSERVED, prediction["observed_best_step"], pipeline=last, detail="; ".join(no_prediction))
    for transition, rows in record["spectral"].items():
        for row in rows:
            labels = {"layer": row["layer"], "matrix": row["matrix"]}
            add(f"{SPECTRAL}{transition}/value_change", row["value_change"], labels=labels)
            add(f"{SPECTRAL}{transition}/max_angle", max(row["left_angle"], row["right_angle"]),
                labels=labels)
    for row in record["restore"]:
        for field in ("ood", "id"):
            add(RESTORE + field, row[field],
                labels={"reference": row["reference"], "p": row["p"], "q": row["q"]})
    return found


def measurements_from_study(summary: dict) -> list[Measurement]:
    """Everything of a diagnostics study that a later run is judged against."""
    found = [_claim(c) for c in summary.get("claims", [])]
    for record in summary.get("seeds", []):
        found += _seed_measurements(record, summary["name"])
    return found


# ------------------------------------------------------------------------------- the section


def _label(rows: pd.DataFrame, name: str) -> pd.Series:
    return rows["labels"].map(lambda labels: (labels or {}).get(name))


def _claim_blocks(frame: pd.DataFrame) -> list:
    claims = frame[frame["metric"] == CLAIM]
    if claims.empty:
        return []
    counts = Counter(_label(claims, "verdict"))
    said = ", ".join(f"{counts[v]} {v}" for v in CLAIM_VERDICTS if counts[v])
    return [Text(f"{len(claims)} claim(s): {said}", emphasis=True), Items(list(claims["detail"]))]


def _coupling_blocks(frame: pd.DataFrame) -> list:
    rows = frame[frame["metric"].str.startswith(COUPLING)]
    if rows.empty:
        return []
    last = max(rows["pipeline"].unique(), key=lambda p: int(p.removeprefix(RL_RUN)))
    rows = rows[rows["pipeline"] == last]
    panels = {title: rows[rows["metric"] == COUPLING + field].groupby("step")["value"].mean()
              for field, title in (("reward", "probe reward"), ("sft_ce", "SFT CE"))}
    panels = {title: series for title, series in panels.items() if not series.empty}
    marks, said = {}, []
    observed = frame[(frame["metric"] == OBSERVED) & (frame["pipeline"] == last)]
    if not observed.empty:
        marks["observed best"] = observed["value"].mean()
        said.append(f"observed best step {marks['observed best']:.3g}")
    predicted = frame[(frame["metric"] == PREDICTED) & (frame["pipeline"] == last)]
    for eta, values in predicted.groupby(_label(predicted, "eta"))["value"]:
        marks[f"predicted (eta {eta})"] = values.mean()
        said.append(f"predicted {values.mean():.3g} (eta {eta})")
    reasons = "; ".join(sorted(set(observed["detail"]) - {""}))
    if predicted.empty:
        said.append("no prediction was possible" + (f" ({reasons})" if reasons else ""))
    elif reasons:
        said.append(f"no prediction with {reasons}")
    seeds = rows["seed"].nunique()
    return [Figure(plots.curves_with_marks(panels, marks, title=f"{last}: reward and SFT CE",
                                           xlabel="RL step"), f"{last}: reward and SFT CE"),
            Text(f"{last} (mean over {seeds} seed(s)): " + "; ".join(said))]


def _misalignment_blocks(frame: pd.DataFrame) -> list:
    rows = frame[frame["metric"] == MISALIGNMENT]
    if rows.empty:
        return []
    rows = rows.assign(x=rows["step"].astype(float))
    return [Figure(plots.seed_bands(rows, "x", "value", "pipeline",
                                    title="Misalignment of the SFT and RL gradients",
                                    xlabel="step along the run", ylabel="cosine", markers=True),
                   "cosine of the SFT and RL gradients against step, per run")]


def _spectral_blocks(frame: pd.DataFrame) -> list:
    rows = frame[frame["metric"].str.startswith(SPECTRAL)]
    if rows.empty:
        return []
    transition_field = rows["metric"].str.removeprefix(SPECTRAL).str.rsplit("/", n=1)
    rows = rows.assign(transition=transition_field.str[0], field=transition_field.str[1],
                       layer=_label(rows, "layer").map(lambda v: -1 if pd.isna(v) else int(v)),
                       matrix=_label(rows, "matrix"))
    blocks: list = []
    for transition in ("sft", "rl"):
        angles = rows[(rows["transition"] == transition) & (rows["field"] == "max_angle")]
        if angles.empty:
            continue
        table = angles.pivot_table(index="layer", columns="matrix", values="value", aggfunc="mean")
        table.index = ["-" if layer < 0 else str(layer) for layer in table.index]
        blocks.append(Figure(plots.heatmap(
            table, title=f"{transition}: largest principal angle (radians)", xlabel="matrix",
            ylabel="layer ('-': not in a layer)", colorbar="radians"),
            f"{transition}: largest principal angle per layer and matrix"))
    means = rows.pivot_table(index="transition", columns="field", values="value", aggfunc="mean")
    summary = pd.DataFrame([
        {"transition": t, "value change": means.at[t, "value_change"],
         "value change (random)": means.at[f"random-{t}", "value_change"],
         "max angle": means.at[t, "max_angle"],
         "max angle (random)": means.at[f"random-{t}", "max_angle"]}
        for t in ("sft", "rl") if t in means.index and f"random-{t}" in means.index])
    if not summary.empty:
        blocks.append(Table(summary.round(4), caption="mean over matrices and seeds, against a "
                                                      "random perturbation of the same norm"))
    return blocks


def _restore_blocks(frame: pd.DataFrame) -> list:
    rows = frame[frame["metric"] == RESTORE + "ood"]
    if rows.empty:
        return []
    rows = rows.assign(reference=_label(rows, "reference"),
                       p=_label(rows, "p").map(lambda v: f"p={v:g}"),
                       q=_label(rows, "q").map(lambda v: f"q={v:g}"))
    table = rows.pivot_table(index=["reference", "p"], columns="q", values="value", aggfunc="mean")
    table = table.reindex(sorted(table.index, key=lambda rp: (rp[0] != "peak", rp)))
    table = table.round(3).reset_index()
    return [Table(table, caption="UV restore: mean OOD accuracy over seeds, restored from the OOD "
                                 "peak at each (p, q) and from an unrelated model")]


def diagnostics_section(frame: pd.DataFrame) -> Section:
    """Claims, the coupling and misalignment curves, the spectral heat maps and the UV-restore
    table, from a run's rows."""
    section = Section("diagnostics", "Why pipelines differ (diagnostics)",
                      empty="no diagnostics study in this run (ptbench diagnose CONFIG --out DIR "
                            "stores one; ptbench report --import DIR/study.json adds one)")
    if frame.empty or "metric" not in frame:
        return section
    for blocks in (_claim_blocks, _coupling_blocks, _misalignment_blocks, _spectral_blocks,
                   _restore_blocks):
        section.blocks += blocks(frame)
    return section
