#!/usr/bin/env python3
"""Times training steps of a dense-attention Transformer of the reference model's size in PyTorch,
for comparison: 6 pre-LN layers, d_model 256, d_ff 1024, 4 heads x 64, causal attention through
torch.nn.functional.scaled_dot_product_attention (FlashAttention-2 on a GPU where PyTorch has it),
vocabulary 256, batch 1; one step = forward, backward, AdamW. --precision bf16 runs the step under
autocast (bf16 activations and tensor cores, fp32 weights and optimizer state), as a user would.

    python bench/dense_sdpa.py --device cuda --seq-len 16384 --precision bf16 --steps 5

Prints one JSON line like bench/step_bench (tokens_per_s, peak memory, the SDPA backend used).
"""
import contextlib
import json

import torch
import torch.nn.functional as F

from torch_step_timer import autocast, median_step_seconds, parse_arguments, peak_memory


class Block(torch.nn.Module):
    def __init__(self, d_model, d_ff, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(d_model)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = torch.nn.Linear(d_model, d_model, bias=False)
        self.norm2 = torch.nn.LayerNorm(d_model)
        self.ff = torch.nn.Sequential(torch.nn.Linear(d_model, d_ff), torch.nn.GELU(approximate="tanh"),
                                      torch.nn.Linear(d_ff, d_model))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.norm2(x))


class DenseLM(torch.nn.Module):
    def __init__(self, vocab=256, d_model=256, d_ff=1024, layers=6, heads=4, max_len=65536):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d_model)
        self.pos = torch.nn.Embedding(max_len, d_model)
        self.blocks = torch.nn.ModuleList(Block(d_model, d_ff, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(d_model)
        self.head = torch.nn.Linear(d_model, vocab)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def main():
    args, device = parse_arguments(__doc__.splitlines()[0])
    model = DenseLM(max_len=max(args.seq_len, 4096)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, 256, (1, args.seq_len + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    precision = autocast(args, device)
    # On a GPU: FlashAttention-2 at bf16; it has no fp32 kernel, so fp32 and tf32 use the
    # memory-efficient kernel. Forced, so a silent fallback to the quadratic-memory math kernel
    # is an error rather than a slow baseline.
    backend, kernel_choice = "default", contextlib.nullcontext()
    if device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        chosen = SDPBackend.FLASH_ATTENTION if args.precision == "bf16" else SDPBackend.EFFICIENT_ATTENTION
        backend, kernel_choice = chosen.name.lower(), sdpa_kernel(chosen)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with precision:
            loss = F.cross_entropy(model(inputs).view(-1, 256).float(), targets.reshape(-1))
        loss.backward()
        optimizer.step()

    with kernel_choice:
        median = median_step_seconds(args, device, step)
    print(json.dumps({
        "implementation": "dense-sdpa",
        "seq_len": args.seq_len,
        "precision": args.precision,
        "torch": torch.__version__,
        "device": args.device,
        "sdpa_backend": backend,
        "median_step_s": median,
        "tokens_per_s": args.seq_len / median,
        **peak_memory(device),
    }))


if __name__ == "__main__":
    main()
