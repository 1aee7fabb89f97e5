"""Two CPU benchmark runs side by side: every row both runs have, as before → after and their
ratio (the best of each row when a folder holds several runs). What issue #33 asked for when a
refactor must not slow anything: run ``python -m benchmarks --out A`` on the old checkout and
``--out B`` on the new one, on the same machine, then

    python -m benchmarks.compare_runs A B

A single series per row is noisy on a shared VM: re-measure a large ratio by alternating the two
checkouts before believing it.
"""
import glob
import json
import sys

# (op, row key, value, which is better, unit)
ROWS = [("matmul", lambda r: r["shape"], "c_gflops", max, "GFLOP/s"),
        ("attention", lambda r: (r.get("BH"), r.get("d"), r["T"]), "c_ms", min, "ms"),
        ("layernorm", lambda r: f"{r['rows']}x{r['d']}", "c_GBs", max, "GB/s"),
        ("train_step", lambda r: (r["config"], r["backend"]), "ms_per_step", min, "ms"),
        ("generation", lambda r: r["context"], "cached_ms_per_token", min, "ms/token")]


def runs(folder):
    return [json.load(open(path)) for path in sorted(glob.glob(f"{folder}/cpu-*.json"))]


def best(results, op, key, value, pick):
    found = {}
    for result in results:
        for row in result.get(op) or []:
            if row.get(value) is not None:
                found.setdefault(key(row), []).append(row[value])
    return {k: pick(v) for k, v in found.items()}


def version_rows(before, after):
    """The numbered matmul versions (GFLOP/s, higher is better) of both runs."""
    names = sorted({k for r in before + after for row in r.get("versions") or [] for k in row
                    if k.endswith("_gflops")})
    for name in names:
        a, b = (best(r, "versions", lambda row: row["n"], name, max) for r in (before, after))
        for n in sorted(set(a) & set(b)):
            yield f"versions {name} n={n}", a[n], b[n], "GFLOP/s"


def compare(before_folder, after_folder, log=print):
    before, after = runs(before_folder), runs(after_folder)
    if not before or not after:
        raise SystemExit(f"compare_runs: no cpu-*.json in {before_folder if not before else after_folder}")
    lines = []
    for op, key, value, pick, unit in ROWS:
        a, b = best(before, op, key, value, pick), best(after, op, key, value, pick)
        lines += [(f"{op} {k}", a[k], b[k], unit) for k in sorted(set(a) & set(b), key=str)]
    lines += list(version_rows(before, after))
    for label, a, b, unit in lines:
        log(f"{label}: {a:.4g} → {b:.4g} {unit} (after ÷ before {b / a:.3f})")
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m benchmarks.compare_runs BEFORE_FOLDER AFTER_FOLDER")
    compare(*sys.argv[1:])
