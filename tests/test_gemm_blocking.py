"""The fp32 GEMM's blocks, derived from the caches the machine reports (kernels/c/matmul/
blocking.c): the rule at a few cache sizes (this machine's, tiny ones, none reported, an L3
reported as a whole host's), and the product against float64 with other blocks forced, so
that every edge of every loop is crossed at awkward shapes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm import backends

pytestmark = pytest.mark.skipif("c" not in backends.available(),
                                reason=f"c backend unavailable: {backends.status().get('c')}")
c = pytest.importorskip("minillm.backends.c") if "c" in backends.available() else None

KB, MB = 1 << 10, 1 << 20
FLOAT = 4


def _holds_the_rule(b):
    """Each block fills its share of its cache, and one more sliver (or k-step) would not fit."""
    l1_sliver = b["mr"] if b["nr"] == 32 else b["nr"]  # AVX-512: v8's A sliver; AVX2: the B sliver
    if b["kc"] > 64:
        assert l1_sliver * b["kc"] * FLOAT <= b["l1"] // 2 < l1_sliver * (b["kc"] + 1) * FLOAT
    for block, step in (("mc", b["mr"]), ("nc_l2", b["nr"])):
        if b[block] > step:
            assert b[block] * b["kc"] * FLOAT <= b["l2"] // 2 < (b[block] + step) * b["kc"] * FLOAT, block
    assert b["nc"] % b["nr"] == 0 and b["nc"] <= 4096
    if b["nr"] < b["nc"] < 4096:
        assert b["nc"] * b["kc"] * FLOAT <= b["l3"] // 4 < (b["nc"] + b["nr"]) * b["kc"] * FLOAT


@pytest.mark.parametrize("caches", [(48 * KB, 1 * MB, 32 * MB), (48 * KB, 2 * MB, 105 * MB), (32 * KB, 512 * KB, 32 * MB),
                                    (4 * KB, 64 * KB, 1 * MB), (1, 1, 1), (48 * KB, 1 * MB, 384 * MB)])
def test_blocks_fill_their_share_of_each_cache(caches):
    b = c.blocking_for_caches(*caches)
    print(caches, "->", b)
    assert (b["l1"], b["l2"], b["l3"]) == caches
    assert b["kc"] >= 64 and b["mc"] >= b["mr"] and b["nc_l2"] >= b["nr"] and b["nc"] >= b["nr"]
    assert b["mc"] % b["mr"] == 0 and b["nc_l2"] % b["nr"] == 0
    _holds_the_rule(b)


def test_the_zen4_and_sapphire_rapids_blocks_with_avx512():
    """The two machines issue #34 names: Zen 4 (L2 1 MB) gets a v8 panel half as wide as
    Sapphire Rapids (L2 2 MB), whose 512 columns are the constant the kernels had before."""
    if c.gemm_blocking()["nr"] != 32:
        pytest.skip("built without AVX-512")
    zen4 = c.blocking_for_caches(48 * KB, 1 * MB, 32 * MB)
    spr = c.blocking_for_caches(48 * KB, 2 * MB, 105 * MB)
    assert (zen4["kc"], zen4["mc"], zen4["nc"], zen4["nc_l2"]) == (512, 252, 4096, 256)
    assert (spr["kc"], spr["mc"], spr["nc"], spr["nc_l2"]) == (512, 504, 4096, 512)


def test_caches_not_reported_take_the_fallback_sizes():
    none = c.blocking_for_caches(0, 0, 0)
    assert none["l1"] > 0 and none["l2"] > none["l1"] and none["l3"] > none["l2"]
    assert c.blocking_for_caches(-1, 0, -5) == none == c.blocking_for_caches(none["l1"], none["l2"], none["l3"])


def test_the_machines_blocks_follow_from_the_caches_it_reports():
    b = c.gemm_blocking()
    print("this machine:", b)
    assert b == c.blocking_for_caches(b["l1"], b["l2"], b["l3"])
    try:
        size = open("/sys/devices/system/cpu/cpu0/cache/index0/size").read().strip()
        level_type = (open("/sys/devices/system/cpu/cpu0/cache/index0/level").read().strip(),
                      open("/sys/devices/system/cpu/cpu0/cache/index0/type").read().strip())
    except OSError:
        return
    if level_type == ("1", "Data") and size.endswith("K"):
        assert b["l1"] == int(size[:-1]) * KB


def test_forced_blocks_are_restored_and_checked():
    machine = c.gemm_blocking()
    with c.forced_gemm_blocking(kc=7, mc=1, nc_l2=33) as forced:
        nr = machine["nr"]
        assert (forced["kc"], forced["mc"], forced["nc_l2"]) == (7, machine["mr"], (33 + nr - 1) // nr * nr)
        assert forced["nc"] == machine["nc"]
    assert c.gemm_blocking() == machine
    with pytest.raises(ValueError, match="forced_gemm_blocking: kc must be an int >= 0"):
        with c.forced_gemm_blocking(kc=-1):
            pass
    assert c.gemm_blocking() == machine


# 1, primes, and sizes that straddle the register tiles and the forced blocks
sizes = st.sampled_from([1, 2, 5, 7, 13, 17, 33, 63, 65, 97, 131, 257])


@settings(max_examples=60, deadline=None)
@given(m=sizes, n=sizes, k=sizes, trans_a=st.booleans(), trans_b=st.booleans(), with_bias=st.booleans(),
       threads=st.sampled_from([1, 2, 3]), kc=st.sampled_from([0, 1, 7, 64, 100]),
       mc=st.sampled_from([0, 1, 25, 50]), nc=st.sampled_from([0, 1, 40, 100]),
       nc_l2=st.sampled_from([0, 1, 40, 100]))
def test_the_product_is_right_with_any_blocks(m, n, k, trans_a, trans_b, with_bias, threads, kc, mc, nc, nc_l2):
    """Blocks smaller than the operands: several k-blocks (C accumulated from the second on, the
    bias added once), row blocks and panels with partial slivers at their edges, under v8 (own
    rows), v6 (shared panels) and one thread. A block edge off by one fails it."""
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    with c.forced_gemm_blocking(kc=kc, mc=mc, nc=nc, nc_l2=nc_l2):
        out = c._matmul_2d(a, b, trans_a, trans_b, threads, bias)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = (a64.T if trans_a else a64) @ (b64.T if trans_b else b64) + (0.0 if bias is None else bias)
    assert np.linalg.norm(out - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6


@pytest.mark.parametrize("version", c.NUMBERED[3:] if c else [])
def test_numbered_versions_with_small_blocks(version):
    """v4–v8 read the same blocks: each crosses several of every block at a prime shape."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((131, 97)).astype(np.float32), rng.standard_normal((97, 139)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    with c.forced_gemm_blocking(kc=13, mc=30, nc=70, nc_l2=40):
        out = c.matmul_numbered(version, a, b)
    assert np.linalg.norm(out - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6


def test_a_misreported_l2_is_held_to_8_mb():
    """A VM may pass on its host's figure: an L2 above 8 MB (no core has one) sizes the A block
    and v8's panel as 8 MB would, where they still fill half of it."""
    huge, capped = c.blocking_for_caches(48 * KB, 512 * MB, 32 * MB), c.blocking_for_caches(48 * KB, 8 * MB, 32 * MB)
    assert huge == capped and huge["l2"] == 8 * MB
    _holds_the_rule(huge)
