"""benchmarks.profile_step on Llama: the step's time lands in the groups of Llama's blocks, and
on the C backend RoPE is turned inside the attention kernel (no rope_forward call in a
training step), while the reference turns q and k in a pass of its own."""
import pytest

from benchmarks.profile_step import profile
from minillm import backends


@pytest.mark.parametrize("name", ["numpy", "c"])
def test_llama_profile_groups_its_blocks(name):
    if name not in backends.available():
        pytest.skip(f"{name} backend not built")
    previous = backends.current().name
    try:
        result = profile(name, 1, config="tiny-llama")  # it sets the backend for the process
    finally:
        backends.set_backend(previous)
    groups = result["groups"]
    assert result["config"] == "tiny-llama"
    assert groups["SwiGLU"] > 0 and groups["RMSNorm"] > 0 and groups["attention"] > 0
    assert groups["GELU"] == 0 and groups["layer norm"] == 0
    if name == "c":
        assert groups["RoPE (outside attention)"] == 0
    else:
        assert groups["RoPE (outside attention)"] > 0
