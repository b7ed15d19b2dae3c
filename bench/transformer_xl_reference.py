"""Hugging Face's Transformer-XL (TransfoXLLMHeadModel, transformers 4.36.2) trained on the same
bytes, the same way as configs/transformer_xl_char.yaml: the reference for what segment-level
recurrence gains at a given size and budget. Lanes read contiguous streams (batchify), the last
10% of the file is validation, scored segment by segment with the memory. Prints one JSON line.

  python3 bench/transformer_xl_reference.py --text input.txt --memory-len 128 --seq-len 64
"""
import argparse
import json
import math
import time

import torch
from transformers import TransfoXLConfig, TransfoXLLMHeadModel


def batchify(data, lanes):
    per_lane = data.numel() // lanes
    return data[: per_lane * lanes].view(lanes, per_lane)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True)
    ap.add_argument("--memory-len", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--eval-segments", type=int, default=512)
    ap.add_argument("--eval-memory", type=int, default=-1, help="default: --memory-len")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    raw = torch.tensor(list(open(a.text, "rb").read()), dtype=torch.long)
    split = int(raw.numel() * 0.9)
    train, val = raw[:split], raw[split:]
    cfg = TransfoXLConfig(vocab_size=256, cutoffs=[], adaptive=False, div_val=1, d_model=128,
                          d_embed=128, n_head=4, d_head=32, d_inner=512, n_layer=4,
                          mem_len=a.memory_len, clamp_len=-1, same_length=False, dropout=0.0,
                          dropatt=0.0, pre_lnorm=True, untie_r=True, tie_word_embeddings=False)
    model = TransfoXLLMHeadModel(cfg)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), eps=1e-9,
                            weight_decay=0.01)

    def lr_at(step):  # linear warm-up, cosine to 10% (as train.schedule: cosine)
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        t = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    lanes = batchify(train, a.batch)
    per_lane = lanes.size(1) - 1
    mems = None
    start = time.time()
    model.train()
    for step in range(a.steps):
        t = (step * a.seq_len) % (per_lane - a.seq_len)
        if t < a.seq_len:
            mems = None  # each lane's stream starts over
        x = lanes[:, t:t + a.seq_len]
        y = lanes[:, t + 1:t + 1 + a.seq_len]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        out = model(input_ids=x, mems=mems)
        logp = out.prediction_scores  # [batch, seq, vocab] log-probabilities
        loss = torch.nn.functional.nll_loss(logp.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        mems = out.mems if a.memory_len > 0 else None
        if (step + 1) % 100 == 0:
            print(f"step {step + 1} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    train_seconds = time.time() - start

    eval_memory = a.memory_len if a.eval_memory < 0 else a.eval_memory
    model.eval()
    model.transformer.mem_len = eval_memory
    mems, nll, n = None, 0.0, 0
    with torch.no_grad():
        for s in range(a.eval_segments):
            x = val[s * a.seq_len:(s + 1) * a.seq_len].view(1, -1)
            y = val[s * a.seq_len + 1:(s + 1) * a.seq_len + 1].view(1, -1)
            if y.numel() < a.seq_len:
                break
            out = model(input_ids=x, mems=mems)
            nll += torch.nn.functional.nll_loss(out.prediction_scores.reshape(-1, 256),
                                                y.reshape(-1), reduction="sum").item()
            n += y.numel()
            mems = out.mems if eval_memory > 0 else None
    print(json.dumps({"reference": "transformers TransfoXLLMHeadModel", "params": params,
                      "memory_len": a.memory_len, "eval_memory": eval_memory,
                      "seq_len": a.seq_len, "steps": a.steps, "final_train_loss": loss.item(),
                      "val_bits_per_byte": nll / n / math.log(2), "val_tokens": n,
                      "train_seconds": round(train_seconds, 1)}))


if __name__ == "__main__":
    main()
