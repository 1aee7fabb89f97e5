"""The exercises grade themselves (exercises/README.md): for every chapter that has them,
the solutions pass every check, the untouched stubs fail every check as "not done yet",
a wrong answer is caught with "expected …, got …", and no learner mistake ever shows a
traceback. Chapters are found in exercises/, so new ones are tested as they are added."""
import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from minillm import exercise as ex
from minillm.cli import main

CHAPTERS = sorted(ex.chapters())


def run_cli(argv, capsys):
    """(exit code, stdout + stderr) of ``minillm …`` run in this process."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out + out.err


def files(number):
    stem = ex.chapters()[number]
    return (ex.EXERCISES_DIR / f"{stem}.py", ex.EXERCISES_DIR / "solutions" / f"{stem}.py",
            ex.EXERCISES_DIR / "checks" / f"{stem}.py")


def exercises_of(number):
    return ex.exercises_of(ex.load_module(files(number)[2], f"test_checks_{number}"))


def resolve(module, name):
    """(owner, attribute) for "fn" or "Class.method"."""
    owner = module
    *path, last = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, last


def test_chapters_zero_to_four_have_exercises():
    assert set(range(5)) <= set(CHAPTERS)


@pytest.mark.parametrize("number", CHAPTERS)
def test_the_solutions_pass_every_check(number, capsys):
    code, out = run_cli(["exercise", str(number), "--solution"], capsys)
    count = len(exercises_of(number))
    assert code == 0, out
    assert out.count("✓") == count and "✗" not in out, out
    assert f"chapter {number:02d}: {count} of {count} exercises right" in out


@pytest.mark.parametrize("number", CHAPTERS)
def test_the_stubs_fail_every_check_as_not_done(number, capsys):
    code, out = run_cli(["exercise", str(number)], capsys)
    stub = files(number)[0].name
    assert code == 1, out
    lines = [line for line in out.splitlines() if "✗" in line]
    assert len(lines) == len(exercises_of(number)) and "✓" not in out, out
    for line, exercise in zip(lines, exercises_of(number)):
        assert f"{exercise.name}: not done yet: fill in `" in line and f"exercises/{stub}" in line, line
    assert "Traceback" not in out
    assert f"chapter {number:02d}: 0 of {len(lines)} exercises right" in out


def perturbed(fn):
    """``fn`` giving a slightly wrong answer: numbers and arrays off by 0.5 (ints by 1), the
    first element of a tuple, list or dict changed, a string extended, a Value off through
    its own ``+``."""
    def off(result):
        if isinstance(result, (tuple, list)):
            return type(result)([off(result[0]), *result[1:]]) if len(result) else type(result)([0])
        if isinstance(result, dict):
            first = next(iter(result), None)
            return {**result, first: off(result[first])} if result else {0: 0}
        if isinstance(result, np.ndarray):
            return result + (1 if result.dtype.kind in "iu" else 0.5)
        if isinstance(result, (bool, np.bool_)):
            return not result
        if isinstance(result, (int, np.integer)):
            return result + 1
        if isinstance(result, str):
            return result + "?"
        return result + 0.5

    @functools.wraps(fn)
    def wrong(*args, **kwargs):
        return off(fn(*args, **kwargs))
    return wrong


@pytest.mark.parametrize("number", CHAPTERS)
def test_every_check_catches_a_wrong_answer(number, monkeypatch):
    monkeypatch.setattr(ex, "SHRINK_SECONDS", 0.0)  # the first wrong answer will do: no time for smaller inputs
    _, solution_path, checks_path = files(number)
    checks = ex.load_module(checks_path, f"test_checks_{number}")
    for exercise in ex.exercises_of(checks):
        solution = ex.load_module(solution_path, f"test_solution_{number}")  # fresh: one wrong function at a time
        owner, attribute = resolve(solution, exercise.name)
        setattr(owner, attribute, perturbed(getattr(owner, attribute)))
        result = ex.run_check(exercise, solution, solution_path)
        assert not result.ok, f"{exercise.name}: a wrong answer passed"
        assert "expected" in result.message and "got" in result.message, result.message
        assert "\n" not in result.message


@pytest.mark.parametrize("number", CHAPTERS)
def test_stub_and_solution_define_the_same_names(number):
    stub_path, solution_path, _ = files(number)
    stub, solution = (ex.load_module(path, f"test_names_{path.parent.name}") for path in (stub_path, solution_path))
    exercises = exercises_of(number)
    assert len(exercises) >= 3, "a chapter has at least 3 graded exercises"
    for exercise in exercises:
        for module in (stub, solution):
            owner, attribute = resolve(module, exercise.name)
            assert callable(getattr(owner, attribute, None)), f"{module.__file__} lacks {exercise.name}"
        owner, attribute = resolve(stub, exercise.name)
        assert getattr(owner, attribute).__doc__, f"the stub {exercise.name} must say what to do in its docstring"
    assert public_names(stub) <= public_names(solution)


def public_names(module):
    """Functions and classes a module defines, with each class's methods."""
    names = set()
    for name, value in vars(module).items():
        if callable(value) and getattr(value, "__module__", None) == module.__name__ and not name.startswith("_"):
            names.add(name)
            if isinstance(value, type):
                names |= {f"{name}.{method}" for method, v in vars(value).items() if callable(v)}
    return names


def test_python_m_minillm_exercise_on_the_stubs_exits_1_without_a_traceback():
    run = subprocess.run([sys.executable, "-m", "minillm", "exercise", "0"], capture_output=True, text=True,
                         cwd=ex.SOURCE_TREE, env=dict(os.environ, PYTHONIOENCODING="utf-8"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert "not done yet: fill in `Value.exp` in exercises/00_autograd.py" in run.stdout


def test_bad_usage_exits_2_with_one_line(capsys):
    code, out = run_cli(["exercise", "99"], capsys)
    listed = ", ".join(str(n) for n in CHAPTERS)
    assert code == 2 and f"no exercises for chapter 99; chapters with exercises: {listed}" in out
    for argv in (["exercise"], ["exercise", "zero"], ["exercise", "4", "--file="], ["exercise", "4", "--solution",
                                                                                      "--file=x.py"],
                 ["exercise", "4", "--file=/no/such/file.py"]):
        code, out = run_cli(argv, capsys)
        assert code == 2 and len(out.strip().splitlines()) == 1 and "Traceback" not in out, (argv, out)


def test_a_learners_mistakes_are_one_line_each(tmp_path, capsys):
    solution = files(4)[1].read_text()
    mistakes = solution + (
        "\n\ndef causal_attention(q, k, v):\n    return {}['scores']\n"   # crashes
        "\n\ndef split_heads(x, n_head):\n    x.reshape(x.shape[0], x.shape[1], n_head, -1)\n"  # forgets to return
        "\n\ndef merge_heads(y):\n    return y.reshape(y.shape[0], y.shape[2], -1)\n")  # no transpose: wrong order
    path = tmp_path / "mine.py"
    path.write_text(mistakes)
    code, out = run_cli(["exercise", "4", f"--file={path}"], capsys)
    assert code == 1 and "Traceback" not in out
    crash = len(solution.splitlines()) + 4
    assert f"✗ causal_attention: KeyError: 'scores' (line {crash} of {ex.shown(path)}, in causal_attention)" in out
    assert "✗ split_heads: split_heads(x, " in out and "expected an array of shape" in out and "got None" in out
    assert "✗ merge_heads: merge_heads(heads): expected " in out and "— for case=" in out
    assert "✓ softmax_backward" in out and "chapter 04: 1 of 5 exercises right" in out


def test_a_file_that_does_not_load_is_one_line(tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text("def causal_attention(q, k, v:\n    pass\n")
    code, out = run_cli(["exercise", "4", f"--file={path}"], capsys)
    assert code == 1 and "Traceback" not in out
    assert f"{ex.shown(path)} does not load: SyntaxError on line 1" in out


def test_a_missing_function_is_named(tmp_path, capsys):
    path = tmp_path / "partial.py"
    path.write_text(files(4)[1].read_text().replace("def merge_heads(", "def merge_the_heads("))
    code, out = run_cli(["exercise", "4", f"--file={path}"], capsys)
    assert code == 1 and f"✗ merge_heads: missing: {ex.shown(path)} defines no `merge_heads`" in out
    assert "✓ split_heads" in out and "Traceback" not in out


def test_a_file_that_is_not_python_is_one_line(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my answers\n")
    code, out = run_cli(["exercise", "4", f"--file={notes}"], capsys)
    assert code == 1 and "is not a Python file" in out and "Traceback" not in out
