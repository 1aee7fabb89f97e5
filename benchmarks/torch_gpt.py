"""The same GPT as ``minillm.models.GPT`` written in PyTorch (pre-LN blocks, learned
positions, tanh GELU, q/k/v from one c_attn as in nanoGPT, no weight tying), the peer in
the end-to-end benchmark. Weights can be copied from a minillm model, so both compute the
same function."""
import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)

    def forward(self, x):
        b, t, c = x.shape
        heads = lambda z: z.view(b, t, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731 (B, nh, T, hs)
        q, k, v = (heads(z) for z in self.c_attn(x).split(c, dim=2))  # (B, T, 3C) → (B, nh, T, hs) each
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))       # (B, nh, T, hs) → (B, T, C)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc, self.proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(c), Attention(c, heads), nn.LayerNorm(c), MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def load_minillm(self, state):
        """Copy a minillm GPT's state_dict (names map one to one: blocks.0.attn.c_attn.weight …)."""
        own = self.state_dict()
        self.load_state_dict({k: torch.tensor(v) for k, v in state.items() if k in own})
