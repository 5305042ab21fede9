"""The report's data sections, each built from the results store's measurements (a DataFrame of
`records.Measurement` fields plus the run's `run_id` and `started`), each saying why it is
empty when the runs hold nothing for it."""

from __future__ import annotations

import pandas as pd

from ptbench.reports import plots
from ptbench.reports.render import Figure, Items, Section, Table, Text
from ptbench.reports.verdicts import worst

PROBE_METRIC = "probe"
CURVES = (("eval/sampled_reward", "sampled reward"), ("eval/sft_ce", "SFT cross-entropy on held-out demos"),
          ("eval/kl_to_stage_start", "KL to the stage start"))
KEY_METRICS = ("eval/id_accuracy", "eval/ood_accuracy", "eval/sampled_reward", "eval/sft_ce")


def worst_word(statuses) -> str:
    """The worst status as a table shows it: 'error', 'FAIL' or 'pass'."""
    found = worst(statuses)
    return "FAIL" if found == "fail" else found


def _label(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame["labels"].map(lambda labels: (labels or {}).get(name, ""))


def probe_matrix(frame: pd.DataFrame) -> Section:
    """Framework configuration x (objective, loss_agg) -> pass / FAIL, with the probe's one-line
    diagnosis of every failing cell."""
    section = Section("probes", "Framework probes", empty="no probe ran in this run")
    probes = frame[(frame["metric"] == PROBE_METRIC) & (frame["kind"] == "status")]
    if probes.empty:
        return section
    probes = probes.assign(objective=_label(probes, "objective"), loss_agg=_label(probes, "loss_agg"),
                           optimizer=_label(probes, "optimizer"))
    cells: dict[tuple[str, str], dict[str, str]] = {}
    notes = []
    for (config, objective, loss_agg), rows in probes.groupby(["config", "objective", "loss_agg"], sort=False):
        failing = rows[rows["status"] != "pass"]
        column = f"{objective} {loss_agg}"
        if failing.empty:
            cells.setdefault(config, {})[column] = "pass"
            continue
        word = worst_word(failing["status"])
        notes.append(f"[{len(notes) + 1}] {config}, {column}, {', '.join(sorted(set(failing['optimizer'])))}: "
                     f"{failing['detail'].iloc[0] or failing['status'].iloc[0]}")
        cells.setdefault(config, {})[column] = f"{word} [{len(notes)}]"
    table = pd.DataFrame.from_dict(cells, orient="index").fillna("-")
    tolerance = probes.assign(tolerance=_label(probes, "tolerance")).groupby("config")["tolerance"]
    table["tolerance (SGD, AdamW)"] = [", ".join(sorted(set(tolerance.get_group(c)) - {""}, key=float))
                                       for c in table.index]
    table.insert(0, "configuration", table.index)
    passed = int((probes["status"] == "pass").sum())
    section.blocks = [Text(f"{passed} of {len(probes)} probes passed; '-': not declared by that "
                           "configuration."), Table(table.reset_index(drop=True))]
    if notes:
        section.blocks.append(Items(notes))
    return section


def _pipelines(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame["pipeline"] != "") & (frame["kind"] == "value")]


def training_curves(frame: pd.DataFrame) -> Section:
    """Reward, SFT cross-entropy and KL along each pipeline's steps, mean over seeds with a band."""
    section = Section("curves", "Training curves", empty="no pipeline ran in this run")
    rows = _pipelines(frame)
    for metric, title in CURVES:
        series = rows[rows["metric"] == metric]
        if series.empty:
            continue
        series = series.assign(x=series["flops"].astype(float))
        section.blocks.append(Figure(plots.seed_bands(
            series, "x", "value", "pipeline", title=f"{title} ({metric})", xlabel="FLOPs",
            ylabel=title), f"{metric} against FLOPs per pipeline"))
    return section


def accuracy_vs_flops(frame: pd.DataFrame) -> Section:
    """ID accuracy at every eval point against the FLOPs spent, with the Pareto front."""
    section = Section("pareto", "Accuracy vs FLOPs", empty="no pipeline evaluated ID accuracy in this run")
    points = _pipelines(frame)
    points = points[points["metric"] == "eval/id_accuracy"].dropna(subset=["flops"])
    if points.empty:
        return section
    front = plots.pareto_front(points)
    section.blocks = [
        Figure(plots.accuracy_vs_flops(points, title="ID accuracy vs FLOPs"), "ID accuracy vs FLOPs"),
        Table(front[["pipeline", "stage", "step", "seed", "flops", "value"]].rename(
            columns={"value": "id_accuracy"}), caption="Pareto front"),
    ]
    return section


def history(frame: pd.DataFrame, current_run: int) -> Section:
    """Each key metric's final value per night (mean over seeds of each pipeline's last eval)."""
    section = Section("history", "History", empty="no earlier run of the same kind in the store yet")
    rows = _pipelines(frame)
    rows = rows[rows["metric"].isin(KEY_METRICS)]
    if rows.empty or rows["run_id"].nunique() < 2:
        return section
    last = rows.sort_values("step").groupby(["run_id", "started", "pipeline", "metric", "seed"]).tail(1)
    nightly = last.groupby(["run_id", "started", "pipeline", "metric"], as_index=False)["value"].mean()
    for (pipeline, metric), series in nightly.groupby(["pipeline", "metric"]):
        series = series.sort_values("started")
        if series["run_id"].iloc[-1] != current_run or len(series) < 2:
            continue
        section.blocks.append(Figure(plots.history(
            series.assign(started=pd.to_datetime(series["started"])), title=f"{pipeline}: {metric}",
            ylabel=metric), f"{pipeline} {metric} per night"))
    if not section.blocks:
        section.blocks = [Text("no key metric of this run was measured on an earlier night")]
    return section
