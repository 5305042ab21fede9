"""Can every pipeline reach the comparison's budget? Checked before any training, from upper
bounds on each stage's FLOPs (`ptbench.pipelines.estimate`) or from step counts."""

from __future__ import annotations

from ptbench.comparison.shapes import hub_shape, task_lengths
from ptbench.pipelines.config import ConfigError
from ptbench.pipelines.estimate import pipeline_flops, stage_step_flops_floor


def check_reachable(comparison) -> None:
    """Raise a ConfigError naming the pipeline and stage when a pipeline's stages, at their
    configured steps, cannot reach the budget point it must run to."""
    cfg = comparison.config
    if cfg.budget.unit == "steps":
        return  # the last stage's steps are set to the budget (`config._stop_at_budget`)
    # Every pipeline runs the same model and task (`config._check_shared`): price them once.
    first = next(iter(comparison.base_configs.values()))
    shape = hub_shape(first.model)
    lengths = task_lengths(first.task).value
    shortest = task_lengths(first.task, shortest=True).value
    for name, config in comparison.base_configs.items():
        reachable = sum(pipeline_flops(config, shape, lengths))
        stop = cfg.stop_point(name)
        for i, stage in enumerate(config.stages[:-1]):
            floor = min(stage.steps, stage.budget_steps or stage.steps) * stage_step_flops_floor(
                shape, stage, shortest)
            if floor >= stop:
                raise ConfigError(
                    f"pipelines.{name}: stages[{i}] alone spends at least {floor:.3g} FLOPs "
                    f"({stage.steps} steps), past the budget point {stop:.3g} it must stop at: "
                    f"lower stages[{i}].steps")
        if reachable < stop:
            last = len(config.stages) - 1
            raise ConfigError(
                f"pipelines.{name}: its stages reach at most {reachable:.3g} FLOPs at their "
                f"configured steps, short of the budget point {stop:.3g}: raise "
                f"stages[{last}].steps (now {config.stages[last].steps}) or lower the budget")
