"""GPT checkpoints saved before GPT's attention was one ``c_attn``: minillm's GPT had
``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` (nn.MultiHeadAttention's layout), so a
user's earlier run holds those. Its weights map onto today's names on loading
(``GPT.load_state_dict``), and its optimizer moments too when it resumes (``Trainer``)."""
import numpy as np

# today's attention module → what it was saved as; c_attn's (out, in) rows are q_proj's, k_proj's, v_proj's
_SEPARATE = {"attn.c_attn": ("attn.q_proj", "attn.k_proj", "attn.v_proj"), "attn.c_proj": ("attn.out_proj",)}


def _names_before_c_attn(name):
    """The names parameter ``name`` was saved under before c_attn, in their old order."""
    for today, before in _SEPARATE.items():
        block, found, kind = name.partition(f".{today}.")
        if found:
            return [f"{block}.{old}.{kind}" for old in before]
    return [name]


def has_separate_qkv(state):
    return any(".attn.q_proj." in name for name in state)


def from_separate_qkv(state):
    """``state`` in today's names: an old checkpoint's q_proj, k_proj and v_proj stacked
    into c_attn and out_proj renamed c_proj; a state without them comes back as it is."""
    if not has_separate_qkv(state):
        return state
    state = dict(state)
    for first in [n for n in state if ".attn.q_proj." in n or ".attn.out_proj." in n]:
        name = first.replace(".attn.q_proj.", ".attn.c_attn.").replace(".attn.out_proj.", ".attn.c_proj.")
        parts = _names_before_c_attn(name)
        if all(part in state for part in parts):  # a part missing: load_state_dict reports it
            state[name] = _stacked([state.pop(part) for part in parts])
    return state


def _stacked(arrays):
    return np.concatenate([np.asarray(a) for a in arrays], axis=0) if len(arrays) > 1 else arrays[0]


def optimizer_arrays_from_separate_qkv(arrays, names):
    """An old checkpoint's per-parameter optimizer arrays (``"{index}.{key}"``, indices in
    its parameter order) for today's parameters ``names``: c_attn's moments are q's, k's
    and v's stacked, as its weight is, so a run saved before c_attn resumes exactly."""
    old_index = {old: i for i, old in enumerate(_order_before_c_attn(names))}
    keys_of = {}
    for entry in arrays:
        index, _, key = entry.partition(".")
        keys_of.setdefault(index, []).append(key)
    out = {}
    for index, name in enumerate(names):
        parts = [old_index[old] for old in _names_before_c_attn(name)]
        for key in keys_of.get(str(parts[0]), []):
            out[f"{index}.{key}"] = _stacked([arrays[f"{i}.{key}"] for i in parts])
    return out


def _order_before_c_attn(names):
    """The parameter order of an old GPT with today's ``names``: its attention listed
    q_proj's weight and bias, then k_proj's, then v_proj's, where c_attn has one of each."""
    present, order = set(names), []
    for name in names:
        block, found, kind = name.partition(".attn.c_attn.")
        if not found:
            order += _names_before_c_attn(name)
        elif kind == "weight":  # c_attn's bias, if any, is listed here with it
            kinds = ("weight", "bias") if f"{block}.attn.c_attn.bias" in present else ("weight",)
            order += [f"{block}.attn.{proj}.{k}" for proj in ("q_proj", "k_proj", "v_proj") for k in kinds]
    return order
