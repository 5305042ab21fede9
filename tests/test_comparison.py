"""The comparison: validated before any training, trials chosen and resumed, curves and claims
computed from the runs, the FLOPs bound it checks budgets with."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from ptbench.comparison.claims import judge
from ptbench.comparison.config import Claim, load_comparison, search_points
from ptbench.comparison.runner import run_comparison
from ptbench.comparison.trials import Trial, TrialResult, config_hash, summarize
from ptbench.pipelines.config import ConfigError, PipelineConfig, from_dict
from ptbench.pipelines.estimate import Lengths, stage_step_flops
from ptbench.pipelines.flops import ModelShape
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.tracking import Tracker

PIPELINE = {"model": "tiny:probe-qwen2", "task": {"name": "arithmetic"}, "backend": "native"}
SFT = {**PIPELINE, "name": "sft", "stages": [{"kind": "sft", "steps": 40, "batch_size": 8}]}
RL = {**PIPELINE, "name": "rl", "stages": [
    {"kind": "rl", "steps": 40, "lr": 1e-4, "batch_size": 2, "group_size": 4, "max_new_tokens": 4}]}
SFT_THEN_RL = {**PIPELINE, "name": "sft_then_rl", "stages": [
    {"kind": "sft", "steps": 4, "batch_size": 8},
    {"kind": "rl", "steps": 40, "lr": 1e-4, "batch_size": 2, "group_size": 4, "max_new_tokens": 4}]}
COMPARISON = {
    "name": "unit",
    "task": {"name": "arithmetic", "options": {"ood": "tens-carry"}},
    "base": {"steps": 2, "batch_size": 8},
    "eval": {"every": 1000, "n_id": 4, "n_ood": 4, "n_val": 4, "n_demos": 4, "n_reward": 4,
             "max_new_tokens": 4},
    "budget": {"points": [2.0e7, 4.0e7]},
    "seeds": [0, 1, 2],
    "search": {"trials": 2},
    "pipelines": {
        "sft": {"config": "sft.yaml", "search": {"stages.0.lr": [1.0e-3, 3.0e-3]}},
        "sft_then_rl": {"config": "sft_then_rl.yaml"},
        "truncated": {"config": "sft_then_rl.yaml", "stop_at": 2.0e7},
    },
    "claims": [{"name": "sft_then_rl >= sft", "a": "sft_then_rl", "b": "sft", "delta": 0.5,
                "expect": "held"}],
}


def write(tmp_path: Path, comparison: dict | None = None, **pipelines: dict) -> Path:
    for name, data in {"sft": SFT, "rl": RL, "sft_then_rl": SFT_THEN_RL, **pipelines}.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    path = tmp_path / "comparison.yaml"
    path.write_text(yaml.safe_dump(comparison or COMPARISON))
    return path


def changed(**changes) -> dict:
    return {**COMPARISON, **changes}


# --- validation, before any training --------------------------------------------------------


@pytest.mark.parametrize(("comparison", "pipelines", "message"), [
    (COMPARISON, {"sft": {**SFT, "task": {"name": "generalpoints"}}},
     r"pipelines.sft.config: task 'generalpoints' differs from the comparison's 'arithmetic'"),
    (COMPARISON, {"sft": {**SFT, "model": "tiny:qwen2-0.6m"}},
     r"pipelines.sft_then_rl.config: model differs from sft's \('tiny:probe-qwen2' vs"),
    (COMPARISON, {"sft_then_rl": {**SFT_THEN_RL, "stages": [
        SFT_THEN_RL["stages"][0], {**SFT_THEN_RL["stages"][1], "budget_steps": 10}]}},
     r"pipelines.sft_then_rl.config: stages\[1\].budget_steps is set \(10\); the comparison owns"),
    (changed(budget={"points": [2.0e7, 9.0e12]}), {},
     r"pipelines.sft: its stages reach at most .* FLOPs at their configured steps, short of the "
     r"budget point 9e\+12: raise stages\[0\].steps \(now 40\)"),
    (changed(pipelines={**COMPARISON["pipelines"], "sft": {"config": "sft.yaml", "search": {
        "stages.0.lr": [-1.0, 0.0]}}}), {},
     r"pipelines.sft.search: no valid point; e.g. .*stages\[0\].lr: expected a float > 0"),
    (changed(pipelines={**COMPARISON["pipelines"], "sft": {"config": "sft.yaml", "search": {
        "stages.0.lr": [1e-3, -1.0]}}}), {}, r"pipelines.sft.search: 1 point\(s\) are invalid"),
    (changed(pipelines={**COMPARISON["pipelines"], "sft": {"config": "sft.yaml", "search": {
        "stages.0.nope": [1]}}}), {}, r"pipelines.sft.search: no valid point; e.g. .*nope"),
    (changed(claims=[{"name": "x", "a": "sft", "b": "luffy"}]), {},
     r"claims\[0\].b: expected one of the pipelines \['sft', 'sft_then_rl', 'truncated'\]"),
    (changed(claims=[{"name": "x", "a": "sft", "b": "truncated", "at": 4.0e7}]), {},
     r"claims\[0\].at: expected a point 'truncated' reaches \(it stops at 2e\+07\)"),
    (changed(pipelines={**COMPARISON["pipelines"], "truncated": {
        "config": "sft_then_rl.yaml", "stop_at": 3.0e7}}), {},
     r"pipelines.truncated.stop_at: expected one of the budget points"),
    (changed(eval={**COMPARISON["eval"], "n_val": 0}), {}, r"eval.n_val: expected > 0"),
    (changed(budget={"points": [4.0e7, 2.0e7]}), {}, r"budget.points: expected a non-empty list "
                                                     r"of increasing budgets"),
    (changed(seeds=[1, 2]), {}, r"search.seed: expected one of the seeds \[1, 2\], got 0"),
    (changed(bugs=[{"name": "b", "plant": "no-such-bug"}]), {}, r"bugs\[0\].plant: expected one of"),
    (changed(pipelines={"sft": {"config": "sft.yaml"}}), {}, r"pipelines: expected at least two"),
    (changed(pipelines={**COMPARISON["pipelines"], "x": {"config": "missing.yaml"}}), {},
     r"pipelines.x.config \(a pipeline config\): no such file"),
    (changed(colour="red"), {}, r"comparison: unknown key\(s\) colour"),
    (COMPARISON, {"sft_then_rl": {**SFT_THEN_RL, "stages": [
        {**SFT_THEN_RL["stages"][0], "steps": 400}, SFT_THEN_RL["stages"][1]]}},
     r"pipelines.sft_then_rl: stages\[0\] alone spends at least .* FLOPs \(400 steps\), past "
     r"the budget point 4e\+07 it must stop at: lower stages\[0\].steps"),
])
def test_a_comparison_that_cannot_run_fails_before_training_naming_the_field(
        tmp_path, comparison, pipelines, message):
    path = write(tmp_path, comparison, **pipelines)
    with pytest.raises(ConfigError, match=message):
        load_comparison(path)


def test_the_comparison_imposes_task_evaluation_seed_and_budget(tmp_path):
    comparison = load_comparison(write(tmp_path))
    config = comparison.pipeline_config("truncated", seed=2, point={})
    assert config.task.options == {"ood": "tens-carry"} and config.seed == 2
    assert config.eval.n_val == 4 and config.eval.at_flops == [2.0e7]
    assert config.stages[-1].budget_flops == 2.0e7
    full = comparison.pipeline_config("sft_then_rl", seed=0, point={})
    assert full.eval.at_flops == [2.0e7, 4.0e7] and full.stages[-1].budget_flops == 4.0e7


def test_a_budget_in_steps_sets_the_last_stage(tmp_path):
    comparison = load_comparison(write(tmp_path, changed(
        budget={"unit": "steps", "points": [10, 20]},
        pipelines={**COMPARISON["pipelines"], "truncated": {"config": "sft_then_rl.yaml",
                                                            "stop_at": 10}})))
    config = comparison.pipeline_config("sft_then_rl", seed=0, point={})
    assert [s.steps for s in config.stages] == [4, 16] and config.eval.at_steps == [10, 20]
    assert comparison.pipeline_config("truncated", seed=0, point={}).stages[1].steps == 6


def test_bug_settings_apply_to_sft_stages_only(tmp_path):
    comparison = load_comparison(write(tmp_path, changed(bugs=[{
        "name": "drop", "plant": "deepspeed-offload-drops-middle", "micro_batch_size": 2,
        "settings": {"deepspeed": {"zero_stage": 2, "offload_optimizer": True}}}])))
    bug = comparison.config.bugs[0]
    assert comparison.bug_pipelines(bug) == ["sft", "sft_then_rl", "truncated"]
    config = comparison.pipeline_config("sft_then_rl", seed=0, point={}, bug=bug)
    assert [s.micro_batch_size for s in config.stages] == [2, None]
    assert config.deepspeed.offload_optimizer and config.deepspeed.zero_stage == 2


def test_search_points_take_the_grid_or_a_seeded_sample_of_it():
    space = {"b": [1, 2], "a": [10, 20, 30]}
    grid = search_points(space, 100, 0)
    assert grid[:2] == [{"a": 10, "b": 1}, {"a": 10, "b": 2}] and len(grid) == 6
    sample = search_points(space, 3, 7)
    assert len(sample) == 3 and all(p in grid for p in sample)
    assert sample == search_points(space, 3, 7) and sample == sorted(sample, key=grid.index)
    assert search_points({}, 3, 0) == [{}]


def test_config_hash_ignores_defaults_and_sees_every_set_field():
    config = from_dict(PipelineConfig, {**SFT})
    same = from_dict(PipelineConfig, {**SFT, "seed": 0, "eval": {"at_steps": []}})
    other = from_dict(PipelineConfig, {**SFT, "stages": [{**SFT["stages"][0], "lr": 2e-3}]})
    assert config_hash(config) == config_hash(same) != config_hash(other)


# --- from runs to numbers ---------------------------------------------------------------------


def test_summarize_takes_the_first_eval_at_or_past_each_point(tmp_path):
    rows = [(0, 0.0, 0.1), (3, 9.0, 0.2), (5, 15.0, 0.4), (8, 24.0, 0.9)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"global_step": s, "flops": f, "metric": m, "value": v})
                            + "\n" for s, f, v in rows for m in ("eval/id_accuracy", "train/loss")))
    result = summarize(Trial("p", 0), path, [10.0, 15.0, 30.0], 1.0)
    assert result.at(10.0) == {"id_accuracy": 0.4} and result.at(15.0) == {"id_accuracy": 0.4}
    assert result.at(30.0) is None, "a point the run never reached has no value"
    assert result.start == {"id_accuracy": 0.1} and result.final == {"id_accuracy": 0.9}
    assert (result.flops, result.steps) == (24.0, 8)
    by_steps = summarize(Trial("p", 0), path, [3, 4], 1.0, unit="steps")
    assert by_steps.at(3) == {"id_accuracy": 0.2} and by_steps.at(4) == {"id_accuracy": 0.4}


def _results(start: float, at: dict[float, list[float]]) -> dict[int, TrialResult]:
    seeds = len(next(iter(at.values())))
    return {s: TrialResult(Trial("p", s), {repr(p): {"id_accuracy": v[s]} for p, v in at.items()},
                           {"id_accuracy": start}, {}, 0.0, 0, 0.0) for s in range(seeds)}


def test_claims_are_judged_on_paired_seeds(tmp_path):
    cfg = load_comparison(write(tmp_path)).config
    claim = Claim("a >= b", "sft_then_rl", "sft", delta=0.05)
    b = _results(0.0, {4.0e7: [0.50, 0.60, 0.70]})
    better = judge(cfg, claim, _results(0.0, {4.0e7: [0.52, 0.63, 0.71]}), b)
    assert str(better.result.verdict) == "held"
    assert better.differences == pytest.approx([0.02, 0.03, 0.01])
    worse = judge(cfg, claim, _results(0.0, {4.0e7: [0.30, 0.41, 0.49]}), b)
    assert str(worse.result.verdict) == "not held" and not worse.as_expected  # expected: inconclusive
    noisy = judge(cfg, claim, _results(0.0, {4.0e7: [0.70, 0.40, 0.69]}), b)
    assert str(noisy.result.verdict) == "inconclusive"
    # Hand-computed: differences d = [0.2, -0.2, -0.01], mean -0.00333, CI half-width
    # t(0.975, 2) * s / sqrt(3) = 4.30265 * 0.200083 / 1.73205 = 0.497035.
    assert noisy.result.ci_low == pytest.approx(-0.00333333 - 0.497035, abs=1e-5)


def test_fraction_of_gain_compares_each_side_at_its_own_stop(tmp_path):
    cfg = load_comparison(write(tmp_path)).config
    claim = Claim("truncated keeps 90%", "truncated", "sft_then_rl", kind="fraction_of_gain",
                  fraction=0.9, delta=0.0)
    a = _results(0.1, {2.0e7: [0.55, 0.56, 0.57]})
    b = _results(0.1, {4.0e7: [0.60, 0.60, 0.60]})
    judged = judge(cfg, claim, a, b)
    # gain(a) - 0.9 * gain(b) = (0.45, 0.46, 0.47) - 0.45
    assert judged.differences == pytest.approx([0.0, 0.01, 0.02])
    assert "truncated gain at 2e+07" in judged.detail and "sft_then_rl gain at 4e+07" in judged.detail


# --- FLOPs bound used to check budgets --------------------------------------------------------


@pytest.mark.parametrize("stage", [
    {"kind": "sft", "steps": 3, "batch_size": 8, "micro_batch_size": 3},
    {"kind": "rl", "steps": 3, "lr": 1e-4, "batch_size": 2, "group_size": 3, "max_new_tokens": 4,
     "kl_coef": 0.01, "num_iterations": 2},
    {"kind": "luffy", "steps": 3, "lr": 1e-4, "batch_size": 2, "group_size": 4,
     "max_new_tokens": 4},
    {"kind": "srft", "steps": 3, "lr": 1e-4, "batch_size": 2, "group_size": 4,
     "max_new_tokens": 4},
], ids=lambda s: s["kind"])
def test_step_flops_bound_holds_and_is_tight_on_a_real_run(tmp_path, stage):
    config = from_dict(PipelineConfig, {**PIPELINE, "name": "x", "base": {"steps": 0},
                                        "eval": {"every": 100, "n_id": 2, "n_ood": 2,
                                                 "n_demos": 2, "n_reward": 2},
                                        "stages": [stage]})
    rows = Tracker.read(run_pipeline(config, tmp_path / "run", cache=tmp_path / "cache"))
    spent = max(r.flops for r in rows)
    from ptbench.fixtures.models import TINY_PRESETS
    from ptbench.fixtures.tasks import get_task

    shape = ModelShape.from_config(TINY_PRESETS["probe-qwen2"].config())
    bound = 3 * stage_step_flops(shape, config.stages[0], Lengths.of_task(get_task("arithmetic")))
    assert spent <= bound, "the bound is an upper bound"
    assert bound <= 3 * spent, f"the bound is within 3x of what ran ({bound} vs {spent})"


# --- end to end: search, seeds, resume ------------------------------------------------------


def test_comparison_runs_chooses_resumes_and_summarizes(tmp_path, capsys):
    comparison = load_comparison(write(tmp_path))
    out = tmp_path / "out"
    summary = run_comparison(comparison, out, workers=2, cache=str(tmp_path / "cache"))
    assert set(summary["chosen"]) == {"sft", "sft_then_rl", "truncated"}
    assert len(summary["chosen"]["sft"]["trials"]) == 2
    assert summary["chosen"]["sft"]["point"] in ({"stages.0.lr": 1e-3}, {"stages.0.lr": 3e-3})
    results = sorted(out.glob("trials/*/*/result.json"))
    assert len(results) == 2 + 1 + 1 + 3 * 2, "4 search trials, then seeds 1 and 2 of each"
    curves = summary["curves"]
    assert [p["budget"] for p in curves["sft"]["id_accuracy"]] == [0.0, 2.0e7, 4.0e7]
    assert [p["budget"] for p in curves["truncated"]["id_accuracy"]] == [0.0, 2.0e7]
    assert all(p["n"] == 3 for c in curves.values() for p in c["ood_accuracy"])
    claim = summary["claims"][0]
    assert claim["n"] == 3 and claim["verdict"] in ("held", "not held", "inconclusive")
    assert math.isclose(claim["mean"], sum(claim["differences"]) / 3)
    assert (out / "comparison.md").read_text().startswith("# Comparison unit")

    # Interrupted mid-way: one trial unfinished, the rest are read back, not rerun.
    stamps = {p: p.stat().st_mtime_ns for p in results}
    results[0].unlink()
    capsys.readouterr()
    run_comparison(comparison, out, workers=1, cache=str(tmp_path / "cache"))
    said = capsys.readouterr().out
    assert "1 to run" in said or "0 to run" in said
    rerun = [p for p in results if not p.exists() or p.stat().st_mtime_ns != stamps.get(p)]
    assert rerun == [results[0]], "only the unfinished trial ran again"

    # The verdicts and curves go to the results store, and the report shows them.
    from ptbench.reports.build import build_report
    from ptbench.reports.db import ResultsStore
    from ptbench.reports.importers import import_path

    with ResultsStore.open(tmp_path / "results.sqlite") as store:
        run_id = import_path(store, out / "comparison.json")
        assert import_path(store, out / "comparison.json") == run_id, "imported once"
        frame = store.frame([run_id])
        claims = frame[frame["metric"] == "claim"]
        assert list(claims["config"]) == ["sft_then_rl >= sft"]
        assert claims["status"].iloc[0] == ("pass" if claim["as_expected"] else "fail")
        curve_rows = frame[(frame["metric"] == "comparison/id_accuracy")
                           & (frame["pipeline"] == "sft")]
        assert sorted(curve_rows["seed"]) == [0, 0, 1, 1, 2, 2]
        built = build_report(store, tmp_path / "report", run_id=run_id)
    text = built.markdown.read_text()
    assert "Pipeline comparison" in text and "sft_then_rl >= sft" in text
    assert "id accuracy: mean over seeds at each FLOPs budget" in text


def test_compare_command_dry_run_and_bad_input(tmp_path, capsys):
    from ptbench.comparison.cli import main

    path = write(tmp_path)
    assert main([str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "4 search trial(s) on seed 0, 6 seed run(s), 0 bug-on run(s)" in plan
    assert "truncated: sft x4 -> rl x40; runs to 2e+07 flops" in plan and "GiB per GPU" in plan
    assert not (tmp_path / "o").exists(), "a dry run trains nothing"
    assert main([str(path), "--out", str(tmp_path / "o"), "--handicap", "nope"]) == 2
    assert "--handicap: expected PIPELINE:KEY.PATH=VALUE, got 'nope'" in capsys.readouterr().err
    assert main([str(path), "--out", str(tmp_path / "o"), "--handicap", "x:stages.0.lr=0"]) == 2
    assert "--handicap: expected one of the pipelines" in capsys.readouterr().err


def test_small_rung_runs_its_path_shortened_on_a_cpu(tmp_path):
    """configs/comparisons/small-arithmetic.yaml (the GPU rung), cut to a few steps of each
    pipeline: the 24M model is built, pretrained, trained and evaluated on every pipeline."""
    repo = Path(__file__).resolve().parents[1]
    comparison = load_comparison(repo / "configs" / "comparisons" / "small-arithmetic.yaml", [
        "budget.points=[1.0e+11, 2.0e+11]", "base.steps=2", "eval.n_id=4", "eval.n_ood=4",
        "eval.n_val=4", "eval.n_demos=4", "eval.n_reward=4",
        "pipelines.truncated_sft_then_rl.stop_at=1.0e+11",
        *(f"pipelines.{p}.settings={{stages.0.steps: 1, stages.1.steps: 600}}"
          for p in ("sft_then_rl", "truncated_sft_then_rl"))])
    assert comparison.base_configs["sft"].model == "tiny:qwen2-24m"
    summary = run_comparison(comparison, tmp_path / "small", workers=2,
                             cache=str(tmp_path / "cache"))
    for name, curves in summary["curves"].items():
        stop = comparison.config.stop_point(name)
        assert [p["budget"] for p in curves["id_accuracy"]][-1] == stop, name


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs"
                                         / "comparisons").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_comparison_validates(path):
    comparison = load_comparison(path)
    assert comparison.config.name == path.stem
    assert all(c.expect in ("held", "not held", "inconclusive") for c in comparison.config.claims)
