"""Checkpoints: weights and optimizer buffers as safetensors, everything else as JSON —
never pickle. Files are written under new names and ``checkpoint.json``, which names
them, is replaced last and atomically: a crash at any moment leaves either the old
checkpoint or the new one, never a mix.

What a run folder holds is never guessed from a glob. ``checkpoint.json`` names its files
and records each one's SHA-256, so a damaged file is caught at load instead of loading
as garbage; after a save only the files the *previous* index named are removed, so a
file the user keeps beside the run is never touched. Non-finite weights are never
written: the last good checkpoint stays."""
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from . import fileio
from .fileio import check_plain_name, ensure_writable

INDEX = "checkpoint.json"
FORMAT = "minillm-checkpoint/2"
TOKENIZER = "tokenizer.json"
# the names this module gives weight files; nothing else is ever removed
OWN_WEIGHTS = re.compile(r"(model|optimizer)-\d{7}\.safetensors")
# what else a run folder holds (written by train.py): a folder of only these is a run
RUN_FILES = (INDEX, TOKENIZER, "metrics.json", "loss.png")


class CheckpointError(RuntimeError):
    pass


def write_atomic(path, write):
    try:
        fileio.write_atomic(path, write)
    except fileio.OutputError as exc:
        raise CheckpointError(f"checkpoint: {exc}") from None


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_run_file(name):
    base = name[:-4] if name.endswith(".tmp") else name
    return base in RUN_FILES or OWN_WEIGHTS.fullmatch(base) is not None


def _is_own_tokenizer(path):
    """minillm's tokenizer JSON, not a Hugging Face ``tokenizer.json`` of the same name."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("kind") in ("char", "bpe")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def prepare_folder(out_dir, resume=False):
    """Check, before any training, that ``out_dir`` can hold a run: a folder (created if
    missing) that is writable and is empty, a minillm run, or holds only a run's files.
    Returns the step of the run already there (None if none); never removes anything."""
    out_dir = ensure_writable(out_dir, "out_dir")
    if (out_dir / INDEX).exists():
        return read_index(out_dir)["step"]
    if resume:
        raise CheckpointError(f"cannot resume: no {INDEX} in {out_dir} (train with --out_dir={out_dir} first)")
    foreign = sorted(p.name for p in out_dir.iterdir() if not is_run_file(p.name) or
                     (p.name == TOKENIZER and not _is_own_tokenizer(p)))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise CheckpointError(f"--out_dir={out_dir} already holds files that are not a minillm run ({shown}); "
                              f"a run would write beside them: choose an empty or new folder")
    return None


def _check_finite(arrays, what):
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise CheckpointError(f"checkpoint: {what} {name} holds non-finite values (nan or inf); "
                                  f"nothing was written and the last good checkpoint stays")


def save(out_dir, step, model_state, optimizer_arrays, meta, tokenizer=None):
    """Write step ``step``: ``model_state`` and ``optimizer_arrays`` (name → array), the
    tokenizer, and ``meta`` (JSON-serialisable) into checkpoint.json. The run's config
    (``meta["config"]``) also goes into the weights file's own header, which the checksum
    covers, so a hand edit of checkpoint.json's config is caught at load."""
    from safetensors.numpy import save_file
    _check_finite(model_state, "weight")
    _check_finite(optimizer_arrays, "optimizer buffer")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        previous = set(read_index(out_dir)["files"].values()) if (out_dir / INDEX).exists() else set()
    except CheckpointError:
        previous = set()  # a damaged index names nothing we may remove
    names = {"model": f"model-{step:07d}.safetensors", "optimizer": f"optimizer-{step:07d}.safetensors"}
    header = {"minillm_config": json.dumps(meta.get("config", {}), sort_keys=True)}
    write_atomic(out_dir / names["model"], lambda p: save_file(
        {k: np.ascontiguousarray(v) for k, v in model_state.items()}, str(p), metadata=header))
    write_atomic(out_dir / names["optimizer"], lambda p: save_file(
        {k: np.ascontiguousarray(v) for k, v in optimizer_arrays.items()}, str(p)))
    if tokenizer is not None:
        write_atomic(out_dir / TOKENIZER, lambda p: p.write_text(json.dumps(tokenizer.to_dict(), ensure_ascii=False),
                                                                  encoding="utf-8"))
        names["tokenizer"] = TOKENIZER
    index = dict(meta, format=FORMAT, step=step, files=names,
                 sha256={key: sha256_of(out_dir / name) for key, name in names.items()})
    write_atomic(out_dir / INDEX, lambda p: p.write_text(json.dumps(index, indent=2)))
    for old in previous - set(names.values()):
        if OWN_WEIGHTS.fullmatch(old):
            (out_dir / old).unlink(missing_ok=True)


def read_index(out_dir):
    """checkpoint.json, checked: a JSON object whose files are plain names in ``out_dir``."""
    index_path = Path(out_dir) / INDEX
    if not index_path.exists():
        raise CheckpointError(f"checkpoint: no {INDEX} in {out_dir} (train with --out_dir={out_dir} first)")
    try:
        meta = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint: {index_path} is corrupt ({exc})") from None
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not {"model", "optimizer"} <= files.keys():
        raise CheckpointError(f"checkpoint: {index_path} is corrupt (expected an object whose \"files\" names "
                              f"the model and optimizer files)")
    for key, name in files.items():
        try:
            check_plain_name(name, f"checkpoint: {index_path}", f"its {key} file")
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    step = meta.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"checkpoint: {index_path} has step {step!r}; expected an integer >= 0")
    if not isinstance(meta.get("config", {}), dict):
        raise CheckpointError(f"checkpoint: {index_path} has a config that is not an object")
    return meta


def _verify(out_dir, meta):
    """Every named file exists and, where the index records one, matches its SHA-256
    (checkpoints written before format 2 have none)."""
    sums = meta.get("sha256") or {}
    for key, name in meta["files"].items():
        path = Path(out_dir) / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint: {path} is missing")
        if key in sums and sha256_of(path) != sums[key]:
            raise CheckpointError(f"checkpoint: {path} is corrupt (its SHA-256 differs from the one {INDEX} "
                                  f"recorded: the file was damaged or replaced)")


def _check_config(path, meta, saved_header):
    """The config in checkpoint.json against the copy in the weights' header."""
    if "minillm_config" not in (saved_header or {}):
        return
    try:
        saved = json.loads(saved_header["minillm_config"])
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint: {path} has a damaged config in its header") from None
    for key, value in meta.get("config", {}).items():
        if key in saved and saved[key] != value:
            raise CheckpointError(f"checkpoint: {INDEX} says {key}={value!r} but {path.name} was saved with "
                                  f"{key}={saved[key]!r} ({INDEX} was edited; restore the value or retrain)")


def load(out_dir):
    """(meta, model_state, optimizer_arrays) of the checkpoint in ``out_dir``, every file
    checked against the checksums in its index."""
    from safetensors import safe_open
    out_dir = Path(out_dir)
    meta = read_index(out_dir)
    _verify(out_dir, meta)
    arrays = []
    for key in ("model", "optimizer"):
        path = out_dir / meta["files"][key]
        try:
            with safe_open(str(path), "np") as f:
                if key == "model":
                    _check_config(path, meta, f.metadata())
                arrays.append({name: f.get_tensor(name) for name in f.keys()})
        except CheckpointError:
            raise
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise CheckpointError(f"checkpoint: {path} is corrupt ({exc})") from None
    return meta, arrays[0], arrays[1]
