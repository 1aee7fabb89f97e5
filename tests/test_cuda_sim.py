"""The CPU harness that runs the CUDA kernels: every numbered SGEMM version against the
reference, bounds-checked runs of every primitive, and planted bugs that it must catch."""
import math
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minillm import backends
from minillm.backends.cuda import source as cuda_source

pytestmark = pytest.mark.skipif("cuda-sim" not in backends.available(),
                                reason=f"cuda-sim unavailable: {backends.status().get('cuda-sim')}")

sim = pytest.importorskip("minillm.backends.cuda.sim") if "cuda-sim" in backends.available() else None
awkward = st.sampled_from([1, 3, 7, 31, 64, 67, 129])




@pytest.mark.parametrize("version", sim.backend.SGEMM_VERSIONS if sim else [])
@given(m=awkward, n=awkward, k=awkward)
def test_every_numbered_sgemm_version(version, m, n, k):
    if version == "sgemm_v5_vectorized":  # its documented precondition: float4-aligned rows
        n, k = 4 * math.ceil(n / 4), 4 * math.ceil(k / 4)
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    c = sim.backend.sgemm_numbered(version, a, b)
    assert np.linalg.norm(c - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6


def test_bounds_checked_runs_of_every_primitive_are_clean():
    rng = np.random.default_rng(0)
    prims = sim.backend
    q, k, v, dout = (rng.standard_normal((3, t, 13)).astype(np.float32) for t in (5, 7, 7, 5))
    x = rng.standard_normal((7, 67)).astype(np.float32)
    w, b = np.ones(67, np.float32), np.zeros(67, np.float32)
    logits, target = rng.standard_normal((5, 7)).astype(np.float32), np.array([0, 6, -100, 3, 1])
    with sim.checked_launches():
        prims.matmul(x, x.T)                   # transposed view: strided v4
        prims.matmul(x, x, trans_b=True)       # x xᵀ without a copy
        prims.matmul(x, x, trans_a=True)       # xᵀ x without a copy
        prims.matmul(x[:, :64], np.ones((64, 8), np.float32))  # float4 path (v5)
        prims.matmul(rng.standard_normal((2, 8, 12)).astype(np.float32), rng.standard_normal((12, 4)).astype(np.float32))
        out, lse = prims.attention_forward(q, k, v, True, 0.3)
        prims.attention_backward(q, k, v, out, lse, dout, True, 0.3)
        y, mean, rstd = prims.layernorm_forward(x, w, b, 1e-5)
        prims.layernorm_backward(x, x, w, mean, rstd)
        loss, lse = prims.cross_entropy_forward(logits, target, -100)
        prims.cross_entropy_backward(logits, target, lse, loss, -100)
    assert np.isfinite(out).all() and np.isfinite(y).all()


def planted(tmp_path, source):
    path = tmp_path / "planted.cu"
    path.write_text(source)
    return sim.Simulator([path])


def test_planted_off_by_one_is_reported_with_kernel_and_index(tmp_path):
    launch = planted(tmp_path, '''
extern "C" __global__ void scale_all(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 2.0f * x[i];  // off by one: i == n is past the end
}''')
    x = np.arange(40, dtype=np.float32)
    y = np.zeros(40, np.float32)
    launch.checked = True
    with pytest.raises(sim.CudaSimError, match=r"kernel scale_all, .*out-of-range access to buffer '(x|y)' "
                                               r"at element 40 \(valid 0\.\.39\)"):
        launch("scale_all", (2,), (32,), x, y, 40)


def test_the_same_kernel_without_the_bug_passes_checked(tmp_path):
    launch = planted(tmp_path, '''
extern "C" __global__ void scale_all(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i];
}''')
    x = np.arange(40, dtype=np.float32)
    y = np.zeros(40, np.float32)
    launch.checked = True
    launch("scale_all", (2,), (32,), x, y, 40)
    np.testing.assert_array_equal(y, 2 * x)


def test_planted_missing_syncthreads_gives_wrong_results(tmp_path):
    """Remove the barrier after the tile load from the real v3 kernel: threads then read
    tiles their neighbours have not loaded yet, and the product comes out wrong."""
    source = (cuda_source.kernels_dir() / "cuda" / "sgemm.cu").read_text()
    marker = "__syncthreads();  // the whole tile is loaded before anyone reads it"
    assert marker in source
    launch = planted(tmp_path, source.replace(marker, ""))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 64)).astype(np.float32), rng.standard_normal((64, 64)).astype(np.float32)
    c = np.zeros((64, 64), np.float32)
    launch("sgemm_v3_shared", (2, 2), (32, 32), a, b, c, 64, 64, 64)
    error = np.linalg.norm(c - a @ b) / np.linalg.norm(a @ b)
    print(f"relative error without the barrier: {error:.2f}")
    assert error > 0.1


def test_divergent_barrier_is_reported(tmp_path):
    launch = planted(tmp_path, '''
extern "C" __global__ void diverge(float* y) {
    if (threadIdx.x < 16) return;
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}''')
    with pytest.raises(sim.CudaSimError, match=r"__syncthreads\(\) reached by 16 of 32 threads"):
        launch("diverge", (1,), (32,), np.zeros(32, np.float32))


def test_atomics_across_blocks_and_workers(tmp_path):
    launch = planted(tmp_path, '''
extern "C" __global__ void histogram(const int* bins, int* counts, float* total, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        atomicAdd(&counts[bins[i]], 1);
        atomicAdd(total, 0.5f);
    }
}''')
    bins = np.random.default_rng(0).integers(0, 5, 10000).astype(np.int32)
    counts, total = np.zeros(5, np.int32), np.zeros(1, np.float32)
    launch("histogram", (40,), (256,), bins, counts, total, len(bins))
    np.testing.assert_array_equal(counts, np.bincount(bins, minlength=5))
    assert total[0] == 5000.0


def test_wrong_dtype_is_a_clear_error():
    with pytest.raises(TypeError, match="layernorm_reduce_columns: argument part must be a float32 array, got float64"):
        sim.launch("layernorm_reduce_columns", (1,), (32,), np.zeros(4), np.zeros(4, np.float32), 1, 4)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: the compile check needs it")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", [p.name for p in cuda_source.cuda_files()])
def test_kernels_compile_for_the_gpu_without_warnings(tmp_path, source, arch):
    path = cuda_source.kernels_dir() / "cuda" / source
    result = subprocess.run(["nvcc", "-ptx", f"-arch={arch}", "-Werror", "all-warnings", "-I", str(path.parent),
                             str(path), "-o", str(tmp_path / "out.ptx")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
