"""The C kernels and the CPU they run on: the library says which instruction-set extensions it
was compiled for (the build's -march), asks at load, with a function compiled for the baseline
x86-64, which of them this CPU lacks, and builds for this CPU instead of loading a library that
would stop with "illegal instruction"; without AVX512_BF16 the bf16 products fall back to the
emulation on the float32 GEMM, with a warning that says why."""
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from minillm import amp_bf16, backends

pytestmark = pytest.mark.skipif("c" not in backends.available(), reason="c backend unavailable")

CPUINFO_NAMES = {"avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16"}  # /proc/cpuinfo spells these so


def c():
    from minillm.backends import c as c_backend
    return c_backend


def library():
    from minillm.backends.c import library as loaded
    return loaded


def test_the_build_names_the_extensions_its_flags_turn_on():
    """minillm_build_isa lists exactly the extensions (of the ones the kernels use) that the
    compiler predefines for the flags the library was built with."""
    from minillm.backends.c.build import compiler
    flags = [f for f in c().build_flags.split() if f.startswith("-m")]
    macros = subprocess.run([compiler(), *flags, "-dM", "-E", "-"], input="", capture_output=True, text=True,
                            check=True).stdout
    expected = [name for name in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16")
                if f"#define __{name.upper()}__ 1" in macros]
    assert c().build_isa.split() == expected


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="no /proc/cpuinfo")
def test_nothing_is_missing_on_the_cpu_that_built_it():
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    cpu = set(flags.split(":", 1)[1].split())
    built = c().build_isa.split()
    assert all(CPUINFO_NAMES.get(name, name) in cpu for name in built), (built, sorted(cpu))
    assert library()._missing_isa(library()._module) == ""


def test_a_library_built_for_another_cpu_is_not_loaded(monkeypatch):
    """An installed library that needs an extension this CPU lacks: _load warns, naming it, and
    builds for this CPU (here a stand-in) instead of returning the library."""
    from minillm.backends.c import build
    monkeypatch.delenv("MINILLM_C_SANITIZE", raising=False)  # the installed library's road, even under make sanitize
    fake_lib = types.SimpleNamespace(minillm_isa_missing=lambda: b"avx512bf16",
                                     minillm_source_digest=lambda: build.source_digest().encode())
    fake = types.SimpleNamespace(lib=fake_lib, ffi=types.SimpleNamespace(string=lambda s: s), __name__="fake")
    monkeypatch.setitem(sys.modules, "minillm._ckernels", fake)
    import minillm
    monkeypatch.setattr(minillm, "_ckernels", fake, raising=False)
    built_here = object()
    monkeypatch.setattr(build, "build_in_cache", lambda sanitize=False: built_here)
    with pytest.warns(RuntimeWarning, match="built for a CPU with avx512bf16, which this one lacks"):
        assert library()._load() is built_here


def test_builds_for_different_cpus_do_not_share_a_folder(tmp_path):
    from minillm.backends.c import build
    kinds = []
    for i, text in enumerate(("model name : A\nflags : fpu avx2\n", "model name : A\nflags : fpu avx2 avx512f\n")):
        (tmp_path / str(i)).write_text(text)
        kinds.append(build.cpu_kind(tmp_path / str(i)))
    assert kinds[0] != kinds[1] and all(len(k) == 12 for k in kinds)
    assert build.cpu_kind(tmp_path / "absent") == "generic"


def test_without_avx512_bf16_the_products_are_emulated_with_a_warning(monkeypatch):
    backend = backends.get("c")
    monkeypatch.setattr(type(backend), "has_bf16_kernels", False)
    monkeypatch.setattr(amp_bf16, "_warned", set())
    rng = np.random.default_rng(0)
    x, w, g = (rng.standard_normal(s).astype(np.float32) for s in ((37, 19), (23, 19), (37, 23)))
    with pytest.warns(RuntimeWarning, match="c backend emulates bf16.*no AVX512_BF16"):
        forward, backward = amp_bf16.linear_products(backend)
    reference = backends.get("numpy")
    np.testing.assert_allclose(forward(x, w), reference.linear_forward_bf16(x, w), rtol=1e-6, atol=1e-6)
    for got, want in zip(backward(g, x, w), reference.linear_backward_bf16(g, x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        amp_bf16.linear_products(backend)  # once is enough
