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


@pytest.fixture(autouse=True)
def _seeded():
    import minillm
    minillm.manual_seed(0)
    np.random.seed(0)
