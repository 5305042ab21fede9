"""Build the nightly report of a run: verdict first, then what changed by severity, the probe
matrix, training curves, accuracy vs FLOPs, history, the version matrix, and the sections that
later work fills (paper reproduction), the pipeline comparison and the diagnostics study when
the run holds one, each saying why when empty.

    build_report(store, out_dir) -> BuiltReport(html, markdown, comparison)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from ptbench.fixtures.atomic import write_text_atomic
from ptbench.reports import sections, stats
from ptbench.reports.comparisons import comparison_section
from ptbench.reports.db import ResultsStore
from ptbench.reports.diagnostics import diagnostics_section
from ptbench.reports.render import Items, Report, Section, Table, Text, to_html, to_markdown
from ptbench.reports.verdicts import RunComparison, compare_runs


@dataclass(frozen=True)
class BuiltReport:
    html: Path
    markdown: Path
    comparison: RunComparison


def verdict_section(result: RunComparison) -> Section:
    groups: dict[str, int] = {}
    for v in result.verdicts:
        title = v.severity.title
        groups[title] = groups.get(title, 0) + 1
    table = pd.DataFrame({"group": list(groups), "series": list(groups.values())})
    blocks = [Text(result.headline(), emphasis=True), Table(table, caption="series by group")]
    return Section("verdict", "Verdict", blocks)


def changes_section(result: RunComparison) -> Section:
    section = Section("changes", "What changed since the baseline",
                      empty="no baseline: this is the first run of its kind in the store")
    if result.baseline is None:
        return section
    differences = result.differences()
    section.blocks.append(Items(differences) if differences else Text(
        "same package versions and git commit as the baseline"))
    by_group: dict[stats.Severity, list] = {}
    for v in result.verdicts:  # already most urgent first
        by_group.setdefault(v.severity, []).append(v)
    for group, verdicts in sorted(by_group.items()):
        if group is not stats.Severity.REST:
            lines = [v.comparison.explain() + (f" | {v.detail}" if v.detail else "") for v in verdicts]
            section.blocks += [Text(f"{group.title} ({len(lines)})", emphasis=True), Items(lines)]
            continue
        counts = Counter(str(v.comparison.verdict) for v in verdicts)
        section.blocks.append(Text("the rest: " + ", ".join(f"{n} {w}" for w, n in counts.items())))
        worth_a_look = [v.comparison.explain() for v in verdicts if v.comparison.verdict in (
            stats.Verdict.STILL_FAILING, stats.Verdict.CHANGED, stats.Verdict.MISSING)]
        if worth_a_look:
            section.blocks.append(Items(worth_a_look))
    return section


def version_matrix_section(store: ResultsStore) -> Section:
    """The newest `ptbench matrix` results of each release: configuration x (release, objective)."""
    section = Section("matrix", "Framework version matrix",
                      empty="no version-matrix run in the store (ptbench matrix run PACKAGE==VERSION ...)")
    matrix_runs = store.runs(kind="matrix")
    if not matrix_runs:
        return section
    frame = store.frame([r.id for r in matrix_runs])
    frame = frame[(frame["kind"] == "status")]
    if frame.empty:
        return section
    frame = frame.assign(release=[f"{lb.get('package', '')} {lb.get('version', '')}".strip()
                                  for lb in frame["labels"]],
                         objective=[lb.get("objective", "") for lb in frame["labels"]])
    latest = frame.sort_values("started").groupby("release")["run_id"].max()
    frame = frame[frame["run_id"].isin(latest.values)]
    for package, rows in frame.groupby(frame["release"].str.split(" ").str[0]):
        cells = {}
        for (config, release, objective), group in rows.groupby(["config", "release", "objective"]):
            worst = sections.worst_word(group["status"])
            cells.setdefault(config, {})[f"{release} {objective}"] = worst
        table = pd.DataFrame.from_dict(cells, orient="index").fillna("")
        table.insert(0, package, table.index)
        section.blocks.append(Table(table.reset_index(drop=True)))
    return section


def bug_zoo_section(store: ResultsStore) -> Section:
    """The newest `ptbench matrix zoo` run: each known bug confirmed, changed or not reproduced."""
    section = Section("zoo", "Known framework bugs (bug zoo)",
                      empty="no bug-zoo run in the store (ptbench matrix zoo)")
    runs = store.runs(kind="zoo")
    if not runs:
        return section
    latest = runs[0]  # newest first
    frame = store.frame([latest.id])
    if frame.empty:
        return section
    table = pd.DataFrame({"bug": frame["config"],
                          "package": [lb.get("package", "") for lb in frame["labels"]],
                          "status": [lb.get("zoo_status", "") for lb in frame["labels"]],
                          "what the probe saw": [d.split(": ", 1)[-1] for d in frame["detail"]]})
    cannot = latest.info.labels.get("cannot_run", 0)
    section.blocks.append(Table(table.reset_index(drop=True), caption=(
        f"run {latest.id} of {latest.info.started}" + (f"; {cannot} case(s) could not run here"
                                                       if cannot else ""))))
    return section


def reproduction_section() -> Section:
    """Published numbers of the papers, with this run's column (tiny runs are not a reproduction)."""
    published = yaml.safe_load(resources.files("ptbench.reports").joinpath("data/published.yaml")
                                .read_text())
    blocks: list = [Text("Published accuracy (%) beside this run's: paper-scale runs "
                               "(configs/paper, 8 GPUs) have not been recorded in this store, so "
                               "the 'this run' cells are empty; tiny CPU runs are not a "
                               "reproduction.")]
    for table in published:
        frame = pd.DataFrame(table["rows"], index=table["benchmarks"]).T
        frame.insert(0, "pipeline", frame.index)
        frame["this run"] = "not run"
        blocks.append(Table(frame.reset_index(drop=True),
                            caption=f"{table['model']}: {table['source']}"))
    return Section("reproduction", "Paper reproduction", blocks)


def build_report(store: ResultsStore, out_dir: str | Path, *, run_id: int | None = None,
                 baseline: int | None = None, history: int = 14, **thresholds) -> BuiltReport:
    """Judge the run and write `report.html` (self-contained) and `report.md` into `out_dir`."""
    result = compare_runs(store, run_id, baseline=baseline, history=history, **thresholds)
    current = store.frame([result.current.id])
    past = store.frame([r.id for r in result.history] + [result.current.id])
    report = Report(
        title=f"ptbench report: {result.current.info.kind} run {result.current.id}",
        headline=result.headline(), failed=result.failed,
        sections=[verdict_section(result), changes_section(result),
                  sections.probe_matrix(current), sections.training_curves(current),
                  sections.accuracy_vs_flops(current),
                  sections.history(past, result.current.id), version_matrix_section(store),
                  bug_zoo_section(store), comparison_section(current), diagnostics_section(current),
                  reproduction_section()])
    out = Path(out_dir)
    html = write_text_atomic(out / "report.html", to_html(report))
    markdown = write_text_atomic(out / "report.md", to_markdown(report))
    return BuiltReport(html, markdown, result)
