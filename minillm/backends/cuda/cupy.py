"""Backend ``cupy``: the CUDA kernels of ``kernels/cuda/`` on an NVIDIA GPU.

Every tensor lives on the device (``xp = cupy``), so a training loop makes no host copies
except the loss it prints. Sources are compiled once by NVRTC through ``cupy.RawModule``;
the launch geometry is shared with the CPU harness (``kernels.py``).
Install with ``pip install minillm[gpu]`` (cupy-cuda12x; use cupy-cuda13x for CUDA 13).
"""
import numpy as np

from .. import BackendUnavailable
from .kernels import CudaKernels
from .source import cuda_files, kernels_dir, signatures

try:
    import cupy
except ImportError:
    raise BackendUnavailable("cupy is not installed (pip install 'minillm[gpu]')") from None
try:
    if cupy.cuda.runtime.getDeviceCount() < 1:
        raise BackendUnavailable("cupy: no CUDA device")
except cupy.cuda.runtime.CUDARuntimeError as exc:
    raise BackendUnavailable(f"cupy: no usable CUDA device ({exc})") from None


_SCALARS = {"int": np.int32, "long long": np.int64, "float": np.float32, "unsigned": np.uint32}


class Launcher:
    def __init__(self, files):
        self.kernels = {}
        options = ("-std=c++17", f"-I{kernels_dir() / 'cuda'}")
        for source_file in files:
            source = source_file.read_text()
            module = cupy.RawModule(code=source, options=options)
            for name, params in signatures(source).items():
                self.kernels[name] = (module, params)
        self.functions = {}

    def __call__(self, name, grid, block, *args):
        module, params = self.kernels[name]
        if name not in self.functions:
            self.functions[name] = module.get_function(name)
        converted = tuple(value if ctype.endswith("*") else _SCALARS[ctype](value)
                          for (ctype, _), value in zip(params, args))
        self.functions[name](tuple(grid), tuple(block), converted)


launch = Launcher(cuda_files())
backend = CudaKernels("cupy", cupy, launch)
