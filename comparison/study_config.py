"""The diagnostics study file: which runs explain why pipelines differ, on which task, over which
seeds, with which premise thresholds, validated once before any training.

    name, seeds, task              as in a comparison file
    sft_config, rl_config, rl_then_sft_config
                                   ordinary pipeline configs whose stages the study reuses
    sft      {steps, checkpoints, eval_every}       one SFT run per seed, `checkpoints` saved
                                                     evenly (the SFT-length sweep, the CE floor)
    rl       {steps, eval_every}                    RL from SFT checkpoints on both sides of the
                                                     OOD peak; eval points = truncation points
    reverse  {rl_steps, sft_steps, eval_every}      RL from the base, then SFT; and SFT after
                                                     the RL from the last SFT checkpoint (an RL
                                                     run near the best reward)
    spectral {k, p, q, claim_p, claim_q}            SVD tables and the UV-restore sweep
    premises                                         `diagnostic_claims.Premises`, fixed here
    exchange_rate                                    lambda: one unit of reward is worth lambda
                                                     nats of SFT loss (the optimal RL duration)
    expect                                           the verdicts recorded with the study

Every run has diagnostics switched on (`pipelines.diagnostics`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptbench.comparison.diagnostic_claims import Premises
from ptbench.pipelines.config import (
    ConfigError,
    DiagnosticsConfig,
    PipelineConfig,
    TaskConfig,
    from_dict,
    load_file,
    read_mapping,
    require,
)
from ptbench.pipelines.overrides import apply_overrides

CLAIM_KEYS = ("ce_rises_during_rl", "reward_falls_during_sft", "reward_falls_during_sft_after_rl",
              "sft_vectors_rotate_more", "rl_vectors_rotate_more", "restore_recovers",
              "rl_recovers_ood", "unrelated_restore_recovers")
CLAIM_VERDICTS = ("held", "not held", "inconclusive", "premise not met")


@dataclass(frozen=True)
class SftSweep:
    steps: int = 2000
    checkpoints: int = 4
    """Checkpoints saved evenly along the run, the last at `steps` (at most 4)."""
    eval_every: int = 250
    stage: dict = field(default_factory=dict)
    """Fields of the SFT stage to change (e.g. {lr_schedule: cosine}: converged at the end)."""

    def __post_init__(self) -> None:
        require(1 <= self.checkpoints <= 4, "checkpoints", "an integer between 1 and 4", self.checkpoints)
        require(self.steps >= self.checkpoints and self.steps % self.checkpoints == 0, "steps",
                f"a positive multiple of checkpoints ({self.checkpoints})", self.steps)
        require(self.eval_every >= 1, "eval_every", "an integer >= 1", self.eval_every)

    @property
    def checkpoint_steps(self) -> list[int]:
        every = self.steps // self.checkpoints
        return [every * (i + 1) for i in range(self.checkpoints)]


@dataclass(frozen=True)
class RlAfterSft:
    steps: int = 150
    eval_every: int = 10
    """Every eval point is a truncation point of the truncated-RL sweep."""

    def __post_init__(self) -> None:
        require(self.steps >= 1, "steps", "an integer >= 1", self.steps)
        require(1 <= self.eval_every <= self.steps, "eval_every", f"an integer in [1, {self.steps}]",
                self.eval_every)


@dataclass(frozen=True)
class RlThenSft:
    rl_steps: int = 300
    sft_steps: int = 600
    eval_every: int = 50

    def __post_init__(self) -> None:
        for name in ("rl_steps", "sft_steps", "eval_every"):
            require(getattr(self, name) >= 1, name, "an integer >= 1", getattr(self, name))


@dataclass(frozen=True)
class SpectralStudy:
    k: int = 16
    """Top singular directions compared per matrix."""
    p: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0])
    """UV restore: fractions of the top singular values whose vectors are restored."""
    q: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])
    """UV restore: fractions of the first layers restored."""
    claim_p: float = 0.2
    claim_q: float = 0.25
    """The restore claim is judged at the paper's setting (top 20%, first 25% of layers)."""

    def __post_init__(self) -> None:
        require(self.k >= 1, "k", "an integer >= 1", self.k)
        for name in ("p", "q"):
            values = getattr(self, name)
            require(len(values) >= 1 and all(0 < v <= 1 for v in values), name,
                    "a non-empty list of fractions in (0, 1]", values)
        require(0 < self.claim_p <= 1, "claim_p", "a fraction in (0, 1]", self.claim_p)
        require(0 < self.claim_q <= 1, "claim_q", "a fraction in (0, 1]", self.claim_q)


@dataclass(frozen=True)
class StudyConfig:
    name: str
    task: TaskConfig
    sft_config: str
    """A pipeline config whose first stage is SFT (relative to this file)."""
    rl_config: str
    """A pipeline config whose last stage is RL: the RL after SFT."""
    rl_then_sft_config: str
    """A pipeline config with an RL stage then an SFT stage."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sft: SftSweep = field(default_factory=SftSweep)
    rl: RlAfterSft = field(default_factory=RlAfterSft)
    reverse: RlThenSft = field(default_factory=RlThenSft)
    spectral: SpectralStudy = field(default_factory=SpectralStudy)
    premises: Premises = field(default_factory=Premises)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    exchange_rate: float = 1.0
    expect: dict[str, str] = field(default_factory=dict)
    """Claim key -> the verdict recorded when the study was committed; `pytest bench/` fails
    when a verdict changes, whichever way (a claim that does not hold is not a failure)."""
    description: str = ""

    def __post_init__(self) -> None:
        for key, verdict in self.expect.items():
            require(key in CLAIM_KEYS, f"expect.{key}", f"a claim key, one of {CLAIM_KEYS}", key)
            require(verdict in CLAIM_VERDICTS, f"expect.{key}", f"one of {CLAIM_VERDICTS}", verdict)
        require(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), "seeds",
                "a non-empty list of distinct seeds", self.seeds)
        require(self.exchange_rate > 0, "exchange_rate", "a float > 0", self.exchange_rate)


def setting(key: str, value: Any) -> str:
    """One `--set` override string."""
    return f"{key}={json.dumps(value)}"


@dataclass(frozen=True)
class Study:
    """A validated study file and the pipeline configs its runs start from."""

    config: StudyConfig
    path: Path
    raw: dict[str, dict]
    """The three pipeline configs as mappings, the study's task imposed."""

    def _build(self, which: str, settings: Sequence[str], where: str) -> PipelineConfig:
        data = apply_overrides(self.raw[which], list(settings), PipelineConfig)
        try:
            return from_dict(PipelineConfig, data, where)
        except ConfigError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None

    def _common(self, seed: int) -> list[str]:
        return [setting("seed", seed), setting("diagnostics", self.config.diagnostics.__dict__)]

    def sft_run(self, seed: int) -> PipelineConfig:
        """The SFT-length sweep: the SFT stage alone, checkpoints evenly, eval at each."""
        c = self.config.sft
        sft = dict(self.raw["sft"]["stages"][0], **c.stage, steps=c.steps)
        return self._build("sft", [*self._common(seed), setting("stages", [sft]),
                                   setting("checkpoint_every", c.steps // c.checkpoints),
                                   setting("eval.every", c.eval_every),
                                   setting("eval.at_steps", c.checkpoint_steps)], "sft_config")

    def rl_run(self, seed: int, checkpoint: str | Path) -> PipelineConfig:
        """RL (the RL config's last stage) from an SFT checkpoint, evaluated every eval_every."""
        c = self.config.rl
        rl = dict(self.raw["rl"]["stages"][-1], steps=c.steps)
        return self._build("rl", [*self._common(seed), setting("model", str(checkpoint)),
                                  setting("stages", [rl]), setting("eval.every", c.eval_every),
                                  setting("checkpoint_every", 0)], "rl_config")

    def sft_after_rl_run(self, seed: int, checkpoint: str | Path) -> PipelineConfig:
        """SFT (the SFT config's stage, reverse.sft_steps) from the end of an RL run."""
        c = self.config.reverse
        sft = dict(self.raw["sft"]["stages"][0], steps=c.sft_steps)
        return self._build("sft", [*self._common(seed), setting("model", str(checkpoint)),
                                   setting("stages", [sft]), setting("eval.every", c.eval_every),
                                   setting("checkpoint_every", 0)], "sft_config")

    def reverse_run(self, seed: int) -> PipelineConfig:
        c = self.config.reverse
        rl, sft = (dict(s) for s in self.raw["rl_then_sft"]["stages"][:2])
        return self._build("rl_then_sft", [*self._common(seed),
                                           setting("stages", [dict(rl, steps=c.rl_steps),
                                                              dict(sft, steps=c.sft_steps)]),
                                           setting("eval.every", c.eval_every),
                                           setting("checkpoint_every", 0)], "rl_then_sft_config")


def _pipeline(path: Path, field_name: str, study: StudyConfig, kinds: tuple[str, ...]) -> dict:
    data = dict(read_mapping(path, f"{field_name} (a pipeline config)"))
    found = tuple(s.get("kind") for s in data.get("stages") or [])
    ok = found[: len(kinds)] == kinds if field_name != "rl_config" else found[-1:] == kinds
    require(ok, field_name, f"a pipeline whose stages are {' then '.join(kinds)}"
            + (" (last)" if field_name == "rl_config" else ""), list(found))
    data["task"] = {"name": study.task.name, "options": dict(study.task.options)}
    return data


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """Read and validate a study file and the pipeline configs it names."""
    path = Path(path)
    config = load_file(StudyConfig, path, overrides, what="study")
    here = path.resolve().parent
    try:
        raw = {"sft": _pipeline(here / config.sft_config, "sft_config", config, ("sft",)),
               "rl": _pipeline(here / config.rl_config, "rl_config", config, ("rl",)),
               "rl_then_sft": _pipeline(here / config.rl_then_sft_config, "rl_then_sft_config",
                                        config, ("rl", "sft"))}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    study = Study(config, path, raw)
    for seed in config.seeds[:1]:  # every run's config validates before anything trains
        study.sft_run(seed), study.rl_run(seed, "checkpoint"), study.reverse_run(seed)
        study.sft_after_rl_run(seed, "checkpoint")
    return study
