"""Where the CUDA kernel sources live, and their signatures read straight from the
``extern "C" __global__`` lines, so the GPU launcher and the CPU harness agree on every
argument's type without a second list to keep in sync."""
import os
import re
from pathlib import Path

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)


def kernels_dir():
    """``kernels/`` of the source tree (or of the installed package, or $MINILLM_KERNELS)."""
    candidates = [os.environ.get("MINILLM_KERNELS"),
                  Path(__file__).resolve().parents[3] / "kernels",
                  Path(__file__).resolve().parents[2] / "kernels"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "cuda").is_dir():
            return Path(candidate)
    raise FileNotFoundError("minillm: cannot find the kernels/ folder (set MINILLM_KERNELS to its path)")


def cuda_files():
    return sorted((kernels_dir() / "cuda").glob("*.cu"))


def parameters(text):
    """'const float* __restrict__ A, int M' → [('const float*', 'A'), ('int', 'M')]."""
    out = []
    for part in text.split(","):
        part = " ".join(part.replace("__restrict__", "").split())
        name = re.search(r"(\w+)$", part).group(1)
        ctype = part[: -len(name)].strip().replace(" *", "*")
        out.append((ctype, name))
    return out


def signatures(source):
    """{kernel name: [(C type, parameter name), ...]} for every kernel in ``source``."""
    return {name: parameters(params) for name, params in _SIGNATURE.findall(source)}
