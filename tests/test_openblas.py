"""The OpenBLAS peer at its best settings: which kernel runs, and a process without the
environment's overrides chooses for the CPU it finds."""
import subprocess
import sys

import pytest

from minillm import openblas


def test_fair_environment_drops_only_the_overrides():
    env = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512", "OPENBLAS_NUM_THREADS": "1", "PATH": "/bin"}
    assert openblas.fair_environment(env) == {"OPENBLAS_NUM_THREADS": "1", "PATH": "/bin"}


def test_a_forced_core_is_what_runs_and_the_fresh_process_is_free_of_it():
    forced = subprocess.run([sys.executable, "-c", "from minillm.openblas import core_name; print(core_name())"],
                            env={**openblas.fair_environment(), "OPENBLAS_CORETYPE": "Haswell"},
                            capture_output=True, text=True, check=True).stdout.strip()
    if forced == "None":
        pytest.skip("NumPy here does not use the OpenBLAS its wheel bundles")
    assert forced == "Haswell"
    kernel, gflops = openblas.matmul_gflops_unforced(64, 37, 5, repeats=2)
    free = subprocess.run([sys.executable, "-c", "from minillm.openblas import core_name; print(core_name())"],
                          env=openblas.fair_environment(), capture_output=True, text=True, check=True).stdout.strip()
    assert kernel == free and gflops > 0
