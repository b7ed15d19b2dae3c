#!/usr/bin/env python3
"""Times training steps of lucidrains/reformer-pytorch on this machine, for comparison.

The same reference configuration as bench/reference.yaml: d_model 256, d_ff 1024 (ff_mult 4),
6 layers, 4 heads x 64, bucket 64, 2 hashes, batch 1, causal, reversible, axial positions
(--stored-activations: its irreversible blocks, which autograd back-propagates with stored
activations, to set beside model.reversible: false).
Run with a Python that has reformer-pytorch 1.4.4 and Debian's torch 1.13 (see bench/README.md):
    python bench/reference_pytorch.py --seq-len 4096 --steps 5
Prints one JSON line like bench/step_bench.
"""
import json
import os

import torch
from reformer_pytorch import ReformerLM

from torch_step_timer import autocast, median_step_seconds, parse_arguments, peak_memory


def main():
    def add_arguments(parser):
        parser.add_argument("--stored-activations", action="store_true",
                            help="irreversible blocks (reverse_thres above the sequence length)")
        parser.add_argument("--dropout", type=float, default=0.0,
                            help="dropout on the attention probabilities (lsh_dropout) and the "
                                 "feed-forward's hidden activations (ff_dropout); ReformerLM has "
                                 "no dropout on the residual branches")

    args, device = parse_arguments(__doc__.splitlines()[0], add_arguments)
    L = args.seq_len
    model = ReformerLM(num_tokens=256, dim=256, depth=6, max_seq_len=L, heads=4, dim_head=64,
                       bucket_size=64, n_hashes=2, ff_chunks=L // 1024 if L > 1024 else 1,
                       causal=True, axial_position_emb=True,
                       axial_position_shape=(L // 64, 64),
                       reverse_thres=L if args.stored_activations else 0,
                       lsh_dropout=args.dropout, ff_dropout=args.dropout).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (1, L), device=device)
    y = torch.randint(0, 256, (1, L), device=device)
    precision = autocast(args, device)

    def step():
        optimizer.zero_grad()
        with precision:
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, 256).float(), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    median = median_step_seconds(args, device, step)
    print(json.dumps({"implementation": "reformer-pytorch", "seq_len": L,
                      "precision": args.precision,
                      "reversible": int(not args.stored_activations),
                      "dropout": args.dropout,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      # (bench/run.sh sets it to the kernels the trainer runs)
                      "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset"),
                      "median_step_s": median, "tokens_per_s": L / median,
                      "device": args.device, **peak_memory(device)}))


if __name__ == "__main__":
    main()
