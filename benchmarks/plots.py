"""PNG plots of a benchmark run: matmul GFLOP/s against OpenBLAS, attention time and
memory against T, and the per-token cost of generation against the context length."""
from pathlib import Path


def draw(results, folder, stem):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    folder = Path(folder)
    written = []

    square = [r for r in results.get("matmul", []) if r["M"] == r["K"] == r["N"]]
    if square:
        fig, ax = plt.subplots(figsize=(6, 4))
        sizes = [r["M"] for r in square]
        ax.plot(sizes, [r["openblas_gflops"] for r in square], "k--", label="NumPy / OpenBLAS")
        if "torch_gflops" in square[0]:
            ax.plot(sizes, [r["torch_gflops"] for r in square], ":", color="gray", label="PyTorch")
        for name in results["backends"]:
            ax.plot(sizes, [r[f"{name}_gflops"] for r in square], marker="o", label=f"minillm {name}")
        ax.set(xscale="log", xlabel="n (n×n · n×n)", ylabel="GFLOP/s", title="float32 matmul")
        _ticks(ax, sizes)
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(_save(fig, folder / f"{stem}-matmul.png"))

    attention = results.get("attention", [])
    if attention:
        groups = list(dict.fromkeys((r.get("BH", 32), r.get("d", 64)) for r in attention))
        fig, axes = plt.subplots(len(groups), 2, figsize=(10, 4 * len(groups)), squeeze=False)
        labels = ["composite"] + results["backends"] + ["numba_v1_rows", "c_v2_rows"]
        for (bh, d), (left, right) in zip(groups, axes):
            rows = [r for r in attention if (r.get("BH", 32), r.get("d", 64)) == (bh, d)]
            for label in labels:  # a kernel missing at some T (the composite past 2048) draws what it has
                points = [(r["T"], r[f"{label}_ms"], r[f"{label}_peak_mb"]) for r in rows if f"{label}_ms" in r]
                if points:
                    t, ms, mb = zip(*points)
                    left.plot(t, ms, marker="o", label=label)
                    right.plot(t, mb, marker="o", label=label)
            torch_points = [(r["T"], r["torch_ms"]) for r in rows if "torch_ms" in r]
            if torch_points:
                left.plot(*zip(*torch_points), ":", color="gray", label="PyTorch SDPA")
            left.set(xscale="log", yscale="log", xlabel="T", ylabel="ms (forward + backward)",
                     title=f"causal attention, B·H = {bh}, d = {d}")
            right.set(xscale="log", yscale="log", xlabel="T", ylabel="peak MB (NumPy allocations)",
                      title="memory: O(T²) composite vs O(T·d) fused")
            for ax in (left, right):
                _ticks(ax, [r["T"] for r in rows])
                ax.grid(alpha=0.3)
                ax.legend()
        written.append(_save(fig, folder / f"{stem}-attention.png"))

    generation = results.get("generation", [])
    if generation:
        fig, ax = plt.subplots(figsize=(6, 4))
        contexts = [r["context"] for r in generation]
        ax.plot(contexts, [r["cached_ms_per_token"] for r in generation], marker="o", label="with KV cache")
        ax.plot(contexts, [r["uncached_ms_per_token"] for r in generation], marker="o", label="without")
        ax.set(xlabel="context length (tokens)", ylabel="ms per generated token",
               title=f"GPT generation ({generation[0]['backend']} backend)")
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(_save(fig, folder / f"{stem}-generation.png"))
    return written


def _ticks(ax, values):
    """Label a log axis at the measured sizes only (matplotlib's minor labels collide)."""
    ax.set_xticks(values)
    ax.set_xticklabels([str(v) for v in values])
    ax.minorticks_off()


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path
