"""NumPy's BLAS steps aside (one thread) while a backend with its own thread team is current,
and is left exactly as it was otherwise (minillm.blas_threads)."""
import json
import os
import subprocess
import sys

import pytest

from minillm import backends

SCRIPT = r"""
import json, os, sys
import numpy as np
from threadpoolctl import threadpool_info
def blas():
    return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
seen = {"before minillm": blas()}
import minillm
from minillm import backends
seen["after import"] = blas()
backends.current()
seen["current() from the environment"] = blas()
for name in sys.argv[1:]:
    backends.set_backend(name)
    seen[f"set_backend({name})"] = blas()
backends.set_backend("numpy")
with backends.use_backend(sys.argv[1]):
    seen["inside use_backend"] = blas()
seen["after use_backend"] = blas()
print(json.dumps(seen))
"""


def run(*names, env_backend=None):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    env.pop("MINILLM_BACKEND", None)
    if env_backend:
        env["MINILLM_BACKEND"] = env_backend
    out = subprocess.run([sys.executable, "-c", SCRIPT, *names], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not backends.is_available("c"), reason="the c backend is not built here")
def test_blas_gets_one_thread_while_c_is_current_and_its_own_setting_back_after():
    seen = run("c", "numpy", "c")
    assert seen["before minillm"] == 2, seen  # the environment above gives OpenBLAS two threads
    assert seen["after import"] == 2 and seen["current() from the environment"] == 2, seen  # numpy: untouched
    assert seen["set_backend(c)"] == 1 and seen["set_backend(numpy)"] == 2, seen
    assert seen["inside use_backend"] == 1 and seen["after use_backend"] == 2, seen


@pytest.mark.skipif(not backends.is_available("c"), reason="the c backend is not built here")
def test_minillm_backend_from_the_environment_limits_blas_at_first_use():
    seen = run("c", env_backend="c")
    assert seen["after import"] == 2, seen  # importing alone changes nothing
    assert seen["current() from the environment"] == 1, seen
