"""Checkpoints: weights and optimizer buffers as safetensors, everything else as JSON —
never pickle. Files are written under new names and ``checkpoint.json``, which names
them, is replaced last and atomically: a crash at any moment leaves either the old
checkpoint or the new one, never a mix."""
import json
import os
from pathlib import Path

import numpy as np

INDEX = "checkpoint.json"


class CheckpointError(RuntimeError):
    pass


def _write_atomic(path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save(out_dir, step, model_state, optimizer_arrays, meta):
    """Write step ``step``: ``model_state`` and ``optimizer_arrays`` (name → array), and
    ``meta`` (JSON-serialisable) into checkpoint.json."""
    from safetensors.numpy import save_file
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {"model": f"model-{step:07d}.safetensors", "optimizer": f"optimizer-{step:07d}.safetensors"}
    _write_atomic(out_dir / names["model"],
                  lambda p: save_file({k: np.ascontiguousarray(v) for k, v in model_state.items()}, str(p)))
    _write_atomic(out_dir / names["optimizer"],
                  lambda p: save_file({k: np.ascontiguousarray(v) for k, v in optimizer_arrays.items()}, str(p)))
    index = dict(meta, step=step, files=names)
    _write_atomic(out_dir / INDEX, lambda p: p.write_text(json.dumps(index, indent=2)))
    for old in list(out_dir.glob("model-*.safetensors")) + list(out_dir.glob("optimizer-*.safetensors")):
        if old.name not in names.values():
            old.unlink()


def load(out_dir):
    """(meta, model_state, optimizer_arrays) of the checkpoint in ``out_dir``."""
    from safetensors.numpy import load_file
    out_dir = Path(out_dir)
    index_path = out_dir / INDEX
    if not index_path.exists():
        raise CheckpointError(f"checkpoint: no {INDEX} in {out_dir} (train with --out_dir={out_dir} first)")
    try:
        meta = json.loads(index_path.read_text())
        files = meta["files"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint: {index_path} is corrupt ({exc})") from None
    arrays = []
    for key in ("model", "optimizer"):
        path = out_dir / files[key]
        try:
            arrays.append(load_file(str(path)))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint: {path} is missing") from None
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise CheckpointError(f"checkpoint: {path} is corrupt ({exc})") from None
    return meta, arrays[0], arrays[1]
