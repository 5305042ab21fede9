"""The spectral comparison of two checkpoints, one matrix at a time.

    rows = spectral_pass("runs/base/model", "runs/sft/model", cache=Path("runs/spectral"))

For every attention projection (q, k, v, o), MLP matrix (gate, up, down), `embed_tokens` and
`lm_head` of a Hugging Face causal LM saved as safetensors (one file or an index of shards), the
two versions of the matrix are read lazily (`safe_open`: only that tensor is in host memory),
compared on the GPU in float64 when one is present (`spectral.compare`), and freed before the
next. Tied embeddings are compared once (`lm_head` absent from the files). The rows go to a JSON
cache keyed by both checkpoints' file sizes and mtimes, so a second pass is read back.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from ptbench.fixtures.atomic import write_json_atomic
from ptbench.pipelines.spectral import compare

MATRIX = re.compile(r"(?:model\.)?(?:layers\.(?P<layer>\d+)\.(?:self_attn|mlp)\.(?P<proj>[qkvo]_proj|"
                    r"gate_proj|up_proj|down_proj)|(?P<top>embed_tokens|lm_head))\.weight$")


def shards(checkpoint: str | Path) -> dict[str, Path]:
    """tensor name -> safetensors file, for a checkpoint folder (or one .safetensors file)."""
    path = Path(checkpoint)
    if path.is_file():
        files = [path]
    elif (path / "model.safetensors.index.json").exists():
        index = json.loads((path / "model.safetensors.index.json").read_text())
        return {name: path / f for name, f in index["weight_map"].items()}
    else:
        files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"checkpoint: no .safetensors files in {path}")
    from safetensors import safe_open

    out = {}
    for f in files:
        with safe_open(f, framework="pt") as handle:
            out.update({name: f for name in handle.keys()})  # noqa: SIM118 (not a dict)
    return out


def matrices(names: list[str]) -> list[tuple[str, int | None, str]]:
    """(tensor name, layer or None, matrix kind) of the compared matrices, in layer order."""
    found = []
    for name in names:
        m = MATRIX.search(name)
        if m:
            layer = int(m["layer"]) if m["layer"] is not None else None
            found.append((name, layer, m["proj"] or m["top"]))
    return sorted(found, key=lambda t: (t[1] is None, t[1] or 0, t[2]))


def _read(files: dict[str, Path], name: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(files[name], framework="pt") as handle:
        return handle.get_tensor(name)


def _key(*checkpoints: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for files in checkpoints:
        for f in sorted(set(files.values())):
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def spectral_pass(base: str | Path, tuned: str | Path, k: int = 16, cache: Path | None = None,
                  device: str | None = None, progress: bool = True) -> list[dict]:
    """One row per compared matrix: layer, matrix, shape, value_change, the largest left and
    right principal angles (radians) and the mean gapped alignment of the top-k vectors."""
    base_files, tuned_files = shards(base), shards(tuned)
    cached = cache / f"spectral-{_key(base_files, tuned_files)}-k{k}.json" if cache else None
    if cached and cached.exists():
        return json.loads(cached.read_text())["rows"]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    wanted = matrices([n for n in base_files if n in tuned_files])
    if not wanted:
        raise ValueError(f"{base}: no attention, MLP, embedding or lm_head matrix found")
    rows = []
    for name, layer, kind in tqdm(wanted, desc="spectral", unit="matrix", disable=not progress):
        w0 = _read(base_files, name).to(device)
        w1 = _read(tuned_files, name).to(device)
        change = compare(w0, w1, k=k)
        del w0, w1
        aligned = [a for a in change.alignment if a is not None]
        rows.append({"tensor": name, "layer": layer, "matrix": kind,
                     "value_change": change.value_change,
                     "left_angle": max(change.left_angles), "right_angle": max(change.right_angles),
                     "alignment": sum(aligned) / len(aligned) if aligned else None})
    if cached:
        write_json_atomic(cached, {"base": str(base), "tuned": str(tuned), "k": k, "rows": rows})
    return rows


def rewrite_checkpoint(tuned: str | Path, out: str | Path,
                       change: Callable[[str, torch.Tensor], torch.Tensor | None], desc: str,
                       progress: bool = True) -> Path:
    """Copy the checkpoint `tuned` to `out` (safetensors and its other files), each tensor
    replaced by `change(name, tensor)` unless that returns None. One shard in memory at a time;
    `out` appears whole or not at all."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from ptbench.fixtures.atomic import building_dir

    tuned_dir = Path(tuned) if Path(tuned).is_dir() else Path(tuned).parent
    with building_dir(out, replace=True) as staging:
        for f in tuned_dir.iterdir():
            if f.is_file() and f.suffix != ".safetensors" and f.name != "trainer_state.pt":
                shutil.copy2(f, staging / f.name)
        for shard in tqdm(sorted(set(shards(tuned).values())), desc=desc, unit="file",
                          disable=not progress):
            tensors, metadata = {}, None
            with safe_open(shard, framework="pt") as handle:
                metadata = handle.metadata()
                for name in handle.keys():  # noqa: SIM118 (not a dict)
                    w = handle.get_tensor(name)
                    changed = change(name, w)
                    tensors[name] = (w if changed is None else changed).contiguous()
            save_file(tensors, staging / shard.name, metadata=metadata)
    return Path(out)


def restore_checkpoint(base: str | Path, tuned: str | Path, out: str | Path, p: float,
                       q: float = 1.0, device: str | None = None, progress: bool = True) -> Path:
    """Write a copy of `tuned` to `out` in which every compared matrix of the first q fraction
    of layers has the base's singular vectors for its top-p fraction of singular values
    (`spectral.uv_restore`); embed_tokens and lm_head count as outside the layers and are
    restored only when q = 1. One matrix at a time; `out` appears whole or not at all."""
    from ptbench.pipelines.spectral import uv_restore

    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q: expected a fraction in [0, 1], got {q!r}")
    base_files, tuned_files = shards(base), shards(tuned)
    layers = [layer for _, layer, _ in matrices(list(tuned_files)) if layer is not None]
    cut = math.ceil(q * (max(layers) + 1)) if layers else 0
    chosen = {name for name, layer, _ in matrices([n for n in tuned_files if n in base_files])
              if (layer is not None and layer < cut) or (layer is None and q >= 1.0)}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def change(name: str, w: torch.Tensor) -> torch.Tensor | None:
        if name not in chosen:
            return None
        return uv_restore(_read(base_files, name).to(device), w.to(device), p).cpu()

    return rewrite_checkpoint(tuned, out, change, "restore", progress)


def random_perturbation(base: str | Path, tuned: str | Path, out: str | Path, seed: int = 0,
                        progress: bool = True) -> Path:
    """A copy of `base` in which every compared matrix W0 becomes W0 + E, E Gaussian with the
    Frobenius norm of the fine-tuning change ||W1 - W0|| (W1 from `tuned`): the baseline a
    rotation is judged against (any change of that size rotates the singular vectors some)."""
    tuned_files, base_files = shards(tuned), shards(base)
    chosen = {name for name, _, _ in matrices([n for n in base_files if n in tuned_files])}
    generator = torch.Generator().manual_seed(seed)

    def change(name: str, w0: torch.Tensor) -> torch.Tensor | None:
        if name not in chosen:
            return None
        size = float((_read(tuned_files, name).double() - w0.double()).norm())
        noise = torch.randn(w0.shape, generator=generator, dtype=torch.float64)
        return (w0.double() + noise * (size / float(noise.norm()))).to(w0.dtype)

    return rewrite_checkpoint(base, out, change, "perturb", progress)
