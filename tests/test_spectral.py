"""Spectral maths on constructed matrices whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from ptbench.pipelines.spectral import compare, gapped, principal_angles, uv_restore


def matrix(s: list[float], rows: int = 6, cols: int = 10, seed: int = 0):
    """W = U diag(s) V^T with random orthonormal U (rows x r) and V (cols x r); also V's
    orthogonal complement."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, len(s), generator=g, dtype=torch.float64))
    full, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    v, rest = full[:, :len(s)], full[:, len(s):]
    return (u * torch.tensor(s, dtype=torch.float64)) @ v.mT, u, v, rest


def rotation(a: torch.Tensor, b: torch.Tensor, theta: float) -> torch.Tensor:
    """The rotation by theta in the plane of orthonormal a, b (identity elsewhere)."""
    n = len(a)
    r = torch.eye(n, dtype=torch.float64)
    r += (math.cos(theta) - 1) * (torch.outer(a, a) + torch.outer(b, b))
    r += math.sin(theta) * (torch.outer(b, a) - torch.outer(a, b))
    return r


def test_a_pure_rotation_moves_vectors_not_values():
    """W -> W R with R turning v_1 by theta out of V's span: singular values and U stay, one
    right principal angle is theta, the others 0."""
    w, _, v, rest = matrix([5.0, 3.0, 2.0, 1.0])
    theta = 0.4
    r = rotation(v[:, 0], rest[:, 0], theta)
    change = compare(w, w @ r, k=4)
    assert change.value_change == pytest.approx(0.0, abs=1e-12)
    assert change.left_angles == pytest.approx([0.0] * 4, abs=1e-6)
    assert change.right_angles == pytest.approx([0.0, 0.0, 0.0, theta], abs=1e-6)
    assert change.alignment[0] == pytest.approx(math.cos(theta), abs=1e-9)
    assert change.alignment[1:] == pytest.approx([1.0, 1.0, 1.0], abs=1e-9)


def test_values_changed_with_vectors_fixed():
    w, u, v, _ = matrix([5.0, 3.0, 2.0, 1.0])
    scaled = (u * torch.tensor([10.0, 6.0, 4.0, 2.0], dtype=torch.float64)) @ v.mT
    change = compare(w, scaled, k=4)
    assert change.value_change == pytest.approx(1.0)
    assert change.max_angle == pytest.approx(0.0, abs=1e-6)


def test_near_equal_singular_values_have_no_alignment():
    s = torch.tensor([5.0, 3.0, 2.99, 1.0])
    assert gapped(s, 4) == [True, False, False, True]
    w, *_ = matrix(s.tolist())
    assert compare(w, w, k=4).alignment[1:3] == [None, None]


def test_uv_restore_onto_itself_is_the_identity_and_undoes_a_rotation():
    w, _, v, rest = matrix([5.0, 3.0, 2.0, 1.0])
    for p in (0.0, 0.25, 1.0):
        assert torch.allclose(uv_restore(w, w, p), w, atol=1e-12)
    rotated = w @ rotation(v[:, 0], rest[:, 0], 0.7)
    assert torch.allclose(uv_restore(w, rotated, 1.0), w, atol=1e-10)  # same values, base vectors
    top = uv_restore(w, rotated, 0.25)  # only v_1 was turned: restoring the top quarter suffices
    assert torch.allclose(top, w, atol=1e-10)
    assert not torch.allclose(uv_restore(w, rotated, 0.0), w, atol=1e-3)


def test_principal_angles_of_known_subspaces_and_bad_input():
    e = torch.eye(3, dtype=torch.float64)
    tilted = torch.stack([e[0], math.cos(0.3) * e[1] + math.sin(0.3) * e[2]], dim=1)
    assert principal_angles(e[:, :2], tilted) == pytest.approx([0.0, 0.3], abs=1e-7)
    with pytest.raises(ValueError, match="expected two matrices of one shape"):
        compare(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="p: expected a fraction in"):
        uv_restore(torch.eye(2), torch.eye(2), 1.5)


def test_a_checkpoint_pass_reads_one_matrix_at_a_time_and_caches(tmp_path):
    """Two saved tiny Qwen2 checkpoints, one matrix of the second rotated: every attention, MLP
    and (tied, once) embedding matrix is compared; only the rotated one shows an angle."""
    from ptbench.fixtures.models.tiny import build_tiny_model
    from ptbench.pipelines.spectral_pass import spectral_pass

    model = build_tiny_model("probe-qwen2", seed=0)
    model.save_pretrained(tmp_path / "base")
    name = "model.layers.0.self_attn.o_proj.weight"
    w = dict(model.named_parameters())[name]
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(w.shape[1], w.shape[1], generator=torch.Generator().manual_seed(1)))
        w.copy_(w @ q)
    model.save_pretrained(tmp_path / "tuned")
    rows = spectral_pass(tmp_path / "base", tmp_path / "tuned", k=4, cache=tmp_path / "cache",
                         progress=False)
    layers = model.config.num_hidden_layers
    assert len(rows) == 7 * layers + 1 and [r["matrix"] for r in rows][-1] == "embed_tokens"
    moved = {r["tensor"] for r in rows if r["right_angle"] > 1e-3}
    assert moved == {name}
    (row,) = [r for r in rows if r["tensor"] == name]
    assert row["value_change"] < 1e-5 and row["left_angle"] < 1e-3
    assert spectral_pass(tmp_path / "base", tmp_path / "tuned", k=4, cache=tmp_path / "cache",
                         progress=False, device="meta-never-used") == rows  # read back


def test_wide_and_tall_matrices_decompose_alike():
    from ptbench.pipelines.spectral import _svd

    w, *_ = matrix([5.0, 3.0, 2.0, 1.0], rows=6, cols=10)
    for m in (w, w.mT):
        u, s, v = _svd(m)
        assert torch.allclose((u * s) @ v.mT, m, atol=1e-12)
        assert torch.allclose(u.mT @ u, torch.eye(u.shape[1], dtype=torch.float64), atol=1e-12)


def test_restoring_a_checkpoint_writes_a_whole_model_restoring_only_the_chosen_layers(tmp_path):
    from safetensors.torch import load_file

    from ptbench.fixtures.models.tiny import build_tiny_model
    from ptbench.pipelines.spectral_pass import restore_checkpoint

    model = build_tiny_model("probe-qwen2", seed=0)
    model.save_pretrained(tmp_path / "base")
    base = load_file(tmp_path / "base" / "model.safetensors")
    layers = model.config.num_hidden_layers
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(layers)]
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:  # rotate each layer's up_proj: singular values kept
            w = params[name]
            r, _ = torch.linalg.qr(torch.randn(w.shape[1], w.shape[1], generator=torch.Generator().manual_seed(2)))
            w.copy_(w @ r)
    model.save_pretrained(tmp_path / "tuned")
    same = restore_checkpoint(tmp_path / "base", tmp_path / "base", tmp_path / "self", p=1.0, progress=False)
    for name, w in load_file(same / "model.safetensors").items():
        assert torch.allclose(w, base[name], atol=1e-5), name  # onto itself: the identity
    half = restore_checkpoint(tmp_path / "base", tmp_path / "tuned", tmp_path / "half", p=1.0, q=0.5,
                              progress=False)
    restored = load_file(half / "model.safetensors")
    for i, name in enumerate(names):
        back = torch.allclose(restored[name], base[name], atol=1e-4)
        assert back == (i < layers / 2), (i, name)  # only the first half of the layers
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(half)  # a whole, loadable checkpoint
    assert torch.equal(dict(reloaded.named_parameters())[names[0]].detach(), restored[names[0]])


def test_a_random_perturbation_has_the_fine_tuning_change_norm_per_matrix(tmp_path):
    from safetensors.torch import load_file

    from ptbench.fixtures.models.tiny import build_tiny_model
    from ptbench.pipelines.spectral_pass import matrices, random_perturbation

    build_tiny_model("probe-qwen2", seed=0).save_pretrained(tmp_path / "base")
    build_tiny_model("probe-qwen2", seed=1).save_pretrained(tmp_path / "tuned")
    noise = random_perturbation(tmp_path / "base", tmp_path / "tuned", tmp_path / "noise", seed=3,
                                progress=False)
    base, tuned, noisy = (load_file(p / "model.safetensors") for p in
                          (tmp_path / "base", tmp_path / "tuned", noise))
    compared = {name for name, _, _ in matrices(list(base))}
    assert compared and compared < set(base)  # norms and biases are not compared
    for name, w0 in base.items():
        if name in compared:
            change = (noisy[name].double() - w0.double()).norm()
            assert float(change) == pytest.approx(float((tuned[name].double() - w0.double()).norm()), rel=1e-5)
            assert not torch.allclose(noisy[name], tuned[name])
        else:
            assert torch.equal(noisy[name], w0), name
