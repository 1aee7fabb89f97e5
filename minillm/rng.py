"""One random generator for the whole library, so that `manual_seed(n)` makes weight
initialisation, dropout and sampling reproducible."""
import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed):
    global _generator
    _generator = np.random.default_rng(seed)


def generator():
    return _generator


def get_state():
    """The generator's state as JSON-serialisable data (checkpoints store it)."""
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state
