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
import re
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
