#!/usr/bin/env python3
"""Times training steps of lucidrains/reformer-pytorch on this machine, for comparison.

The same reference configuration as bench/reference.yaml: d_model 256, d_ff 1024 (ff_mult 4),
6 layers, 4 heads x 64, bucket 64, 2 hashes, batch 1, causal, reversible, axial positions.
Run with a Python that has reformer-pytorch 1.4.4 and Debian's torch 1.13 (see bench/README.md):
    python bench/reference_pytorch.py --seq-len 4096 --steps 5
Prints one JSON line like bench/step_bench.
"""
import argparse
import json
import resource
import statistics
import time

import torch
from reformer_pytorch import ReformerLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                        help="tf32: TF32 matmuls on a GPU; bf16: the step under autocast")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    L = args.seq_len
    model = ReformerLM(num_tokens=256, dim=256, depth=6, max_seq_len=L, heads=4, dim_head=64,
                       bucket_size=64, n_hashes=2, ff_chunks=L // 1024 if L > 1024 else 1,
                       causal=True, axial_position_emb=True,
                       axial_position_shape=(L // 64, 64)).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (1, L), device=args.device)
    y = torch.randint(0, 256, (1, L), device=args.device)
    on_gpu = args.device.startswith("cuda")
    autocast = torch.autocast("cuda" if on_gpu else "cpu", dtype=torch.bfloat16,
                              enabled=args.precision == "bf16")
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        with autocast:
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, 256).float(), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if on_gpu:
            torch.cuda.synchronize()  # the step is queued, not done, until the device drains
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(json.dumps({"implementation": "reformer-pytorch", "seq_len": L,
                      "precision": args.precision,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "median_step_s": median, "tokens_per_s": L / median,
                      "device": args.device, "peak_rss_gib": peak_gib,
                      "peak_device_gib": (torch.cuda.max_memory_allocated() / 2**30
                                          if on_gpu else None)}))


if __name__ == "__main__":
    main()
