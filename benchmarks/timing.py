"""How every benchmark measures: warm-up calls, then the median of repeats; inputs rotated
through several copies so caches do not flatter; on a GPU, CUDA events around each call."""
import json
import os
import platform
import resource
import subprocess
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np


# Thread pools (numba's, OpenMP's, PyTorch's) spin for a while after their last parallel
# region; on two cores a spinning pool halves the next library's speed. Each timing series
# starts after this pause.
#
# The opposite also happens, and no pause cures it: now and then libgomp's worker thread
# stops spinning between two calls and sleeps (voluntary context switches, none in a normal
# series), and waking it costs far more than a short call: an idle virtual CPU is halted, and
# the hypervisor takes its time to run it again. That can slow a whole series (PyTorch's too:
# it uses the same libgomp in the same process). OMP_WAIT_POLICY=active (never sleep) removes
# it at the price of a core spinning whenever Python runs, so it is not set; the tables keep
# the faster of two series instead.
SETTLE_SECONDS = 0.3

# A series of short calls runs at least this long: the median of five calls of a few
# microseconds each (a 128³ product) is one moment of a shared VM, not the kernel's speed.
# Longer calls keep the ``repeats`` they are given.
MIN_SERIES_SECONDS = 0.05
MAX_REPEATS = 2000


def median_seconds(fn, inputs, repeats=5, warmup=3, sync=None):
    """Median wall time of ``fn(*inputs[i % len(inputs)])`` over ``repeats`` calls, or over
    as many more as make the series last MIN_SERIES_SECONDS when the calls are short (the
    warm-up's calls say how long one takes)."""
    time.sleep(SETTLE_SECONDS)
    start = time.perf_counter()
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    if sync:
        sync()
    if warmup:
        per_call = (time.perf_counter() - start) / warmup
        repeats = max(repeats, min(MAX_REPEATS, int(MIN_SERIES_SECONDS / max(per_call, 1e-9))))
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(*inputs[i % len(inputs)])
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def gpu_median_seconds(fn, inputs, repeats=10, warmup=3):
    """Median of CUDA-event times (device time of the work ``fn`` enqueues)."""
    import cupy
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    cupy.cuda.runtime.deviceSynchronize()
    times = []
    for i in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn(*inputs[i % len(inputs)])
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / 1000)
    return float(np.median(times))


class GpuPeakMemory:
    """Peak bytes held by CuPy's memory pool inside the ``with`` block."""

    def __enter__(self):
        import cupy
        from cupy.cuda import memory_hook

        tracker = self

        class Hook(memory_hook.MemoryHook):
            name = "peak"

            def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
                tracker.current += mem_size
                tracker.peak = max(tracker.peak, tracker.current)

            def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
                tracker.current -= mem_size

        cupy.get_default_memory_pool().free_all_blocks()
        self.current = self.peak = 0
        self._hook = Hook()
        self._hook.__enter__()
        return self

    def __exit__(self, *exc):
        self._hook.__exit__(*exc)


def peak_rss_bytes():
    """This process's peak resident memory. VmHWM, because Linux carries ru_maxrss over
    fork and exec: a child would report its parent's peak."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas():
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # numpy < 1.26 has no dict mode
        return "unknown"


def _blas_kernel():
    """Which kernels NumPy's OpenBLAS runs (threadpoolctl's 'architecture', e.g. SkylakeX or
    Haswell) and the environment override that chose them, if any: OPENBLAS_CORETYPE=Haswell
    makes an AVX-512 machine run OpenBLAS's AVX2 kernels, a weaker peer than it could be."""
    try:
        from threadpoolctl import threadpool_info
        kinds = sorted({p.get("architecture") or "?" for p in threadpool_info() if p["internal_api"] == "openblas"})
    except Exception:
        return "unknown"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return ", ".join(kinds) + (f" (forced by OPENBLAS_CORETYPE={forced})" if forced else "")


def _cpu_flags():
    """The feature flags /proc/cpuinfo reports for the first CPU (None where there is none)."""
    try:
        return set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return None


def _simd():
    """The widest vector extension the CPU reports: the C and Numba kernels size their
    register tiles by it, so results from an AVX2 and an AVX-512 machine differ."""
    flags = _cpu_flags()
    if flags is None:
        return "unknown"
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"


FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
            "amx_int8")


def _features():
    """The instruction-set extensions the kernels can use that the CPU reports (/proc/cpuinfo's
    spelling): the bf16 and int8 results depend on avx512_bf16, avx512_vnni and AMX."""
    flags = _cpu_flags()
    if flags is None:
        return "unknown"
    return " ".join(f for f in FEATURES if f in flags) or "none of " + ", ".join(FEATURES)


def machine_stem(info):
    """The CPU's model and the date, for file names: runs on different machines (the
    sessions' VMs are not always the same kind) keep separate files."""
    slug = "".join(c if c.isalnum() else "-" for c in info["cpu"].lower())
    return "-".join(part for part in slug.split("-") if part) + "-" + info["date"]


def machine_info(gpu=False):
    info = {
        "date": date.today().isoformat(),
        "time": datetime.now().isoformat(timespec="seconds"),  # orders two runs of one day
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "simd": _simd(),
        "features": _features(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
        "blas_kernel": _blas_kernel(),
    }
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        info["commit"] = "unknown"
    for module in ("numba", "torch", "cupy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            pass
    if gpu:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    return info


def flags(argv):
    """The ``--name=value`` options of a script's command line as a dict; a bare ``--name`` is "1"."""
    return dict(a[2:].split("=", 1) if "=" in a else (a[2:], "1") for a in argv if a.startswith("--"))


def output_folder(folder):
    """``folder`` made if missing, or one line and a failing exit where it cannot be (a file there, no
    permission): a script can check its ``--out`` before a run of minutes, not after it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"benchmarks: --out={folder}: cannot write results there ({exc.strerror})") from None
    return folder


def write_json(results, folder, stem):
    path = output_folder(folder) / f"{stem}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(path)
    return path
