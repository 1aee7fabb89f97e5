"""Running the lessons (``lessons/NN_topic.py``) and the checks they make.

A lesson states claims about what it measured *in this run* and verifies each with
``checks.claim(condition, text)``; ``checks.finish()`` exits non-zero if any failed, so
CI notices when a lesson stops showing what it says. Claims are about correctness and
learning. Timings are reported with ``checks.timing(condition, text)``, which prints
whether the comparison held on this run but never fails it: on a shared two-core machine a
neighbour can slow one run down, and speed goals belong to ``benchmarks/``."""
import os
import runpy
import sys
from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parents[1]
LESSONS_DIR = SOURCE_TREE / "lessons"


def use_source_tree(folder):
    """Make the source tree's ``folder`` (lessons/, benchmarks/ — not installed with the
    package) importable from any working directory, or say clearly that it is missing."""
    if not (SOURCE_TREE / folder).is_dir():
        raise FileNotFoundError(f"{folder}/ ships with the source tree (git clone), not with the installed package")
    if str(SOURCE_TREE) not in sys.path:
        sys.path.insert(0, str(SOURCE_TREE))


class Checks:
    def __init__(self, lesson):
        self.lesson, self.failed, self.passed = lesson, [], 0

    def claim(self, condition, text):
        mark = "ok  " if condition else "FAIL"
        print(f"  [{mark}] {text}")
        if condition:
            self.passed += 1
        else:
            self.failed.append(text)
        return bool(condition)

    def timing(self, condition, text):
        mark = "held" if condition else "not this run"
        print(f"  [timing: {mark}] {text}")
        return bool(condition)

    def finish(self):
        print(f"\n{self.lesson}: {self.passed} claims held, {len(self.failed)} failed")
        if self.failed:
            sys.exit(1)


def quick_mode(argv=None):
    """``--quick`` on the command line, or MINILLM_QUICK=1 (how the book's notebooks get it)."""
    return "--quick" in (sys.argv[1:] if argv is None else argv) or os.environ.get("MINILLM_QUICK") == "1"


def save_figure(fig, path, dpi=100):
    """Save ``fig`` as a PNG; inside a notebook (the book, Jupyter) show it inline as well."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    if "ipykernel" in sys.modules:  # the saved PNG itself, whatever matplotlib backend the lesson chose
        from IPython.display import Image, display
        display(Image(filename=str(path)))
    plt.close(fig)
    print(f"saved {path}")


def results_dir(name):
    """Where a lesson saves its pictures: lessons/results/<name>/."""
    path = LESSONS_DIR / "results" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def find(number):
    matches = sorted(LESSONS_DIR.glob(f"{number:02d}_*.py"))
    if not matches:
        raise FileNotFoundError(f"lesson {number}: no lessons/{number:02d}_*.py (lessons ship with the source tree)")
    return matches[0]


def run_lesson(number, argv=()):
    path = find(number)
    saved = sys.argv
    sys.argv = [str(path), *argv]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
    return 0
