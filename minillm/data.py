"""Data: the embedded corpus, any text file, a Markov source with a known entropy rate,
and a small sentiment-style classification set."""
import csv
import importlib
import inspect
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_CHARS = 1000  # fewer characters than this cannot fill a train and a validation split

# Standard-library modules whose docstrings make the default corpus: plain English about
# programming, on every machine, no download. A fixed list keeps it the same everywhere.
_MODULES = ("abc argparse array ast asyncio base64 bisect calendar cmath codecs collections colorsys "
            "contextlib copy csv dataclasses datetime decimal difflib email enum fileinput fnmatch "
            "fractions ftplib functools getopt gettext glob gzip hashlib heapq hmac html http "
            "imaplib inspect io ipaddress itertools json keyword linecache locale logging lzma "
            "mailbox math mimetypes numbers operator optparse os pathlib pickle pkgutil platform "
            "plistlib poplib pprint queue quopri random re reprlib sched secrets selectors shelve "
            "shlex shutil signal smtplib socket socketserver sqlite3 ssl stat statistics string "
            "struct subprocess sysconfig tarfile tempfile textwrap threading timeit token tokenize "
            "trace traceback types typing unittest urllib uuid warnings wave weakref xml zipfile "
            "zipimport zlib").split()


@dataclass
class Corpus:
    name: str
    text: str
    train: str
    val: str


def _cache_dir():
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(root) / "minillm" / "corpus"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _docstrings():
    """Docstrings of the listed modules and their public classes and functions, in a
    fixed order, each as a paragraph."""
    seen, parts = set(), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _MODULES:
            try:
                module = importlib.import_module(name)
            except Exception:  # a module missing from this Python build is simply left out
                continue
            objects = [module] + [getattr(module, attr) for attr in sorted(vars(module))
                                  if not attr.startswith("_")]
            for obj in objects:
                if not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isfunction(obj)):
                    continue
                if getattr(obj, "__module__", name) not in (name, None) and obj is not module:
                    continue
                doc = inspect.getdoc(obj)
                if doc and len(doc) > 40 and doc not in seen:
                    seen.add(doc)
                    parts.append(doc.strip())
    return "\n\n".join(parts) + "\n"


def _split(name, text, val_fraction=0.1):
    if len(text) < MIN_CHARS:
        raise ValueError(f"corpus {name!r}: {len(text)} characters is too small; need at least {MIN_CHARS}")
    cut = int(len(text) * (1 - val_fraction))
    return Corpus(name, text, text[:cut], text[cut:])


def corpus_file(source="python-docs"):
    """The embedded corpus's text file (built on first use, cached in ~/.cache/minillm)."""
    if source != "python-docs":
        raise ValueError(f"corpus_file: only 'python-docs' is built here; got {source!r}")
    path = _cache_dir() / f"python-docs-{sys.version_info.major}.{sys.version_info.minor}.txt"
    if not path.exists():
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(_docstrings(), encoding="utf-8")
        os.replace(tmp, path)
    return path


def corpus(source="python-docs"):
    """``"python-docs"`` (built on first use, cached in ~/.cache/minillm) or a path to a
    UTF-8 text file. The last 10% is the validation split."""
    if source == "python-docs":
        return _split(source, corpus_file(source).read_text(encoding="utf-8"))
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"corpus: {source!r} is neither 'python-docs' nor a readable file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"corpus: {source} is not UTF-8 text ({exc})") from None
    return _split(str(path), text)


def batches(tokens, block_size, batch_size, rng):
    """A random batch of (x, y) windows, y shifted by one: (B, T) int64 each."""
    tokens = np.asarray(tokens)
    if len(tokens) <= block_size:
        raise ValueError(f"batches: {len(tokens)} tokens cannot fill one window of block_size {block_size} + 1")
    starts = rng.integers(0, len(tokens) - block_size, batch_size)
    x = np.stack([tokens[s:s + block_size] for s in starts])
    y = np.stack([tokens[s + 1:s + 1 + block_size] for s in starts])
    return x.astype(np.int64), y.astype(np.int64)


class MarkovSource:
    """Tokens from a random order-``order`` Markov chain over ``vocab_size`` symbols. The
    entropy rate H = −Σ_s π(s) Σ_x P(x|s) log P(x|s) is computed exactly from the chain's
    stationary distribution π, so a test can check a model learns down to it."""

    def __init__(self, order, vocab_size, seed=0, concentration=0.3):
        if order < 1 or vocab_size < 2 or vocab_size ** order > 200_000:
            raise ValueError(f"MarkovSource: need order >= 1, vocab_size >= 2 and at most 200000 states; "
                             f"got order={order}, vocab_size={vocab_size}")
        self.order, self.vocab_size = order, vocab_size
        self.rng = np.random.default_rng(seed)
        self.table = self.rng.dirichlet([concentration] * vocab_size, size=vocab_size ** order)

    def _state(self, history):
        state = 0
        for token in history:
            state = state * self.vocab_size + int(token)
        return state

    def sample(self, n):
        out = list(self.rng.integers(0, self.vocab_size, self.order))
        cumulative = self.table.cumsum(axis=1)
        draws = self.rng.random(n)
        for u in draws:
            state = self._state(out[-self.order:])
            out.append(int(np.searchsorted(cumulative[state], u * cumulative[state, -1])))
        return np.asarray(out[self.order:], np.int64)

    def stationary(self):
        states, v = self.table.shape[0], self.vocab_size
        # state s = (x_1..x_k) moves to (x_2..x_k, x) with probability P(x | s)
        pi = np.full(states, 1.0 / states)
        nxt = (np.arange(states)[:, None] * v) % states + np.arange(v)[None, :]
        for _ in range(10_000):
            new = np.zeros(states)
            np.add.at(new, nxt.ravel(), (pi[:, None] * self.table).ravel())
            if np.abs(new - pi).max() < 1e-13:
                return new
            pi = new
        return pi

    def entropy_rate(self):
        """Nats per token."""
        pi = self.stationary()
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(self.table > 0, self.table * np.log(self.table), 0.0).sum(axis=1)
        return float((pi * h).sum())


# ---- a small sentiment-style classification set -------------------------------------------------
_POSITIVE = "good great excellent wonderful clear helpful fast reliable elegant pleasant".split()
_NEGATIVE = "bad poor terrible awful confusing useless slow fragile clumsy annoying".split()
_SUBJECTS = ("the library", "the manual", "the function", "this release", "the example", "the interface",
             "the test")
_TEMPLATES = ("{s} is {a}", "i found {s} {a}", "{s} was {a} and {b}", "honestly {s} feels {a}",
              "what a {a} thing {s} is", "{s} is not {na}")


def sentiment_dataset(n, seed=0):
    """``n`` (text, label) pairs, label 1 positive / 0 negative, built from templates —
    including negations ("is not bad" is positive), so word counts alone do not decide."""
    rng = np.random.default_rng(seed)
    subjects = _SUBJECTS
    out = []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        same, other = (_POSITIVE, _NEGATIVE) if label else (_NEGATIVE, _POSITIVE)
        template = _TEMPLATES[int(rng.integers(0, len(_TEMPLATES)))]
        text = template.format(s=subjects[int(rng.integers(0, len(subjects)))],
                               a=same[int(rng.integers(0, len(same)))], b=same[int(rng.integers(0, len(same)))],
                               na=other[int(rng.integers(0, len(other)))])
        out.append((text, label))
    return out


def read_labelled_csv(path):
    """(text, label) pairs from a CSV with a header ``text,label`` and integer labels."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"text", "label"} <= set(reader.fieldnames):
            raise ValueError(f"read_labelled_csv: {path} needs a header with columns text,label; "
                             f"got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                rows.append((row["text"], int(row["label"])))
            except (TypeError, ValueError):
                raise ValueError(f"read_labelled_csv: {path} line {line}: label {row['label']!r} is not an integer") \
                    from None
    if not rows:
        raise ValueError(f"read_labelled_csv: {path} has no rows")
    return rows


def perplexity(mean_loss):
    """exp(mean cross-entropy in nats)."""
    return math.exp(mean_loss) if mean_loss < 700 else math.inf
