"""How fine-tuning changed a weight matrix: singular values against singular vectors.

For W0 (base) and W1 (fine-tuned) with SVDs W = U diag(s) V^T (s descending):

    value change      ||s1 - s0|| / ||s0||                       (0: the spectrum is unchanged)
    principal angles  theta_j = arccos(sigma_j(U0_k^T U1_k)),     j = 1..k, for the top-k left
                      singular subspaces; the same for V (right). A pure rotation W -> W R moves
                      V (V1 = R^T V0) and leaves s and U unchanged.
    alignment         |<u0_i, u1_i>| per singular vector i, only where s0_i is separated from its
                      neighbours by a relative gap: near-equal singular values span a subspace in
                      which any change rotates the individual vectors, so their alignment means
                      nothing (the subspace angles above still do).

UV restore (arXiv 2508.16546) keeps the fine-tuned singular values and puts back the base
model's singular vectors for the top-p fraction of them:

    W' = U0[:, :m] diag(s1[:m]) V0[:, :m]^T + U1[:, m:] diag(s1[m:]) V1[:, m:]^T,  m = ceil(p r)

so p = 1 gives U0 diag(s1) V0^T and restoring a matrix onto itself returns it unchanged.
All maths in float64 on the matrix's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

GAP = 0.05
"""Relative gap a singular value needs from both neighbours for its vector's alignment to count."""


@dataclass(frozen=True)
class MatrixChange:
    """What changed in one matrix."""

    value_change: float
    """||s1 - s0|| / ||s0||."""
    left_angles: list[float]
    """Principal angles (radians, ascending) between the top-k left singular subspaces."""
    right_angles: list[float]
    alignment: list[float | None]
    """|<v0_i, v1_i>| of the top-k right singular vectors; None where s0_i has no gap."""

    @property
    def max_angle(self) -> float:
        """The largest principal angle, left or right (radians)."""
        return max(self.left_angles + self.right_angles)


def _svd(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, s, V) of w in float64. A wide matrix is decomposed through its transpose (W^T =
    V diag(s) U^T): LAPACK is about 10x faster on the tall orientation (measured, 896 x 4864)."""
    w = w.detach().to(torch.float64)
    if w.shape[0] < w.shape[1]:
        v, s, uh = torch.linalg.svd(w.mT, full_matrices=False)
        return uh.mT, s, v
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    return u, s, vh.mT


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Principal angles (radians, ascending) between the column spaces of orthonormal a and b."""
    cos = torch.linalg.svdvals(a.mT @ b).clamp(max=1.0)
    return sorted(float(x) for x in torch.arccos(cos))


def gapped(s: torch.Tensor, k: int, gap: float = GAP) -> list[bool]:
    """For each of the top-k singular values: is it separated from both neighbours by `gap`
    relative to itself?"""
    out = []
    for i in range(k):
        neighbours = [s[j] for j in (i - 1, i + 1) if 0 <= j < len(s)]
        out.append(bool(s[i] > 0) and all(abs(s[i] - n) > gap * s[i] for n in neighbours))
    return out


def compare(w0: torch.Tensor, w1: torch.Tensor, k: int = 16, gap: float = GAP) -> MatrixChange:
    """Singular value change, principal angles of the top-k subspaces, gapped alignments."""
    if w0.shape != w1.shape or w0.dim() != 2:
        raise ValueError(f"expected two matrices of one shape, got {tuple(w0.shape)} and {tuple(w1.shape)}")
    u0, s0, v0 = _svd(w0)
    u1, s1, v1 = _svd(w1)
    k = min(k, len(s0))
    align = [float(abs(v0[:, i] @ v1[:, i])) if ok else None
             for i, ok in enumerate(gapped(s0, k, gap))]
    return MatrixChange(value_change=float(torch.linalg.vector_norm(s1 - s0) / torch.linalg.vector_norm(s0)),
                        left_angles=principal_angles(u0[:, :k], u1[:, :k]),
                        right_angles=principal_angles(v0[:, :k], v1[:, :k]), alignment=align)


def uv_restore(w_base: torch.Tensor, w_tuned: torch.Tensor, p: float) -> torch.Tensor:
    """The tuned matrix with the base's singular vectors for its top-p fraction of singular
    values (the tuned singular values kept), in the tuned matrix's dtype."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: expected a fraction in [0, 1], got {p!r}")
    if w_base.shape != w_tuned.shape:
        raise ValueError(f"expected matrices of one shape, got {tuple(w_base.shape)} and {tuple(w_tuned.shape)}")
    u0, _, v0 = _svd(w_base)
    u1, s1, v1 = _svd(w_tuned)
    m = math.ceil(p * len(s1))
    u = torch.cat([u0[:, :m], u1[:, m:]], dim=1)
    v = torch.cat([v0[:, :m], v1[:, m:]], dim=1)
    return ((u * s1) @ v.mT).to(w_tuned.dtype)
