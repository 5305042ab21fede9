"""The comparison's summary in Markdown: tuned settings, accuracy against compute with CIs,
which methods learn, each claim's verdict, and how each bug moves the gaps."""

from __future__ import annotations


def _ci(p: dict) -> str:
    if p["low"] is None:
        return f"{p['mean']:.3f}"
    return f"{p['mean']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"


def curve_table(curves: dict, metric: str, unit: str) -> list[str]:
    budgets = sorted({p["budget"] for c in curves.values() for p in c[metric]})
    head = "| pipeline | " + " | ".join("start" if b == 0 else f"{b:.3g}" for b in budgets) + " |"
    lines = [head, "|" + "---|" * (len(budgets) + 1)]
    for name, c in curves.items():
        at = {p["budget"]: p for p in c[metric]}
        lines.append(f"| {name} | " + " | ".join(_ci(at[b]) if b in at else "-" for b in budgets)
                     + " |")
    return [f"{metric.replace('_', ' ')} (mean [95% CI] over seeds) at each budget ({unit}):",
            "", *lines, ""]


def markdown(summary: dict, level: int = 1) -> str:
    """The summary; its title at heading `level`, its sections one below."""
    h = "#" * (level + 1)
    unit = summary["budget"]["unit"]
    out = [f"{'#' * level} Comparison {summary['name']}", "",
           f"Seeds {summary['seeds']}; budget points ({unit}) "
           f"{', '.join(f'{p:.3g}' for p in summary['budget']['points'])}; "
           f"search: {summary['search']['trials']} trial(s) per method on seed "
           f"{summary['search']['seed']}, chosen on {summary['search']['metric']}.", ""]
    trials = summary.get("trials", {})
    if trials:
        total = sum(t["wall_s"] for t in trials.values()) / 60
        out += [f"{len(trials)} trials; their wall times add up to {total:.0f} min "
                f"({summary.get('workers', 1)} at a time on this machine).", ""]
    if summary.get("handicap"):
        out += [f"**Handicapped on purpose**: {summary['handicap']}", ""]
    out += [f"{h} Tuned settings", "", "| pipeline | chosen | trials (setting: score) |",
            "|---|---|---|"]
    for name, c in summary["chosen"].items():
        metric = summary["search"]["metric"]
        trials = "; ".join(f"{t['point'] or 'as configured'}: {t[metric]:.3f}" for t in c["trials"])
        out.append(f"| {name} | {c['point'] or 'as configured'} | {trials} |")
    out += ["", f"{h} Accuracy against compute", ""]
    for metric in ("id_accuracy", "ood_accuracy"):
        out += curve_table(summary["curves"], metric, unit)
    out += [f"{h} Which methods learn", ""]
    out += [f"- {v['explain']}" for v in summary["learning"].values()]
    out += ["", f"{h} Claims", ""]
    out += [f"- {c['explain']}" for c in summary["claims"]]
    for bug in summary.get("bugs", []):
        out += ["", f"{h} With {bug['name']} switched on for {', '.join(bug['pipelines'])}", "",
                f"Planted bug `{bug['plant']}`: {bug.get('what', '')} SFT micro-batches of "
                f"{bug['micro_batch_size']} rows: gradient accumulation over "
                f"{_accumulation(bug.get('accumulation', {}))} micro-batches per step.", ""]
        for metric in ("id_accuracy", "ood_accuracy"):
            out += curve_table(bug["curves"], metric, unit)
        out += ["| claim | clean | bug on | mean a - b clean | bug on | ranking flips |",
                "|---|---|---|---|---|---|"]
        for r in bug["ranking"]:
            out.append(f"| {r['claim']} | {r['clean']} | {r['bug_on']} | {_num(r['clean_mean'])} "
                       f"| {_num(r['bug_on_mean'])} | {'yes' if r['flipped'] else 'no'} |")
    return "\n".join(out) + "\n"


def _accumulation(by_pipeline: dict) -> str:
    return ", ".join(f"{'/'.join(map(str, v))} ({n})" for n, v in by_pipeline.items()) or "?"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def flips_table(clean: dict, handicapped: list[dict]) -> str:
    """Each claim's recorded verdict beside its verdict in each handicapped re-run (a pipeline
    held where it started on purpose): the planted reversals the bench checks."""
    lines = ["| claim | recorded | handicapped pipeline | verdict then | mean a - b then | changed |",
             "|---|---|---|---|---|---|"]
    for run in handicapped:
        side = ", ".join(run["handicap"])
        for c in run["claims"]:
            recorded = next(x for x in clean["claims"] if x["name"] == c["name"])
            lines.append(f"| {c['name']} | {recorded['verdict']} | {side} | {c['verdict']} | "
                         f"{_num(c['mean'])} | {'yes' if c['verdict'] != recorded['verdict'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m ptbench.comparison.summary [--level N] FILE...`: print the Markdown summary of
    each comparison.json (how the README's comparison figures are regenerated from the stored
    results; `--level 3` as the README embeds it). `--flips CLEAN HANDICAPPED...`: the planted
    reversals table."""
    import json
    import sys

    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["--flips"]:
        runs = []
        for path in args[1:]:
            with open(path) as f:
                runs.append(json.load(f))
        print(flips_table(runs[0], runs[1:]), end="")
        return 0
    level = 1
    if args[:1] == ["--level"]:
        level, args = int(args[1]), args[2:]
    for path in args:
        with open(path) as f:
            print(markdown(json.load(f), level), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
