"""The CUDA kernels of kernels/cuda: ``kernels.py`` is the backend (launch geometry and
output allocation), run on a GPU by ``cupy.py`` or on the CPU harness by ``sim.py``."""
