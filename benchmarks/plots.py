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
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        lengths = [r["T"] for r in attention]
        for label in ["composite"] + results["backends"]:
            left.plot(lengths, [r[f"{label}_ms"] for r in attention], marker="o", label=label)
            right.plot(lengths, [r[f"{label}_peak_mb"] for r in attention], marker="o", label=label)
        if "torch_ms" in attention[0]:
            left.plot(lengths, [r["torch_ms"] for r in attention], ":", color="gray", label="PyTorch")
        left.set(xscale="log", yscale="log", xlabel="T", ylabel="ms (forward + backward)",
                 title="causal attention, B·H = 32, d = 64")
        right.set(xscale="log", yscale="log", xlabel="T", ylabel="peak MB (NumPy allocations)",
                  title="memory: O(T²) composite vs O(T·d) fused")
        for ax in (left, right):
            _ticks(ax, lengths)
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
