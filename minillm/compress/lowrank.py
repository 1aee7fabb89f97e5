"""Low-rank factorisation (低秩分解): W (out × in) ≈ U_r S_r V_rᵀ by truncated SVD, one
Linear of out·in weights replaced by two of r·(in + out). The squared Frobenius error
is exactly the sum of the discarded squared singular values (Eckart–Young)."""
import numpy as np

from ..nn import Linear, Module, Parameter, Sequential


class LowRankLinear(Sequential):
    """x → x Vᵣᵀ √Sᵣ → (…) √Sᵣ Uᵣᵀ + b: two Linear layers through a rank-r bottleneck."""


def factorize(linear, rank=None, energy=None):
    """A LowRankLinear for ``linear`` keeping ``rank`` singular values, or the fewest that
    keep ``energy`` (a fraction) of Σ S²."""
    w = linear.weight.numpy().astype(np.float64)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    limit = len(s)
    if (rank is None) == (energy is None):
        raise ValueError("factorize: give exactly one of rank or energy")
    if rank is not None and not 1 <= rank <= limit:
        raise ValueError(f"factorize: rank {rank} is outside 1..{limit} for a {w.shape[0]}×{w.shape[1]} layer")
    if energy is not None:
        if not 0 < energy <= 1:
            raise ValueError(f"factorize: energy must be in (0, 1]; got {energy}")
        rank = int(np.searchsorted(np.cumsum(s ** 2) / (s ** 2).sum(), energy - 1e-12) + 1)
    root = np.sqrt(s[:rank])
    first = Linear(w.shape[1], rank, bias=False)
    second = Linear(rank, w.shape[0], bias=linear.bias is not None)
    first.weight = Parameter((vt[:rank] * root[:, None]).astype(np.float32))
    second.weight = Parameter((u[:, :rank] * root[None, :]).astype(np.float32))
    if linear.bias is not None:
        second.bias = Parameter(linear.bias.numpy().copy())
    factored = LowRankLinear(first, second)
    factored.rank, factored.discarded_energy = rank, float((s[rank:] ** 2).sum())
    return factored


def factorize_model(model, energy=0.9, min_features=64, skip=("lm_head",)):
    """Factorise, in place, every Linear with both sides >= min_features where that saves
    weights, keeping ``energy`` of each one's spectrum. Returns {path: rank}."""
    ranks = {}

    def visit(module, prefix):
        for name, child in list(module.named_children()):
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, Linear) and name not in skip and min(child.weight.shape) >= min_features:
                candidate = factorize(child, energy=energy)
                out_f, in_f = child.weight.shape
                if candidate.rank * (in_f + out_f) < out_f * in_f:
                    setattr(module, name, candidate)
                    ranks[path] = candidate.rank
            elif isinstance(child, Module) and not isinstance(child, LowRankLinear):
                visit(child, path)

    visit(model, "")
    return ranks
