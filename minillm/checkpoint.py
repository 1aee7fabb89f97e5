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
from .fileio import check_plain_name, ensure_writable, read_text

INDEX = "checkpoint.json"
FORMAT = "minillm-checkpoint/2"
TOKENIZER = "tokenizer.json"
# the names this module gives weight files; nothing else is ever removed
OWN_WEIGHTS = re.compile(r"(model|optimizer)-\d{7}\.safetensors")
SHA256 = re.compile(r"[0-9a-f]{64}")


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


def is_crash_remnant(name):
    """A file a first save that never finished leaves behind (no index yet): its weights
    or a temporary file of this module's names. Everything else in a folder without an
    index is the user's."""
    base = name.removesuffix(".tmp")
    return OWN_WEIGHTS.fullmatch(base) is not None or base == INDEX and name != base


def prepare_folder(out_dir, resume=False):
    """Check, before any training, that ``out_dir`` can hold a run: a folder (created if
    missing) that is writable and is empty, a minillm run, or holds only what a crashed
    first save left. Returns the step of the run already there (None if none); never
    removes anything."""
    out_dir = ensure_writable(out_dir, "out_dir")
    if (out_dir / INDEX).exists():
        return read_index(out_dir)["step"]
    if resume:
        raise CheckpointError(f"cannot resume: no {INDEX} in {out_dir} (train with --out_dir={out_dir} first)")
    foreign = sorted(p.name for p in out_dir.iterdir() if not is_crash_remnant(p.name))
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
    # ^C or SIGTERM wait until the save is done (seconds at most), so a checkpoint is never
    # cut in half; a full disk still fails it, and the finally then removes what it wrote
    with fileio.signals_deferred():
        try:
            for key, arrays, metadata in (("model", model_state, header), ("optimizer", optimizer_arrays, None)):
                write_atomic(out_dir / names[key], lambda p, arrays=arrays, metadata=metadata: save_file(
                    {k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(p), metadata=metadata))
            if tokenizer is not None:
                write_atomic(out_dir / TOKENIZER, lambda p: p.write_text(
                    json.dumps(tokenizer.to_dict(), ensure_ascii=False), encoding="utf-8"))
                names["tokenizer"] = TOKENIZER
            index = dict(meta, format=FORMAT, step=step, files=names,
                         sha256={key: sha256_of(out_dir / name) for key, name in names.items()})
            write_atomic(out_dir / INDEX, lambda p: p.write_text(json.dumps(index, indent=2)))
        finally:
            _settle(out_dir, previous | set(names.values()))


def _settle(out_dir, candidates):
    """Remove the weight files among ``candidates`` (the old index's and this save's) that
    the index now on disk does not name, whichever it is: an interrupted save leaves one
    complete checkpoint and no orphans. When the index cannot be read, nothing is removed."""
    try:
        named = set(read_index(out_dir)["files"].values()) if (Path(out_dir) / INDEX).exists() else set()
    except CheckpointError:
        return
    for name in candidates - named:
        if OWN_WEIGHTS.fullmatch(name):
            (Path(out_dir) / name).unlink(missing_ok=True)


def read_index(out_dir):
    """checkpoint.json, checked: a JSON object whose files are plain names in ``out_dir``."""
    index_path = Path(out_dir) / INDEX
    if not index_path.exists():
        raise CheckpointError(f"checkpoint: no {INDEX} in {out_dir} (train with --out_dir={out_dir} first)")
    try:
        meta = json.loads(read_text(index_path, "checkpoint"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < 10 ** 12:
        raise CheckpointError(f"checkpoint: {index_path} has step {step!r}; expected an integer >= 0")
    sums = meta.get("sha256")
    if meta.get("format") == FORMAT and sums is None:
        raise CheckpointError(f"checkpoint: {index_path} is corrupt: it has no sha256 for its files")
    if sums is not None and not (isinstance(sums, dict) and set(sums) == set(files) and
                                 all(isinstance(v, str) and SHA256.fullmatch(v) for v in sums.values())):
        raise CheckpointError(f"checkpoint: {index_path} is corrupt: its sha256 must give a SHA-256 (64 hex "
                              f"digits) for each of its files ({', '.join(files)})")
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
    if "sha256" not in meta:  # this header is format 2's, whose index always has checksums
        raise CheckpointError(f"checkpoint: {path.parent / INDEX} lost the sha256 its files were saved with")
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
