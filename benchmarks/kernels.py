"""CPU microbenchmarks of the hot primitives on every backend, against the NumPy
composite (OpenBLAS for matmul), the machine's copy bandwidth and, when installed,
PyTorch. Every ratio compares numbers taken in the same run."""
import importlib
import math
import tracemalloc

import numpy as np

from minillm import backends
from minillm.backends.reference import backend as reference

from .timing import median_seconds


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _timed(fn, inputs, repeats, heavy):
    """median_seconds, with fewer calls for cases that take seconds each."""
    return median_seconds(fn, inputs, 2 if heavy else repeats, warmup=1 if heavy else 3)


def _inputs(shapes, copies, seed):
    """``copies`` independent sets of float32 arrays, rotated between calls so a result
    never comes from data the previous call left in cache."""
    rng = np.random.default_rng(seed)
    return [tuple(rng.standard_normal(s).astype(np.float32) for s in shapes) for _ in range(copies)]


def _fastest_series(series, repeats, rounds):
    """label → (fn, inputs, heavy): each series ``rounds`` times, the labels taking turns,
    each keeping its fastest median (a heavy series, seconds long, runs once: then all do)."""
    best = dict.fromkeys(series, math.inf)
    for _ in range(1 if any(heavy for _, _, heavy in series.values()) else rounds):
        for label, (fn, args, heavy) in series.items():
            best[label] = min(best[label], _timed(fn, args, repeats, heavy))
    return best


def matmul(names, sizes, shapes, repeats, log, rounds=2):
    """GFLOP/s of C = A·B for square sizes and the GPT training shapes (M, K, N), or
    (M, K, N, "Aᵀ") for a product whose A is stored transposed (K × M, read through a view):
    the weight gradient gᵀ·x of every Linear layer, its reduction over the batch's rows.

    On a shared machine another tenant's burst of work can slow one series of calls (a
    0.1 ms product timed 50 times takes a few ms): each library's series runs ``rounds`` times,
    the libraries taking turns, and each keeps its faster median (a product over 20 GFLOP,
    seconds a series, runs once). Series stay whole rather
    than interleaved call by call: a pool that just ran spins on, and would slow the next
    library's call (see timing.SETTLE_SECONDS)."""
    torch = _torch()
    rows = []
    cases = [(n, n, n) for n in sizes] + list(shapes)
    for m, k, n, *transposed in cases:
        inputs = _inputs([(k, m) if transposed else (m, k), (k, n)], 3, m + k + n)
        if transposed:
            inputs = [(a.T, b) for a, b in inputs]
        gflop = 2.0 * m * k * n / 1e9
        row = {"shape": f"{m}x{k}x{n}" + (" Aᵀ" if transposed else ""), "M": m, "K": k, "N": n}
        heavy = gflop > 20
        series = {"openblas": (np.matmul, inputs, heavy)}
        if torch is not None:
            series["torch"] = (torch.matmul, [tuple(torch.from_numpy(a) for a in pair) for pair in inputs], heavy)
        series.update({name: (backends.get(name).matmul, inputs, heavy) for name in names})
        for label, seconds in _fastest_series(series, repeats, rounds).items():
            row[f"{label}_gflops"] = gflop / seconds
        for name in names:
            row[f"{name}_vs_openblas"] = row[f"{name}_gflops"] / row["openblas_gflops"]
        log(_fmt(row))
        rows.append(row)
    return rows


def matmul_versions(sizes, repeats, log, rounds=2, names=("c", "numba")):
    """Every numbered version (lesson 02's steps) of the backends in ``names`` (C and Numba)
    against OpenBLAS. As in ``matmul``, each series runs ``rounds`` times, the versions taking
    turns, and keeps its faster median (a burst on the shared VM once put one version's 512³
    series at a tenth of its speed); series of products over 4 GFLOP run once."""
    versions = [("openblas", np.matmul, "openblas")]
    for name in ("c", "numba"):
        if name in names:
            module = importlib.import_module(f"minillm.backends.{backends.KNOWN[name]}")
            versions += [(f"{name}_{v.replace('matmul_', '')}",
                          lambda a, b, v=v, module=module: module.matmul_numbered(v, a, b), v)
                         for v in module.NUMBERED]
    rows = []
    for n in sizes:
        inputs = _inputs([(n, n), (n, n)], 2, n)
        gflop = 2.0 * n ** 3 / 1e9
        heavy = gflop > 4
        # v1 takes minutes per call at 1024 and beyond; the trend is set by then
        series = {label: (kernel, inputs, heavy and label != "openblas") for label, kernel, version in versions
                  if not (version in ("matmul_v1_naive", "v1_rows") and n > 512)}
        best = _fastest_series(series, repeats, rounds)
        row = {"n": n, **{f"{label}_gflops": gflop / seconds for label, seconds in best.items()}}
        log(_fmt(row))
        rows.append(row)
    return rows


def _gpt_parameters(width, layers=4, vocab=66, block=256):
    """The parameter shapes of a GPT with n_embd = ``width`` (nanoGPT's layout; at width 128, the
    CPU recipe's model): what one optimizer step updates."""
    c = width
    layer = [(c,), (c,), (3 * c, c), (3 * c,), (c, c), (c,), (c,), (c,), (4 * c, c), (4 * c,), (c, 4 * c), (c,)]
    return [(vocab, c), (block, c)] + layer * layers + [(c,), (c,)]


def _ladder_cases(shape, rng):
    """(family, op, what, bytes the op must move, two sets of arguments) for one (rows, width):
    each pass reads its inputs and writes its outputs once (w, b and the per-row values are left
    out); Adam 28 bytes a parameter (θ, g, m, v read, θ, m, v written)."""
    r, d = shape

    def floats(*shapes):
        return [rng.standard_normal(s).astype(np.float32) for s in shapes]

    model = _gpt_parameters(d)
    values = sum(math.prod(s) for s in model)
    gpt = f"a GPT's {len(model)} tensors, {values / 1e6:.2g} M values"
    ps, gs, ms, vs = (floats(*model) for _ in range(4))
    # one copy of the model's state: hundreds of MB at the larger widths, past every cache anyway
    adam = (ps, gs, ms, [np.abs(v) for v in vs], 1e-3, 0.9, 0.95, 1e-8, 0.1, True, 10)
    cases = []
    for _ in range(2):
        x, dy = floats((r, d), (r, d))
        w, b = floats(d, d)
        y, mean, rstd = reference.layernorm_forward(x, w, b, 1e-5)
        target = rng.integers(0, d, r)
        loss, lse = reference.cross_entropy_forward(x, target, -100)
        cases.append([("layernorm", "layernorm_forward", 8 * r * d, (x, w, b, 1e-5)),
                      ("layernorm", "layernorm_backward", 12 * r * d, (dy, x, w, mean, rstd.astype(np.float32))),
                      ("cross_entropy", "cross_entropy_forward", 4 * r * d, (x, target, -100)),
                      ("cross_entropy", "cross_entropy_backward", 8 * r * d, (x, target, lse, dy[:, 0], -100)),
                      ("gelu", "gelu_forward", 8 * r * d, (x,)), ("gelu", "gelu_backward", 12 * r * d, (x, dy)),
                      ("adam", "adam_update", 28 * values, adam),
                      ("grad_norm", "sum_of_squares_many", 4 * values, (gs,)),
                      ("grad_norm", "scale_many", 8 * values, (gs, 0.999))])
    return [(family, op, gpt if family in ("adam", "grad_norm") else f"{r}x{d}", moved, [args, again[3]])
            for (family, op, moved, args), again in zip(*cases)]


def ladders(shapes, repeats, log, rounds=2):
    """Every numbered version of the C layer norm, cross-entropy, GELU, Adam and gradient
    clipping (kernels/c/<family>/, c_backend.numbered) at each (rows, width) in ``shapes`` (GELU
    over rows·width values; Adam and clipping over the parameters of a 4-layer GPT with n_embd =
    width): ms a call and GB/s of the bytes the op must move. As in ``matmul``, each version's
    series runs ``rounds`` times, the versions taking turns, and keeps its fastest median."""
    from minillm.backends import c as c_backend
    rng = np.random.default_rng(0)
    rows = []
    for shape in shapes:
        for family, op, what, moved, inputs in _ladder_cases(shape, rng):
            series = {version: (lambda *args, op=op, version=version: c_backend.numbered(op, version, *args),
                                inputs, False) for version in c_backend.LADDERS[family]}
            row = {"family": family, "op": op, "shape": what, "MB": moved / 1e6}
            for version, seconds in _fastest_series(series, repeats, rounds).items():
                row[f"{version}_ms"] = seconds * 1e3
                row[f"{version}_GBs"] = moved / seconds / 1e9
            log(_fmt(row))
            rows.append(row)
    return rows


def attention_versions(shapes, repeats, log, rounds=2):
    """Causal attention forward + backward, ms, for each numbered version of the C kernels
    (kernels/c/attention/: v1 naive, v2 rows, v3 tiles; v4, which turns RoPE inside, is
    ``rotary_attention``'s) and the production path, at
    (B·H, T, d, groups) shapes; groups > 1 is grouped-query attention (B·H / groups key/value
    heads), timed also as it was done before the kernels took groups: each key/value head
    repeated for its group (a copy) and the gradients summed back. Series take turns,
    ``rounds`` times, each keeping its fastest median (a shared machine)."""
    from minillm.backends import c
    rows = []
    for heads, t, d, groups in shapes:
        scale = 1 / math.sqrt(d)
        inputs = _inputs([(heads, t, d), (heads // groups, t, d), (heads // groups, t, d), (heads, t, d)], 2,
                         heads + t + d + groups)

        def step(version=None, repeat=False):
            def run(q, k, v, do):
                if repeat:
                    k, v = np.repeat(k, groups, axis=0), np.repeat(v, groups, axis=0)
                out, lse = c.backend.attention_forward(q, k, v, True, scale, version=version)
                grads = c.backend.attention_backward(q, k, v, out, lse, do, True, scale, version=version)
                if repeat:
                    [g.reshape(heads // groups, groups, t, d).sum(axis=1) for g in grads[1:]]
            return run

        series = {f"c_{v}": (step(v), inputs, False) for v in c.ATTENTION_VERSIONS  # v1 stores T×T, on one core;
                  if not (v == "v1_naive" and t > 512) and v != "v4_rotary"}  # v4: rotary_attention, with tables
        series["c_production"] = (step(), inputs, False)
        if groups > 1:
            series["c_production_repeated_kv"] = (step(repeat=True), inputs, False)
        row = {"BH": heads, "T": t, "d": d, "groups": groups}
        row.update({f"{label}_ms": seconds * 1e3 for label, seconds in _fastest_series(series, repeats, rounds).items()})
        log(_fmt(row))
        rows.append(row)
    return rows


def rotary_attention(shapes, repeats, log, rounds=2):
    """Llama's attention from one q|k|v projection, causal forward + backward, ms, at
    (B, T, heads, kv_heads, d) shapes, three ways: RoPE as a pass of its own (a turned copy of
    the projection for v3, the gradient turned back in one more pass: the way before v4), RoPE
    turned inside the kernel (v4_rotary.c, the production path), and the same attention with
    no RoPE at all (what the turn costs on top). Series take turns, ``rounds`` times, each
    keeping its fastest median."""
    from minillm.backends import c
    be = c.backend
    rows = []
    for b, t, heads, kv_heads, d in shapes:
        width, scale = (heads + 2 * kv_heads) * d, 1 / math.sqrt(d)
        inputs = _inputs([(b, t, width), (b, t, heads * d)], 2, b + t + heads + d)
        angles = np.arange(t)[:, None] * 10000.0 ** (-np.arange(d // 2) / (d // 2))
        cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)

        def rope_pass(qkv, dy):  # what ops.attention_qkv does on a backend without v4 (rope.c's passes)
            turned = be.turn_qk(qkv, heads, kv_heads, (cos, sin))
            y, lse = be.attention_qkv_forward(turned, heads, True, scale, kv_heads)
            grad = be.attention_qkv_backward(turned, y, lse, dy, heads, True, scale, kv_heads)
            be.turn_qk_back(grad, heads, kv_heads, (cos, sin))

        def inside(qkv, dy, rotary=(cos, sin)):
            y, lse = be.attention_qkv_forward(qkv, heads, True, scale, kv_heads, rotary)
            be.attention_qkv_backward(qkv, y, lse, dy, heads, True, scale, kv_heads, rotary)

        series = {"rope_pass_v3": (rope_pass, inputs, False), "v4_inside": (inside, inputs, False),
                  "no_rope_v3": (lambda qkv, dy: inside(qkv, dy, None), inputs, False)}
        row = {"B": b, "T": t, "heads": heads, "kv_heads": kv_heads, "d": d}
        row.update({f"{label}_ms": seconds * 1e3 for label, seconds in _fastest_series(series, repeats, rounds).items()})
        log(_fmt(row))
        rows.append(row)
    return rows


def _peak_bytes(fn, *args):
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def attention(names, lengths, repeats, log, shapes=((32, 64),)):
    """Causal attention forward + backward over (B·H, T, d) for each (B·H, d) in ``shapes``:
    time, and the peak of NumPy allocations (tracemalloc) — O(T²) for the composite, O(T·d)
    when fused. The row kernels (one query row at a time: Numba's v1, C's v2) are timed beside
    the tiles."""
    torch = _torch()
    rows = []
    for heads, d in shapes:
        scale = 1 / math.sqrt(d)
        for t in lengths:
            inputs = _inputs([(heads, t, d)] * 4, 2, t)
            row = {"T": t, "BH": heads, "d": d}
            heavy = t >= 2048

            def step(impl, **options):
                def run(q, k, v, do):
                    out, lse = impl.attention_forward(q, k, v, True, scale, **options)
                    impl.attention_backward(q, k, v, out, lse, do, True, scale, **options)
                return run

            impls = [("composite", reference, {})] + [(n, backends.get(n), {}) for n in names]
            for name, rows_version in (("numba", "v1_rows"), ("c", "v2_rows")):  # the row kernels the tiles replaced
                if name in names:
                    impls.append((f"{name}_{rows_version}", backends.get(name),
                                  {"version": "rows" if name == "numba" else rows_version}))
            for label, impl, options in impls:
                if label == "composite" and t > 2048:
                    continue  # the T×T composite needs gigabytes past this: the fused kernels exist for it
                if label.endswith("_rows") and t > 1024:
                    continue  # tens of seconds a call past this; the trend is set by then
                row[f"{label}_ms"] = _timed(step(impl, **options), inputs, repeats, heavy) * 1e3
                row[f"{label}_peak_mb"] = _peak_bytes(step(impl, **options), *inputs[0]) / 2 ** 20
            if torch is not None:
                def torch_step(q, k, v, do):
                    # (1, B·H, T, d): PyTorch's CPU flash-attention kernel wants 4-D inputs; with
                    # 3-D ones SDPA takes its unfused path, 4-6× slower (measured here at T = 1024)
                    q, k, v = (torch.from_numpy(a[None]).requires_grad_() for a in (q, k, v))
                    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
                    out.backward(torch.from_numpy(do[None]))
                row["torch_ms"] = _timed(torch_step, inputs, repeats, heavy) * 1e3
                for name in names:
                    row[f"{name}_vs_torch"] = row[f"{name}_ms"] / row["torch_ms"]
            for name in names:
                if "composite_ms" in row:
                    row[f"{name}_speedup"] = row["composite_ms"] / row[f"{name}_ms"]
            log(_fmt(row))
            rows.append(row)
    return rows


def copy_bandwidth(nbytes, repeats):
    """GB/s of a copy of ``nbytes`` (bytes read + bytes written), the memory roof."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * nbytes / median_seconds(lambda a, b: np.copyto(b, a), [(src, dst)], repeats) / 1e9


def layernorm(names, shapes, repeats, log):
    """Forward + backward, as GB/s of the bytes they must move (forward reads x and
    writes y; backward reads dy and x and writes dx), against a copy of the same bytes."""
    torch = _torch()
    rows = []
    for r, d in shapes:
        inputs = _inputs([(r, d), (d,), (d,), (r, d)], 2, r + d)
        nbytes = r * d * 4
        moved = 5 * nbytes  # x, y forward; dy, x, dx backward
        row = {"rows": r, "d": d, "copy_GBs": copy_bandwidth(nbytes, repeats)}

        def step(impl):
            def run(x, w, b, dy):
                y, mean, rstd = impl.layernorm_forward(x, w, b, 1e-5)
                impl.layernorm_backward(dy, x, w, mean, rstd)
            return run

        for label, impl in [("composite", reference)] + [(n, backends.get(n)) for n in names]:
            seconds = median_seconds(step(impl), inputs, repeats)
            row[f"{label}_ms"] = seconds * 1e3
            row[f"{label}_GBs"] = moved / seconds / 1e9
            row[f"{label}_vs_copy"] = row[f"{label}_GBs"] / row["copy_GBs"]
        if torch is not None:
            def torch_step(x, w, b, dy):
                x = torch.from_numpy(x).requires_grad_()
                y = torch.nn.functional.layer_norm(x, (d,), torch.from_numpy(w), torch.from_numpy(b))
                y.backward(torch.from_numpy(dy))
            row["torch_ms"] = median_seconds(torch_step, inputs, repeats) * 1e3
        for name in names:
            row[f"{name}_speedup"] = row["composite_ms"] / row[f"{name}_ms"]
        log(_fmt(row))
        rows.append(row)
    return rows


def _fmt(row):
    return "  " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
