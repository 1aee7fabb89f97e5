"""minillm.memory: after `import minillm`, memory freed by one step is reused by the next
instead of being faulted in again (glibc); MINILLM_MALLOC=default leaves malloc alone."""
import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the mallopt settings exist for glibc only")

# What a training step does to the heap: forty 1 MiB activations written, then all freed.
CHURN = """
import json, resource, numpy as np, minillm
def step():
    arrays = [np.ones(2 ** 18, np.float32) for _ in range(40)]
    del arrays
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(json.dumps({"faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4,
                  "state": minillm.memory.state}))
"""


def churn(**env):
    done = subprocess.run([sys.executable, "-c", CHURN], capture_output=True, text=True, check=True,
                          env={**os.environ, **env})
    return json.loads(done.stdout)


def test_freed_memory_is_reused_not_faulted_in_again():
    kept = churn(MINILLM_MALLOC="keep")
    assert kept["state"].startswith("glibc malloc keeps freed memory"), kept["state"]
    # 40 MiB are 10,240 pages: with the settings a step touches none of them anew
    assert kept["faults_per_step"] < 100, kept


def test_the_default_policy_faults_every_step_and_can_be_chosen():
    default = churn(MINILLM_MALLOC="default")
    assert "MINILLM_MALLOC=default" in default["state"]
    assert default["faults_per_step"] > 5000, default  # what the settings above remove
