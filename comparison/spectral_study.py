"""The spectral half of a diagnostics study, for one seed: SVD tables base -> SFT -> SFT+RL,
each against a random perturbation of the same norm, and the UV-restore sweep evaluated ID/OOD.

    tables    spectral_pass rows (layer, matrix, value change, principal angles, alignment) for
              base -> SFT and SFT -> SFT+RL, and for each its random-perturbation twin
    restore   for each (p, q): ID and OOD accuracy of the last SFT checkpoint with the reference
              model's singular vectors restored, and the share of the lost OOD accuracy it
              recovers; the reference is the SFT checkpoint at the OOD peak (the tiny base
              model has no OOD ability to lose), and, as the planted case, an unrelated model
              (a different seed's base) whose vectors must not recover anything
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ptbench.comparison.diagnostic_claims import rotation_score
from ptbench.comparison.study_config import SpectralStudy
from ptbench.fixtures.atomic import building_dir
from ptbench.pipelines.evaluation import greedy_accuracy
from ptbench.pipelines.spectral_pass import random_perturbation, restore_checkpoint, spectral_pass


@dataclass(frozen=True)
class Checkpoints:
    """The models of one seed, as save_pretrained folders."""

    base: Path
    peak: Path
    """The SFT checkpoint with the highest OOD accuracy (the restore reference)."""
    sft: Path
    """The last SFT checkpoint."""
    rl: Path
    """SFT+RL: the RL run from the last SFT checkpoint."""
    unrelated: Path
    """A model unrelated to this seed's (another seed's base): the planted restore."""


def export_model(model: torch.nn.Module, tokenizer, out: Path) -> Path:
    """`save_pretrained` of model and tokenizer into `out`, whole or not at all."""
    if out.exists():
        return out
    with building_dir(out) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out


def evaluate_checkpoint(path: Path, task, examples: dict[str, list], max_new_tokens: int
                        ) -> dict[str, float]:
    """Greedy accuracy of a saved model on each named list of held-out examples."""
    from ptbench.fixtures.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(str(path), dtype=torch.float32)
    tokenizer = load_tokenizer(str(path))
    return {name: greedy_accuracy(model, tokenizer, task, ex, max_new_tokens)
            for name, ex in examples.items()}


def pass_with_random_twin(before: Path, after: Path, noise: Path, k: int, seed: int,
                          cache: Path, progress: bool = False) -> tuple[list[dict], list[dict]]:
    """spectral_pass rows of before -> after and of before -> a random perturbation of the same
    norm per matrix (written to `noise` once)."""
    if not noise.exists():
        random_perturbation(before, after, noise, seed=seed, progress=progress)
    return (spectral_pass(before, after, k=k, cache=cache, progress=progress),
            spectral_pass(before, noise, k=k, cache=cache, progress=progress))


def spectral_tables(models: Checkpoints, work: Path, k: int, seed: int) -> dict[str, list[dict]]:
    """The four spectral passes of one seed (cached under `work`)."""
    pairs = {"sft": (models.base, models.sft), "rl": (models.sft, models.rl)}
    tables = {}
    for name, (before, after) in pairs.items():
        tables[name], tables[f"random-{name}"] = pass_with_random_twin(
            before, after, work / f"random-{name}", k, seed, work / "cache")
    return tables


def rotation_scores(tables: dict[str, list[dict]]) -> dict[str, float]:
    """`rotation_score` of each transition against its random twin."""
    return {name: rotation_score(tables[name], tables[f"random-{name}"]) for name in ("sft", "rl")}


def restore_sweep(models: Checkpoints, work: Path, config: SpectralStudy, task,
                  examples: dict[str, list], max_new_tokens: int) -> list[dict]:
    """ID/OOD accuracy of the last SFT checkpoint restored from the OOD-peak checkpoint at every
    (p, q), and from the unrelated model at the claim's (p, q)."""
    rows = []
    settings = [("peak", models.peak, p, q) for p in config.p for q in config.q]
    settings.append(("unrelated", models.unrelated, config.claim_p, config.claim_q))
    for reference, path, p, q in settings:
        out = work / f"restore-{reference}-p{p:g}-q{q:g}"
        if not out.exists():
            restore_checkpoint(path, models.sft, out, p, q, progress=False)
        scores = evaluate_checkpoint(out, task, examples, max_new_tokens)
        rows.append({"reference": reference, "p": p, "q": q, **scores})
    return rows
