"""The paper-reproduction table of a finished comparison: per pipeline and published benchmark,
the published accuracy beside this run's and the gap (run - published, in points); per claim,
the published gap between its two pipelines beside the run's mean difference. Cells filled by a
tiny stand-in model (a `tiny:` preset, or a local model under 100M parameters), another model
than the paper's, or other data than the benchmark's are labelled "not a reproduction".

    python -m ptbench.comparison.reproduction runs/paper-qwen     (a `ptbench compare --out` folder)

Inputs: the comparison's folder (`runner.run_comparison`): its summary `comparison.json` (curves,
claims) and the pipeline config each trial ran (`trials/*/*/config.json`: the model, task data,
eval sizes and budget points as they were, `--set` overrides included); the published numbers
(`reports/data/published.yaml`) and what a comparison's eval measures of them
(`reports/data/reproduction.yaml`). A run's number on a benchmark is the mean over seeds at the
pipeline's last budget point (its `stop_at`, else the comparison's last point).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SUMMARY = "comparison.json"
REPORT = "reproduction.md"
TINY_LABEL = "not a reproduction (tiny stand-in model)"
TINY_PARAMETERS = 100_000_000
"""A local model with fewer parameters than this is a tiny stand-in (the paper's have ~7-8B)."""
SPLIT_SIZES = {"id_accuracy": "n_id", "ood_accuracy": "n_ood", "val_accuracy": "n_val"}
"""The eval size that weighs each metric when several measure one benchmark."""


def _data(name: str) -> Any:
    return yaml.safe_load(resources.files("ptbench.reports").joinpath(f"data/{name}").read_text())


@dataclass(frozen=True)
class Row:
    """One pipeline on one published benchmark (accuracy in %)."""

    pipeline: str
    benchmark: str
    published: float | None
    """None: not published for this pipeline and model."""
    run: float | None
    """None: the run has no value at the pipeline's last budget point."""
    seeds: int
    published_in: str
    note: str

    @property
    def gap(self) -> float | None:
        """This run's minus the published number, in points."""
        return None if self.published is None or self.run is None else self.run - self.published


@dataclass(frozen=True)
class ClaimRow:
    """A claim's published gap (a - b on the paper's column) beside the run's mean a - b."""

    claim: str
    published: float | None
    run: float | None
    """The run's mean paired difference (for fraction_of_gain: gain(a) - fraction x gain(b)),
    in points of the claim's metric."""
    metric: str
    verdict: str
    expect: str


@dataclass(frozen=True)
class Reproduction:
    """The table of one comparison against one paper model (see the module docstring)."""

    comparison: str
    paper_model: str
    model: str
    label: str
    """'' when the run is a reproduction attempt, else why it is not."""
    measured: str
    """How the run measured each benchmark (metrics, eval sizes, data)."""
    claims_on: str
    rows: list[Row]
    claims: list[ClaimRow]

    def frame(self):
        """The benchmark rows as a pandas DataFrame (a `reports.render.Table`'s frame)."""
        import pandas as pd

        return pd.DataFrame([{"pipeline": r.pipeline, "benchmark": r.benchmark,
                              "published": _pct(r.published), "this run": _pct(r.run),
                              "gap": _signed(r.gap), "seeds": r.seeds,
                              "published in": r.published_in or "-", "note": r.note or "-"}
                             for r in self.rows])

    def claims_frame(self):
        import pandas as pd

        return pd.DataFrame([{"claim": c.claim, f"published gap ({self.claims_on})":
                              _signed(c.published), "this run (a - b)": _signed(c.run),
                              "metric": c.metric, "verdict": c.verdict, "expected": c.expect}
                             for c in self.claims])

    def headline(self) -> str:
        who = f"{self.label}: " if self.label else ""
        return (f"{who}{self.comparison}, model {self.model} (the paper's: {self.paper_model}); "
                f"{self.measured}")

    def blocks(self) -> list:
        """Blocks of the HTML/Markdown report (`ptbench.reports.render`)."""
        from ptbench.reports.render import Table, Text

        blocks: list = [Text(self.headline(), emphasis=bool(self.label)),
                        Table(self.frame(), caption=f"{self.paper_model}: published beside "
                                                    f"this run (accuracy, %)")]
        if self.claims:
            blocks.append(Table(self.claims_frame(), caption="claims: published gap beside "
                                                             "this run's (points)"))
        return blocks

    def markdown(self) -> str:
        out = [f"## Paper reproduction: {self.comparison} ({self.paper_model})", "",
               f"**{self.headline()}**" if self.label else self.headline(), "",
               _markdown_table(self.frame())]
        if self.claims:
            out += ["", _markdown_table(self.claims_frame())]
        return "\n".join(out) + "\n"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}"


def _markdown_table(frame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def published_numbers(model: str, published: list[dict]) -> dict[str, dict[str, tuple[float, str]]]:
    """pipeline -> benchmark -> (accuracy %, source) for `model`; the first source listed wins."""
    out: dict[str, dict[str, tuple[float, str]]] = {}
    for table in published:
        if table["model"] != model:
            continue
        for pipeline, values in table["rows"].items():
            for benchmark, value in zip(table["benchmarks"], values, strict=True):
                out.setdefault(pipeline, {}).setdefault(benchmark, (float(value), table["source"]))
    return out


def load_run(out: str | Path) -> tuple[dict, dict[str, dict]]:
    """(The summary of the comparison folder `out`, pipeline -> the config a clean trial of it
    ran)."""
    out = Path(out)
    summary = json.loads((out / SUMMARY).read_text())
    configs: dict[str, dict] = {}
    for key in sorted(summary.get("trials", {})):
        pipeline, trial = key.split("/", 1)
        if "-clean-" in trial and pipeline not in configs:
            configs[pipeline] = json.loads((out / "trials" / key / "config.json").read_text())
    return summary, configs


def _fractions(summary: dict) -> dict[str, float]:
    """Claim name -> `fraction`, from the comparison file (not in the summary); {} without it."""
    path = Path(summary.get("source", ""))
    if not path.is_file():
        return {}
    claims = (yaml.safe_load(path.read_text()) or {}).get("claims", [])
    return {c["name"]: float(c.get("fraction", 1.0)) for c in claims}


def is_tiny(model: str) -> bool:
    """A `tiny:` preset, or a local model folder with fewer than TINY_PARAMETERS parameters."""
    if model.startswith("tiny:"):
        return True
    folder = Path(model).expanduser()
    if not (folder / "config.json").exists():
        return False
    from ptbench.comparison.plan import parameters
    from ptbench.comparison.shapes import hub_shape

    return parameters(hub_shape(str(folder))) < TINY_PARAMETERS


def model_label(model: str, paper_model: str) -> str:
    """Why cells filled by `model` are not a reproduction of `paper_model`'s ('' when they are)."""
    if is_tiny(model):
        return TINY_LABEL
    if model.rstrip("/").rsplit("/", 1)[-1].lower() != paper_model.lower():
        return f"not a reproduction (model {model}; the paper's is {paper_model})"
    return ""


def _at(curves: dict, pipeline: str, metric: str, point: float) -> dict | None:
    for p in curves.get(pipeline, {}).get(metric, []):
        if math.isclose(p["budget"], point, rel_tol=1e-9):
            return p
    return None


def run_value(curves: dict, pipeline: str, metrics: list[str], weights: dict[str, float],
              point: float) -> tuple[float | None, int]:
    """(The weighted mean of `metrics` at `point`, in %, or None when one is missing; the
    fewest seeds among them)."""
    points = [_at(curves, pipeline, m, point) for m in metrics]
    if any(p is None for p in points):
        return None, 0
    total = sum(weights[m] for m in metrics)
    value = sum(weights[m] * p["mean"] for m, p in zip(metrics, points, strict=True)) / total
    return 100 * value, min(p["n"] for p in points)


def reproduction(summary: dict, configs: dict[str, dict], *,
                 published: list[dict] | None = None,
                 measures: list[dict] | None = None) -> Reproduction:
    """The table of a finished comparison: its summary and, per pipeline, the config a clean
    trial ran (`load_run`)."""
    published = _data("published.yaml") if published is None else published
    measures = _data("reproduction.yaml") if measures is None else measures
    spec = next((m for m in measures if m["comparison"] == summary["name"]), None)
    if spec is None:
        raise KeyError(f"comparison {summary['name']!r}: no entry in reports/data/"
                       f"reproduction.yaml (expected one of {[m['comparison'] for m in measures]})")
    missing = sorted(set(summary["curves"]) - set(configs))
    if missing:
        raise KeyError(f"no trial config for pipeline(s) {missing}")
    first = configs[next(iter(summary["curves"]))]
    model, paper_model = first["model"], spec["model"]
    label = model_label(model, paper_model)
    source = first["task"].get("options", {}).get("source", "the task's default data")
    numbers = published_numbers(paper_model, published)
    rows, measured = [], []
    for benchmark, how in spec["benchmarks"].items():
        weights = {m: float(first["eval"][SPLIT_SIZES[m]]) for m in how["metrics"]}
        note = label or ("" if source == how["source"] else
                         f"not a reproduction (data {source}; {benchmark} is {how['source']})")
        measured.append(f"{benchmark} = " + " + ".join(
            f"{m} ({weights[m]:g} problems)" for m in how["metrics"]) + f" on {source}")
        for pipeline in summary["curves"]:
            evaluation = configs[pipeline]["eval"]
            stop = max(evaluation.get("at_flops") or evaluation.get("at_steps"))
            value, seeds = run_value(summary["curves"], pipeline, how["metrics"], weights, stop)
            pub, pub_source = numbers.get(pipeline, {}).get(benchmark, (None, ""))
            rows.append(Row(pipeline, benchmark, pub, value, seeds, pub_source, note))
    fractions = _fractions(summary)
    claims = []
    for c in summary.get("claims", []):
        a = numbers.get(c["a"], {}).get(spec["claims_on"])
        b = numbers.get(c["b"], {}).get(spec["claims_on"])
        # A published gap compares finals: it is the claim's difference unless a fraction < 1
        # scales b's gain over a start the published tables do not give.
        comparable = c["kind"] == "at_least" or fractions.get(c["name"]) == 1.0
        gap = a[0] - b[0] if a and b and comparable else None
        run = None if c["mean"] is None else 100 * c["mean"]
        claims.append(ClaimRow(c["name"], gap, run, c["metric"], c["verdict"], c["expect"]))
    return Reproduction(summary["name"], paper_model, model, label,
                        "; ".join(measured) + " (each pipeline at its last budget point, mean "
                        "over seeds)", spec["claims_on"], rows, claims)


def from_run(out: str | Path) -> Reproduction:
    """The table of the comparison folder `out`."""
    return reproduction(*load_run(out))


def has_table(name: str) -> bool:
    """Whether reports/data/reproduction.yaml maps comparison `name` to a paper."""
    return any(m["comparison"] == name for m in _data("reproduction.yaml"))


def write_reproduction(out: str | Path) -> Path | None:
    """Write `out`/reproduction.md for a paper comparison (None for any other)."""
    from ptbench.fixtures.atomic import write_text_atomic

    summary, configs = load_run(out)
    if not has_table(summary["name"]):
        return None
    return write_text_atomic(Path(out) / REPORT, reproduction(summary, configs).markdown())


def main(argv: list[str] | None = None) -> int:
    """Print the Markdown table of each comparison folder named."""
    for out in argv if argv is not None else sys.argv[1:]:
        print(from_run(out).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
