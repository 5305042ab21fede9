"""The paper rung: the paper comparisons (configs/comparisons/paper-*.yaml) plan offline with
FLOPs and memory per GPU for the real hub models, run end to end on the CPU as copies with tiny
stand-ins of the same architecture families, and fill the paper-reproduction table, labelled
"not a reproduction".
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ptbench.comparison import reproduction as rp
from ptbench.comparison.shapes import (
    ASSUMED_LENGTHS,
    PUBLISHED_CONFIGS,
    resolve_shape,
    task_lengths,
)
from ptbench.comparison.trials import TrialResult
from ptbench.fixtures.tasks import get_task
from ptbench.pipelines.config import TaskConfig, load_config
from ptbench.pipelines.estimate import Lengths, stage_step_flops
from ptbench.pipelines.flops import ModelShape

ROOT = Path(__file__).resolve().parents[1]
COMPARISONS = ROOT / "configs" / "comparisons"
PAPER = {"qwen2": COMPARISONS / "paper-qwen2.5-math-7b.yaml",
         "llama": COMPARISONS / "paper-llama-3.1-8b.yaml"}
SAMPLE = ROOT / "tests" / "data" / "paper" / "math_sample.jsonl"
"""14 hand-written MATH-style rows (MATH-500 schema): 8 ID (Prealgebra, Algebra), 6 OOD."""
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
PUBLISHED_PARAMETERS = {"Qwen/Qwen2.5-Math-7B": 7.62e9, "meta-llama/Llama-3.1-8B": 8.03e9}
"""Parameter counts on the models' hub pages (7.62B, 8.03B)."""


def _python(code: str, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **env})


# --- the paper comparisons, planned offline -------------------------------------------------

def test_dry_run_prints_plan_flops_and_memory_per_gpu_offline(tmp_path):
    """`ptbench compare --dry-run` on both paper comparisons with no network: the plan, each
    pipeline's FLOPs bound and model-state memory on 8 GPUs, from the published shapes and the
    assumed lengths, said as such."""
    code = ("import sys\nfrom ptbench.cli import main\n"
            f"for path in {[str(p) for p in PAPER.values()]!r}:\n"
            f"    assert main(['compare', path, '--out', {str(tmp_path)!r}, '--dry-run']) == 0\n")
    done = _python(code, {**OFFLINE, "PTBENCH_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for name, path in PAPER.items():
        data = yaml.safe_load(path.read_text())
        model = data["model"]
        block = out[out.index(f"{data['name']}:"):]
        block = block[:block.index("all trials together")]
        assert "4 search trial(s) on seed 0, 8 seed run(s), 12 bug-on run(s)" in block, name
        # (a machine with the hub cache reads the real config and data, offline too)
        shape_from = block[block.index(f"shape of {model}: "):].splitlines()[0]
        assert "config.json of the model's hub repository" in shape_from or \
            shape_from.endswith("transformers config")
        assert f"demonstration {ASSUMED_LENGTHS.demonstration} tokens (assumed: " in block or \
            "tokens (measured)" in block
        shape = ModelShape(**PUBLISHED_CONFIGS[model])
        params = shape.matmul_params + shape.vocab_size * shape.hidden_size
        assert params == pytest.approx(PUBLISHED_PARAMETERS[model], rel=0.01)
        # bf16 ZeRO-2 on 8 GPUs: weights 2 + gradients 2/8 + fp32 master and moments 12/8 bytes
        gib = params * (2 + 2 / 8 + 12 / 8) / 2**30
        lines = [ln for ln in block.splitlines() if "GiB per GPU" in ln]
        assert len(lines) == 4, block
        for line in lines:
            assert f"{params / 1e6:.4g}M parameters, model states {gib:.3g} GiB per GPU on 8 " \
                   "GPU(s)" in line
            assert "FLOPs per trial" in line
        stops = {n: e.get("stop_at") or data["budget"]["points"][-1]
                 for n, e in data["pipelines"].items()}
        for pipeline, stop in stops.items():
            assert f"  {pipeline}: " in block and f"runs to {stop:.3g} flops" in block


@pytest.mark.parametrize("family", sorted(PAPER))
def test_paper_budget_points_price_the_published_recipe(family):
    """The budget points are what the comments say: the truncated variant's stop is SFT plus
    50 RL steps and the last point SFT plus 500, priced with the published shape and the assumed
    lengths (within the 1% the points are rounded to)."""
    data = yaml.safe_load(PAPER[family].read_text())
    sft_then_rl = load_config(PAPER[family].parent / data["pipelines"]["sft_then_rl"]["config"])
    shape = ModelShape(**PUBLISHED_CONFIGS[data["model"]])
    sft, rl = (stage_step_flops(shape, s, ASSUMED_LENGTHS) for s in sft_then_rl.stages)
    assert sft_then_rl.stages[0].steps == 1500
    truncated = data["pipelines"]["truncated_sft_then_rl"]["stop_at"]
    assert truncated == pytest.approx(1500 * sft + 50 * rl, rel=0.01)
    assert data["budget"]["points"][-1] == pytest.approx(1500 * sft + 500 * rl, rel=0.01)


@pytest.mark.parametrize("family", sorted(PAPER))
def test_paper_claims_name_the_published_gaps(family):
    """Each claim's name states the published gap that the reproduction table derives from
    reports/data/published.yaml (the two must not drift apart)."""
    data = yaml.safe_load(PAPER[family].read_text())
    spec = next(m for m in rp._data("reproduction.yaml") if m["comparison"] == data["name"])
    numbers = rp.published_numbers(spec["model"], rp._data("published.yaml"))
    checked = 0
    for claim in data["claims"]:
        a = numbers.get(claim["a"], {}).get(spec["claims_on"])
        b = numbers.get(claim["b"], {}).get(spec["claims_on"])
        if a and b and claim.get("fraction", 1.0) == 1.0:
            assert f"published {a[0] - b[0]:+.1f} {spec['claims_on']}" in claim["name"]
            checked += 1
    assert checked >= 1


def test_offline_fallbacks_are_said_and_local_data_errors_are_not_hidden(monkeypatch, tmp_path):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    resolve_shape.cache_clear()
    try:
        got = resolve_shape("Qwen/Qwen2.5-Math-7B")
        assert got.value == ModelShape(**PUBLISHED_CONFIGS["Qwen/Qwen2.5-Math-7B"])
        assert "could not be read: We couldn't connect" in got.source
        with pytest.raises(OSError):
            resolve_shape("someone/unknown-model")  # no published shape: the error stands
    finally:
        resolve_shape.cache_clear()
    train = _training_rows(tmp_path / "train.jsonl", 600)
    options = {"source": str(SAMPLE), "train_source": str(train), "val_size": 1}
    measured = task_lengths(TaskConfig("math", options))
    assert measured.source == "measured" and measured.value != ASSUMED_LENGTHS
    with pytest.raises(FileNotFoundError):
        task_lengths(TaskConfig("math", {"source": str(tmp_path / "missing.jsonl")}))

    from ptbench.comparison import shapes

    def unreachable(name, **options):
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/MATH-500' on the Hub")

    monkeypatch.setattr("ptbench.fixtures.tasks.get_task", unreachable)
    hub = TaskConfig("math", {"source": "HuggingFaceH4/MATH-500"})
    got = shapes.task_lengths(hub)
    assert got.value == ASSUMED_LENGTHS and "HuggingFaceH4/MATH-500 could not be read" in got.source
    assert shapes.task_lengths(hub, shortest=True).value == shapes.ASSUMED_SHORTEST


# --- the same comparisons with tiny stand-ins, end to end ----------------------------------

def _training_rows(path: Path, n: int, seed: int = 0) -> Path:
    """`n` MATH-style training rows (problem, solution with a boxed answer, answer). The
    pipeline draws a pool of up to `pipelines.run.TRAIN_POOL` training rows, so the few sample
    rows cannot be the training source (see the report)."""
    pairs = random.Random(seed).sample([(a, b) for a in range(10, 100) for b in range(10, 100)], n)
    with path.open("w") as f:
        for a, b in pairs:
            f.write(json.dumps({"problem": f"What is ${a} + {b}$?", "answer": str(a + b),
                                "solution": f"${a} + {b} = {a + b}$, so the answer is "
                                            f"$\\boxed{{{a + b}}}$."}) + "\n")
    return path


TINY_STAGES = {"sft": {"steps": 2, "batch_size": 4, "micro_batch_size": 2, "warmup_steps": 0},
               "rl": {"steps": 100, "batch_size": 2, "group_size": 4, "micro_batch_size": 4,
                      "max_new_tokens": 6}}
"""Stage settings of the tiny copy (RL `steps` stay a cap: the budget points stop the runs)."""


def tiny_copy(family: str, out: Path) -> Path:
    """The paper comparison of `family` with a tiny model of the same architecture family, the
    sample rows (and generated training rows) instead of MATH-500 and OpenR1, one seed, small
    stages and evals, no DeepSpeed, float32, and budget points priced like the paper's: the
    truncated variant stops at SFT + 1 RL step, the others at SFT + 3."""
    from ptbench.pipelines.base_model import CORPUS_SIZE
    from ptbench.pipelines.estimate import LENGTH_SAMPLE
    from ptbench.pipelines.run import TRAIN_POOL

    data = yaml.safe_load(PAPER[family].read_text())
    val = 2
    train = _training_rows(out / "train.jsonl", max(TRAIN_POOL, CORPUS_SIZE, LENGTH_SAMPLE) + val)
    data["model"] = f"tiny:probe-{family}"
    data["task"]["options"] = {"source": str(SAMPLE), "train_source": str(train), "val_size": val}
    data["eval"] = {"every": 1000, "n_id": 2, "n_ood": 2, "n_val": 1, "n_demos": 1, "n_reward": 1,
                    "max_new_tokens": 6}
    data["seeds"] = [0]
    for entry in data["pipelines"].values():
        entry["config"] = str((PAPER[family].parent / entry["config"]).resolve())
        kinds = [s["kind"] for s in yaml.safe_load(Path(entry["config"]).read_text())["stages"]]
        settings = {"dtype": "float32", "deepspeed": None}
        for i, kind in enumerate(kinds):
            for key, value in TINY_STAGES["sft" if kind == "sft" else "rl"].items():
                settings[f"stages.{i}.{key}"] = value
        entry["settings"] = {**entry.get("settings", {}), **settings}
    sft_then_rl = data["pipelines"]["sft_then_rl"]
    config = load_config(sft_then_rl["config"], [
        f"{k}={json.dumps(v)}" for k, v in {"model": data["model"], "task": data["task"],
                                            **sft_then_rl["settings"]}.items()])
    shape = resolve_shape(config.model).value
    lengths = Lengths.of_task(get_task(config.task.name, **config.task.options))
    sft, rl = (stage_step_flops(shape, s, lengths) for s in config.stages)
    before = config.stages[0].steps * sft
    data["budget"]["points"] = [float(before + 1 * rl), float(before + 3 * rl)]
    data["pipelines"]["truncated_sft_then_rl"]["stop_at"] = data["budget"]["points"][0]
    path = out / f"tiny-{family}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("family", sorted(PAPER))
def test_tiny_paper_comparison_end_to_end_fills_the_reproduction_table(family, tmp_path,
                                                                       monkeypatch, capsys):
    """`ptbench compare` on the tiny copy runs every pipeline to its budget point; the table
    is filled with this run's numbers (recomputed here from the trials' own results), beside
    the published ones, every cell labelled "not a reproduction (tiny stand-in model)"."""
    from ptbench.cli import main

    for key, value in {**OFFLINE, "PTBENCH_CACHE": str(tmp_path / "cache"),
                       "PTBENCH_STORE": str(tmp_path / "results.sqlite"),
                       "HF_DATASETS_CACHE": str(tmp_path / "hf")}.items():
        monkeypatch.setenv(key, value)
    path = tiny_copy(family, tmp_path)
    out = tmp_path / "out"
    code = main(["compare", str(path), "--out", str(out), "--no-bugs", "--jobs", "2"])
    printed = capsys.readouterr().out
    assert code in (0, 1), printed  # 1: a claim's verdict differs from the paper's (tiny)
    summary = json.loads((out / "comparison.json").read_text())
    data = yaml.safe_load(path.read_text())
    assert summary["name"] == data["name"]

    table = rp.from_run(out)
    assert rp.write_reproduction(out).read_text() == table.markdown()
    assert table.label == rp.TINY_LABEL and table.model == f"tiny:probe-{family}"
    assert {r.pipeline for r in table.rows} == set(data["pipelines"])
    results = [TrialResult.from_json(json.loads(p.read_text()))
               for p in (out / "trials").glob("*/*/result.json")]
    assert len(results) == len(data["pipelines"])
    weights = {"id_accuracy": data["eval"]["n_id"], "ood_accuracy": data["eval"]["n_ood"]}
    for row in table.rows:
        assert row.benchmark == "MATH-500" and row.note == rp.TINY_LABEL
        (result,) = [r for r in results if r.trial.pipeline == row.pipeline]
        stop = data["pipelines"][row.pipeline].get("stop_at") or data["budget"]["points"][-1]
        at = result.at(stop)
        assert at is not None, f"{row.pipeline} did not reach its budget point {stop:g}"
        assert result.flops >= stop
        expected = 100 * sum(w * at[m] for m, w in weights.items()) / sum(weights.values())
        assert row.run == pytest.approx(expected) and row.seeds == 1
        if row.published is not None:
            assert row.gap == pytest.approx(row.run - row.published)
    published = {r.pipeline: r.published for r in table.rows}
    assert published["sft_then_rl"] is not None and published["mixed_policy_luffy"] is not None
    assert len(table.claims) == len(data["claims"])
    for claim, judged in zip(table.claims, summary["claims"], strict=True):
        assert claim.run == pytest.approx(100 * judged["mean"])
    markdown = table.markdown()
    assert markdown.count(rp.TINY_LABEL) == len(table.rows) + 1
    assert f"| sft_then_rl | MATH-500 | {published['sft_then_rl']:.1f} |" in markdown


# --- the table's arithmetic and labels, on a summary with distinct numbers -----------------

def _run_folder(tmp_path: Path, model: str, source: str = "HuggingFaceH4/MATH-500") -> Path:
    """A finished comparison's folder as `ptbench compare` leaves it (summary, the comparison
    file, each trial's config), with distinct numbers: MATH-500 weighs ID 1 : OOD 3."""
    out = tmp_path / "run"
    tmp_path.mkdir(parents=True, exist_ok=True)
    comparison = {"name": "paper-qwen2.5-math-7b",
                  "claims": [{"name": "c1", "a": "sft_then_rl", "b": "mixed_policy_srft"},
                             {"name": "c2", "a": "truncated_sft_then_rl", "b": "sft_then_rl",
                              "kind": "fraction_of_gain", "fraction": 0.9}]}
    (tmp_path / "comparison.yaml").write_text(yaml.safe_dump(comparison))
    stops = {"sft_then_rl": 20.0, "truncated_sft_then_rl": 10.0, "mixed_policy_srft": 20.0}
    for pipeline, stop in stops.items():
        folder = out / "trials" / pipeline / "seed0-clean-0123456789"
        folder.mkdir(parents=True)
        config = {"model": model, "task": {"name": "math", "options": {"source": source}},
                  "eval": {"n_id": 1, "n_ood": 3, "at_flops": [p for p in (10.0, 20.0) if p <= stop]}}
        (folder / "config.json").write_text(json.dumps(config))

    def curve(metric: str, at10: float, at20: float) -> list[dict]:
        return [{"budget": b, "metric": metric, "mean": m, "low": None, "high": None, "n": 3}
                for b, m in ((0.0, 0.0), (10.0, at10), (20.0, at20))]

    curves = {"sft_then_rl": {"id_accuracy": curve("id_accuracy", 0.1, 0.8),
                              "ood_accuracy": curve("ood_accuracy", 0.2, 0.4)},
              "truncated_sft_then_rl": {"id_accuracy": curve("id_accuracy", 0.6, 0.0),
                                        "ood_accuracy": curve("ood_accuracy", 0.2, 0.0)},
              "mixed_policy_srft": {"id_accuracy": curve("id_accuracy", 0.3, 0.5),
                                    "ood_accuracy": curve("ood_accuracy", 0.1, 0.7)}}
    claims = [{"name": "c1", "kind": "at_least", "a": "sft_then_rl", "b": "mixed_policy_srft",
               "metric": "id_accuracy", "mean": 0.3, "verdict": "held", "expect": "held"},
              {"name": "c2", "kind": "fraction_of_gain", "a": "truncated_sft_then_rl",
               "b": "sft_then_rl", "metric": "id_accuracy", "mean": -0.12,
               "verdict": "inconclusive", "expect": "held"}]
    summary = {"name": "paper-qwen2.5-math-7b", "source": str(tmp_path / "comparison.yaml"),
               "budget": {"unit": "flops", "points": [10.0, 20.0]}, "curves": curves,
               "claims": claims,
               "trials": {f"{p}/seed0-clean-0123456789": {} for p in stops}}
    (out / "comparison.json").write_text(json.dumps(summary))
    return out


def test_table_weighs_metrics_reads_each_pipelines_stop_point_and_gaps(tmp_path):
    out = _run_folder(tmp_path, "Qwen/Qwen2.5-Math-7B")
    table = rp.from_run(out)
    assert table.label == ""
    rows = {r.pipeline: r for r in table.rows}
    # MATH-500 = (1 x id + 3 x ood) / 4, at the last point (20), or at stop_at (10)
    assert rows["sft_then_rl"].run == pytest.approx(100 * (0.8 + 3 * 0.4) / 4)  # 50.0
    assert rows["truncated_sft_then_rl"].run == pytest.approx(100 * (0.6 + 3 * 0.2) / 4)  # 30.0
    assert rows["mixed_policy_srft"].run == pytest.approx(100 * (0.5 + 3 * 0.7) / 4)  # 65.0
    assert rows["sft_then_rl"].published == 92.0 and rows["mixed_policy_srft"].published == 89.8
    assert rows["sft_then_rl"].gap == pytest.approx(50.0 - 92.0)
    assert rows["truncated_sft_then_rl"].gap == pytest.approx(30.0 - 91.7)
    c1, c2 = table.claims
    assert c1.published == pytest.approx(57.0 - 53.2) and c1.run == pytest.approx(30.0)
    assert c2.published is None  # a 0.9 fraction of a gain over a start nobody published
    assert "| sft_then_rl | MATH-500 | 92.0 | 50.0 | -42.0 | 3 |" in table.markdown()

    from ptbench.reports.render import Report, Section, to_html

    page = to_html(Report("r", "h", False, [Section("reproduction", "Paper reproduction",
                                                    table.blocks())]))
    assert "<td>92.0</td><td>50.0</td><td>-42.0</td>" in "".join(page.split())


def test_labels_say_why_a_run_is_not_a_reproduction(tmp_path):
    def table(model: str, source: str = "HuggingFaceH4/MATH-500") -> rp.Reproduction:
        return rp.from_run(_run_folder(tmp_path / model.replace("/", "_"), model, source))

    other = table("Qwen/Qwen2.5-0.5B")
    assert other.label.startswith("not a reproduction (model Qwen/Qwen2.5-0.5B")
    assert all(r.note == other.label for r in other.rows)
    local_data = table("Qwen/Qwen2.5-Math-7B", str(SAMPLE))
    assert local_data.label == ""
    assert all(r.note.startswith(f"not a reproduction (data {SAMPLE}") for r in local_data.rows)
    assert table("tiny:probe-llama").label == rp.TINY_LABEL

    from ptbench.fixtures.models import tiny_model_dir

    folder = tiny_model_dir("probe-qwen2", root=tmp_path / "models")
    assert table(str(folder)).label == rp.TINY_LABEL
    summary, configs = rp.load_run(_run_folder(tmp_path, "tiny:probe-qwen2"))
    with pytest.raises(KeyError, match="no entry in reports/data/reproduction.yaml"):
        rp.reproduction({**summary, "name": "tiny-arithmetic"}, configs)
