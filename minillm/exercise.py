"""Exercises that grade themselves: ``minillm exercise N [--solution] [--file=PATH]``.

Each chapter with exercises has three files (``exercises/README.md`` has the format):

    exercises/NN_topic.py            the learner's stubs (each raises NotImplementedError)
    exercises/solutions/NN_topic.py  the same names, solved
    exercises/checks/NN_topic.py     one check per exercise, registered with ``@exercise``

A check receives the learner's module and raises ``Wrong`` (usually through
``expect_close``) when an answer is off. With strategies it is a hypothesis property,
run on freshly drawn inputs, and the message names the smallest failing input found in
``SHRINK_SECONDS``. Every check runs on its own, so one failure never hides another, and
whatever the learner's code does is reported in one line: never a traceback."""
import builtins
import importlib.util
import os
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import backends
from .config import ConfigError
from .lessons import SOURCE_TREE, use_source_tree

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:  # hypothesis is the `test` extra; `command` says how to get it
    st = hnp = None

EXERCISES_DIR = SOURCE_TREE / "exercises"
MAX_EXAMPLES = 20   # drawn inputs per property: enough to meet sizes 1 and primes, fast enough to rerun often
SHRINK_SECONDS = 0.5  # after a wrong answer, how long hypothesis may look for a smaller input that shows it
SIDES = (1, 2, 3, 5, 7)


class Wrong(AssertionError):
    """A wrong answer: the message says what was expected and what came back."""


@dataclass
class Exercise:
    name: str           # as the learner's file spells it: "causal_attention", "Value.exp"
    check: object       # check(learner_module, **drawn) raises Wrong when the answer is off
    strategies: dict    # keyword → hypothesis strategy; empty: the check runs once


@dataclass
class Result:
    name: str
    ok: bool
    message: str = ""


def exercise(name, **strategies):
    """Register the decorated function as the check of exercise ``name``."""
    def register(check):
        check.exercise = Exercise(name, check, strategies)
        return check
    return register


# ---- what the checks use -------------------------------------------------------------------------

def sides():
    """Axis lengths that catch mistakes: 1 (broadcasting, squeezing) and small primes."""
    return st.sampled_from(SIDES)


def arrays(shape, low=-2.0, high=2.0):
    """float64 arrays of ``shape`` with finite elements in [low, high], drawn fresh."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, width=64))


def expect_close(got, expected, tol, what):
    """Pass when ``got`` has ``expected``'s shape and |got − expected| ≤ tol·(1 + |expected|)
    everywhere (relative for large entries, absolute near zero); else raise Wrong."""
    expected = np.asarray(expected, np.float64)
    got = as_array(got, expected.shape, what)
    difference = np.abs(got - expected)
    bad = ~(difference <= tol * (1 + np.abs(expected)))  # a NaN in got counts as bad
    if bad.any():
        worst = np.where(bad, np.nan_to_num(difference, nan=np.inf), -1.0)
        where = np.unravel_index(int(np.argmax(worst)), bad.shape)
        at = f" at index {list(map(int, where))}" if expected.ndim else ""
        how_many = f"{int(bad.sum())} of {bad.size} entries" if expected.ndim else "the value"
        off = f"off by more than {tol:g}·(1 + |expected|)" if tol else "differ" if expected.ndim else "differs"
        shown_expected, shown_got = f"{expected[where]:.6g}", f"{got[where]:.6g}"
        if shown_expected == shown_got:  # off in the 7th digit or beyond: show every digit, not "expected 20, got 20"
            shown_expected, shown_got = f"{expected[where]:.17g}", f"{got[where]:.17g}"
        raise Wrong(f"{what}: expected {shown_expected}{at}, got {shown_got} ({how_many} {off})")


def expect_equal(got, expected, what):
    """Exact equality (integers, indices, shapes); else raise Wrong."""
    expected = np.asarray(expected)
    got = as_array(got, expected.shape, what, dtype=None)
    if not np.array_equal(got, expected):
        where = tuple(int(i) for i in np.argwhere(got != expected)[0]) if expected.ndim else ()
        at = f" at index {list(where)}" if where else ""
        raise Wrong(f"{what}: expected {expected[where].tolist()!r}{at}, got {got[where].tolist()!r}")


def as_array(got, shape, what, dtype=np.float64):
    """``got`` as an array of ``shape``, or Wrong saying what came back instead."""
    if got is None:
        raise Wrong(f"{what}: expected an array of shape {shape}, got None (a missing return?)")
    try:
        array = np.asarray(got, dtype)
    except (TypeError, ValueError):
        raise Wrong(f"{what}: expected an array of shape {shape}, got {type(got).__name__}") from None
    if array.shape != tuple(shape):
        raise Wrong(f"{what}: expected shape {tuple(shape)}, got shape {array.shape}")
    return array


def short(value, limit=60):
    """A value in a few characters: arrays by shape and their first numbers."""
    if isinstance(value, np.ndarray):
        numbers = ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value.ravel()[:4].tolist())
        text = f"{value.shape} array [{numbers}{', …' if value.size > 4 else ''}]"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (tuple, list)):
        text = "(" + ", ".join(short(v, limit) for v in value) + ")"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {short(v, limit)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    return text if len(text) <= limit * 3 else text[:limit * 3 - 1] + "…"


# ---- running a chapter ---------------------------------------------------------------------------

def chapters():
    """{number: stem} of every chapter that has an exercise file and its checks."""
    found = {}
    for path in sorted(EXERCISES_DIR.glob("[0-9][0-9]_*.py")):
        if (EXERCISES_DIR / "checks" / path.name).exists():
            found[int(path.name[:2])] = path.stem
    return found


def exercises_of(checks_module):
    """The registered exercises, in the order the checks file defines them."""
    return [value.exercise for value in vars(checks_module).values()
            if callable(value) and isinstance(getattr(value, "exercise", None), Exercise)]


class LoadError(Exception):
    """A learner's file that does not even load: one line saying where and why."""


def load_module(path, name):
    """Execute the file at ``path`` as a fresh module (a learner's edits are always read anew)."""
    if Path(path).suffix != ".py" or not Path(path).is_file():
        raise LoadError(f"{shown(path)} is not a Python file (expected a .py file like exercises/NN_topic.py)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise LoadError(f"{shown(path)} does not load: SyntaxError on line {exc.lineno}: {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # anything a learner's top level can raise
        raise LoadError(f"{shown(path)} does not load: {describe(exc, path)}") from None
    return module


class _Stop(BaseException):
    """Ends a hypothesis run early: hypothesis lets BaseExceptions other than SystemExit
    through at once, where it would shrink an Exception."""


def run_check(ex, learner, learner_path):
    """Result of one exercise; never raises (except ^C)."""
    if not callable(lookup(learner, ex.name)):
        return Result(ex.name, False, f"missing: {shown(learner_path)} defines no `{ex.name}`")
    failure = {}  # the last real failure: its error, the drawn input, and until when to look for a smaller one

    def attempt(**drawn):
        if "error" in failure and (not isinstance(failure["error"], Wrong) or time.monotonic() > failure["until"]):
            raise _Stop  # nothing to shrink (not done, a crash) or no time left: keep the failure we have
        try:
            ex.check(learner, **drawn)
        except (Exception, SystemExit) as exc:  # SystemExit: a learner's sys.exit() is a failure too
            # hypothesis only tries inputs smaller than the last failing one, so the last is the smallest
            failure.update(error=first_error(exc), drawn=drawn,
                           until=failure.get("until", time.monotonic() + SHRINK_SECONDS))
            raise

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), backends.use_backend("numpy"):
            warnings.simplefilter("ignore")  # a learner's overflow warning would break the one-line report
            if ex.strategies:
                property_test(attempt, ex.strategies)()
            else:
                attempt()
    except KeyboardInterrupt:
        raise
    except _Stop:
        pass
    except (Exception, SystemExit) as exc:  # what a check raises is in `failure`; this is anything else
        failure.setdefault("error", first_error(exc))
    if "error" not in failure:
        return Result(ex.name, True)
    return Result(ex.name, False, verdict(failure["error"], failure.get("drawn"), learner_path))


def lookup(module, name):
    """``module``'s "fn" or "Class.method", or None."""
    value = module
    for part in name.split("."):
        value = getattr(value, part, None)
    return value


def verdict(exc, drawn, learner_path):
    """The one line for a failure: what was wrong, or not done, or which line raised what."""
    for_input = f" — for {', '.join(f'{k}={short(v)}' for k, v in drawn.items())}" if drawn else ""
    if isinstance(exc, Wrong):
        return f"{exc}{for_input}"
    frame = learner_frame(exc, learner_path)
    if isinstance(exc, NotImplementedError) and frame is not None:
        return f"not done yet: fill in `{function_name(frame)}` in {shown(learner_path)}"
    return describe(exc, learner_path) + for_input


def property_test(fn, strategies):
    from hypothesis import HealthCheck, Verbosity, given, settings
    from hypothesis.reporting import with_reporter
    test = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, verbosity=Verbosity.quiet,
                    report_multiple_bugs=False, suppress_health_check=list(HealthCheck))(given(**strategies)(fn))

    def run():
        with with_reporter(lambda *_: None):  # hypothesis' own report would repeat what our line says
            test()
    return run


def first_error(exc):
    """Hypothesis may group errors (flaky code, several bugs); report the first."""
    while isinstance(exc, getattr(builtins, "BaseExceptionGroup", ())) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def learner_frame(exc, learner_path):
    """The innermost frame of the traceback that lies in the learner's file, or None."""
    target, found = Path(learner_path).resolve(), None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename).resolve() == target:
            found = frame
    return found


def function_name(frame):
    return getattr(frame.f_code, "co_qualname", frame.f_code.co_name)  # "Value.exp" (Python 3.11+)


def describe(exc, learner_path):
    """One line: the exception, and the line of the learner's file it came from."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}" + (f": {text[:160]}" if text else "")
    frame = learner_frame(exc, learner_path)
    if frame is not None:
        lineno = next(lineno for f, lineno in traceback.walk_tb(exc.__traceback__) if f is frame)
        return f"{line} (line {lineno} of {shown(learner_path)}, in {function_name(frame)})"
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({Path(last[0].filename).name}, line {last[0].lineno})" if last else ""
    return f"{line}{where}, raised while checking your answer: look at what it returns"


def shown(path):
    """The path as the learner would type it: relative to the working directory if inside."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_chapter(number, path=None, solution=False):
    """(the learner's file, [Result, …]); raises ConfigError for an unknown chapter and
    LoadError when a file does not load."""
    use_source_tree("exercises")
    found = chapters()
    if number not in found:
        listed = ", ".join(str(n) for n in found) or "none yet"
        raise ConfigError(f"no exercises for chapter {number}; chapters with exercises: {listed}")
    stem = found[number]
    learner_path = Path(path) if path else EXERCISES_DIR / ("solutions" if solution else "") / f"{stem}.py"
    if not learner_path.is_file():
        raise ConfigError(f"--file={path}: no such file" if path else f"{shown(learner_path)} is missing")
    checks = load_module(EXERCISES_DIR / "checks" / f"{stem}.py", f"minillm_exercise_checks_{stem}")
    learner = load_module(learner_path, f"minillm_exercise_{stem}")
    return learner_path, [run_check(ex, learner, learner_path) for ex in exercises_of(checks)]


def marks():
    """✓ and ✗, or plain letters where the terminal's encoding cannot print them."""
    try:
        "✓✗".encode(getattr(sys.stdout, "encoding", None) or "utf-8")
        return "✓", "✗"
    except (UnicodeEncodeError, LookupError):
        return "ok", "X"


USAGE = "usage: minillm exercise N [--solution] [--file=PATH]"


def command(argv):
    """``minillm exercise N [--solution] [--file=PATH]``: prints one line per exercise and a
    summary; returns 0 when every exercise is right, 1 otherwise (bad usage: ConfigError)."""
    number, solution, path = parse(argv)
    if st is None:
        raise RuntimeError("exercises are checked with hypothesis: pip install hypothesis "
                           "(or pip install -e '.[test]')")
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):  # hypothesis' cache: in the clone (git ignores it),
        from hypothesis import configuration                  # not in whatever folder the learner runs from
        configuration.set_hypothesis_home_dir(SOURCE_TREE / ".hypothesis")
    right, wrong = marks()
    try:
        learner_path, results = run_chapter(number, path, solution)
    except LoadError as exc:
        say(f"{wrong} {exc}")
        say(f"chapter {number:02d}: the file must load before its exercises can be checked")
        return 1
    say(f"chapter {number:02d}: {shown(learner_path)}")
    for result in results:
        say(f"  {right} {result.name}" if result.ok else f"  {wrong} {result.name}: {result.message}")
    passed = sum(r.ok for r in results)
    say(f"chapter {number:02d}: {passed} of {len(results)} exercises right")
    return 0 if passed == len(results) else 1


def say(text):
    """print, with what the terminal's encoding cannot show replaced (∂, —) instead of a crash."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(encoding, "replace").decode(encoding))


def parse(argv):
    number, solution, path = None, False, None
    for arg in argv:
        if arg == "--solution":
            solution = True
        elif arg.startswith("--file="):
            path = str(Path(arg.removeprefix("--file=")).expanduser()) if arg != "--file=" else ""
        elif re.fullmatch(r"\d+", arg) and number is None:
            number = int(arg)
        else:
            raise ConfigError(f"unexpected argument {arg!r}; {USAGE}")
    if number is None:
        raise ConfigError(USAGE)
    if solution and path:
        raise ConfigError(f"--solution and --file name two different files: pick one; {USAGE}")
    if path == "":
        raise ConfigError(f"--file needs a path; {USAGE}")
    return number, solution, path


__all__ = ["Wrong", "exercise", "expect_close", "expect_equal", "as_array", "arrays", "sides", "short"]
