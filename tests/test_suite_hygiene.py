"""The suite guards itself: tests that need torch live in *_torch.py files (so a missing
oracle skips those files only), and `make test`'s required backends and modules stop the
run with the reason when one is missing, instead of their tests quietly disappearing."""
import os
import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).parent


def test_only_torch_files_need_torch():
    for path in sorted(TESTS.glob("test_*.py")):
        needs_torch = 'importorskip("torch"' in path.read_text() or "import torch" in path.read_text()
        if path.name != pathlib.Path(__file__).name and needs_torch:
            assert path.stem.endswith("_torch"), \
                f"{path.name} needs torch: move those tests into a *_torch.py file so the rest runs without it"


def test_a_missing_required_backend_or_module_fails_the_run():
    env = dict(os.environ, MINILLM_REQUIRE_BACKENDS="numpy,tpu", MINILLM_REQUIRE_MODULES="no_such_oracle")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                          str(TESTS / "test_suite_hygiene.py")], env=env, capture_output=True, text=True,
                         cwd=TESTS.parent)
    output = run.stdout + run.stderr
    print(output[-600:])
    assert run.returncode != 0
    assert "required backend 'tpu'" in output and "unknown backend 'tpu'" in output
    assert "required module 'no_such_oracle' cannot be imported" in output


def test_asking_for_one_backend_loads_only_that_one():
    """The demo and the lessons ask whether `c` runs; that must not build the CUDA harness."""
    script = ("from minillm import backends; assert backends.is_available('numpy'); "
              "import sys; sys.exit(sorted(backends._loaded) != ['numpy'])")
    assert subprocess.run([sys.executable, "-c", script], cwd=TESTS.parent).returncode == 0
