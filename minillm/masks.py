"""Attention masks, shared by the reference backend, ``functional`` and ``nn`` (a module of
its own so that none of them has to import another to get one)."""


def causal_mask(xp_, t_query, t_key):
    """True where query i may see key j. Queries are the *last* t_query positions of the
    key sequence, so one new token attends to the whole cache (equal to torch's
    ``is_causal`` when t_query == t_key). ``xp_`` is NumPy or CuPy."""
    offset = t_key - t_query
    return xp_.arange(t_key)[None, :] <= (xp_.arange(t_query)[:, None] + offset)
