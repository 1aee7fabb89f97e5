import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# `ci` is derandomized so a CI run is reproducible; `dev` explores more and fresh.
settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config):
    config.addinivalue_line("markers", "mpi: runs MPI jobs (mpiexec -n 2); needs the extra 'mpi'")
    _require_backends_and_modules()


def _require_backends_and_modules():
    """Tests of an unavailable backend or a missing oracle are not collected; that is right
    on a user's machine, but in `make test` it would hide a broken build. So `make test` names
    what must be there (MINILLM_REQUIRE_BACKENDS=numpy,numba,c,cuda-sim and
    MINILLM_REQUIRE_MODULES=torch,…) and the run stops with the reason when one is missing."""
    import importlib

    from minillm import backends
    problems = []
    for name in filter(None, os.environ.get("MINILLM_REQUIRE_BACKENDS", "").split(",")):
        try:
            backends.get(name)
        except (backends.BackendUnavailable, ValueError) as exc:
            problems.append(f"required backend {name!r}: {exc}")
    for module in filter(None, os.environ.get("MINILLM_REQUIRE_MODULES", "").split(",")):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            problems.append(f"required module {module!r} cannot be imported: {exc}")
    if problems:
        raise pytest.UsageError("\n".join(problems))


@pytest.fixture(autouse=True)
def _seeded():
    import minillm
    minillm.manual_seed(0)
    np.random.seed(0)
