"""Writing outputs without losing anything: every file goes to ``NAME.tmp`` and is renamed
into place, so a crash or a full disk leaves the old file (and no partial one); and an
output folder is checked before any work starts — writable, and holding nothing of the
user's that the command would overwrite."""
import contextlib
import os
import signal
import tempfile
from pathlib import Path


# what `export --hf` and `finetune` write into a Hugging Face folder
HF_FOLDER_FILES = ("model.safetensors", "config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "tokenizer-minillm.json", "finetune.json")


class OutputError(RuntimeError):
    pass


def temporary_for(path):
    """``path``'s temporary name, refused when something not ours sits there: writing
    through a symbolic link would change a file outside the folder."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.is_symlink() or (tmp.exists() and not tmp.is_file()):
        raise OutputError(f"cannot write {path}: {tmp} is a symbolic link or not a regular file; minillm writes "
                          f"its temporary file there, so remove it first")
    return tmp


def write_atomic(path, write):
    """``write(tmp)`` then rename onto ``path``. A failed write (disk full, no permission)
    removes its partial file and raises OutputError; ``path`` keeps its old content."""
    path = Path(path)
    tmp = temporary_for(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # ours: we just created it
        if isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":
            raise OutputError(f"cannot write {path}: {exc}; the partial file was removed and the "
                              f"previous version, if any, is intact") from None
        raise


# folders this process created for its outputs: a command that fails removes them again
# if they are still empty, so a failed command leaves nothing behind
created_folders = []


def ensure_writable(folder, option):
    """Create ``folder`` if needed and prove it takes a file (a probe we remove again)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--{option}={folder} is a file, not a folder")
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        created_folders.extend(missing)  # deepest first
        with tempfile.TemporaryFile(dir=folder, prefix=".minillm-write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"--{option}={folder} is not writable ({exc.strerror or exc})") from None
    return folder


def ensure_output_folder(folder, option, ours, marker):
    """A folder a command fills with the files named ``ours``: new, empty, or one it wrote
    before (``marker`` is there and nothing else but ``ours``); otherwise refused, so a
    user's folder (a downloaded model, a corpus) is never overwritten."""
    folder = ensure_writable(folder, option)
    present = {p.name for p in folder.iterdir()}
    foreign = sorted(present - set(ours) - {name + ".tmp" for name in ours})
    if present and (foreign or marker not in present):
        listed = ", ".join((foreign or sorted(present))[:5])
        raise OutputError(f"--{option}={folder} already holds files minillm did not write there ({listed}); "
                          f"they would be overwritten or mixed with the output: choose an empty or new folder")
    return folder


@contextlib.contextmanager
def signals_deferred():
    """Hold ^C and SIGTERM back while a few files are put in order (the operating system
    keeps them pending, and they arrive when the block ends), so a cleanup is never cut
    in half."""
    signals = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def remove_created_folders():
    """Remove the folders ``ensure_writable`` created, deepest first, where still empty."""
    while created_folders:
        folder = created_folders.pop(0)
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty (it holds outputs) or already gone: leave it


def read_text(path, what):
    """A small text file's content, refused unless it is a regular file: reading a FIFO
    would wait forever, and a folder is no file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} is missing or not a regular file")
    return path.read_text(encoding="utf-8")


def check_plain_name(name, where, what):
    """``name`` is a file name inside its folder: no separators, not ``..``, not absolute."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\0" in name:
        raise ValueError(f"{where} names {what} {name!r}; expected a plain file name inside its folder")
    return name
