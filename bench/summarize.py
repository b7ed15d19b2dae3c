#!/usr/bin/env python3
"""Prints the benchmark tables (Markdown) from bench/results/*.jsonl written by bench/run.sh
(or from the folder RF_BENCH_RESULTS names, as run.sh writes it)."""
import json
import os
import pathlib
import statistics
import sys

RESULTS = pathlib.Path(os.environ.get("RF_BENCH_RESULTS")
                       or pathlib.Path(__file__).resolve().parent / "results")


def load(suite):
    path = RESULTS / f"{suite}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def throughput(suite="throughput"):
    rows = load(suite)
    if not rows:
        return
    print("| tokens | precision | ours tok/s (median) | reformer-pytorch tok/s | ratio | ceiling | "
          "ours GFLOP/s | of the GEMM rate | attention share | launches/step | ours peak GiB | "
          "reference peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for L in sorted({r["seq_len"] for r in rows}):
        for precision in ("fp32", "bf16"):
            ref = [r for r in rows if r["seq_len"] == L and r.get("implementation") == "reformer-pytorch"
                   and r.get("precision", "fp32") == precision]
            ours = [r for r in rows if r["seq_len"] == L and "implementation" not in r
                    and r.get("precision", "fp32") == precision]
            if not ours:
                continue
            med = lambda key: statistics.median(r[key] for r in ours)
            o, g, f, gemm = med("tokens_per_s"), med("gflops"), med("fraction_of_sgemm"), med("sgemm_gflops")
            # The ratio the FLOP count allows: every counted FLOP at the GEMM rate, nothing else.
            best = gemm * 1e9 / (med("step_gflop") * 1e9 / L)
            share = med("attention_share") if all(r.get("attention_share", -1) >= 0 for r in ours) else None
            launches = med("launches_per_step") if all("launches_per_step" in r for r in ours) else None
            m = max(r["peak_rss_gib"] for r in ours)
            cells = [str(L), precision, f"{o:.0f}"]
            if ref:
                p = statistics.median(r["tokens_per_s"] for r in ref)
                cells += [f"{p:.0f}", f"{o / p:.2f}x", f"{best / p:.2f}x"]
            else:
                cells += ["-", "-", "-"]
            cells += [f"{g:.0f}", f"{f:.0%} of {gemm:.0f}", f"{share:.0%}" if share is not None else "-",
                      f"{launches:.0f}" if launches is not None else "-", f"{m:.2f}",
                      f"{max(r['peak_rss_gib'] for r in ref):.2f}" if ref else "-"]
            print("| " + " | ".join(cells) + " |")
    kernel = {r.get("openblas_kernel") for r in rows if "openblas_kernel" in r}
    def rate(precision):
        return statistics.median(r["sgemm_gflops"] for r in rows if "sgemm_gflops" in r
                                 and r.get("precision", "fp32") == precision)
    sgemm = [r["openblas_sgemm_gflops"] for r in rows if r.get("openblas_sgemm_gflops", -1) > 0]
    sgemm_note = f" (its SGEMM: {statistics.median(sgemm):.0f} GFLOP/s at 2048^3)" if sgemm else ""
    print(f"\nOpenBLAS kernel: {', '.join(sorted(kernel))}{sgemm_note}; the executor's 2048^3 "
          f"product measured in the same processes: {rate('fp32'):.0f} GFLOP/s fp32 (OpenBLAS, "
          f"or oneDNN on AVX-512 CPUs from 11fb7af on)"
          + (f", {rate('bf16'):.0f} GFLOP/s oneDNN bf16 (the bf16 rows' fraction is of this)"
             if any(r.get("precision") == "bf16" for r in rows) else "") + ".\n")


def dropout():
    """The reference model at 4K with dropout 0.2 (bench/run.sh dropout), as the throughput table."""
    throughput("dropout")


def length():
    rows = load("length")
    if not rows:
        return
    print("| attention | tokens | s/step | us/token | per-token time vs 2048 | peak GiB |")
    print("|---|---|---|---|---|---|")
    for kind in ("lsh", "dense"):
        sel = sorted((r for r in rows if r["attention"] == kind), key=lambda r: r["seq_len"])
        if not sel:
            continue
        base = sel[0]["median_step_s"] / sel[0]["seq_len"]
        for r in sel:
            per = r["median_step_s"] / r["seq_len"]
            print(f"| {kind} | {r['seq_len']} | {r['median_step_s']:.2f} | {per * 1e6:.0f} | "
                  f"{per / base:.2f}x | {r['peak_rss_gib']:.2f} |")
    print()


def depth():
    rows = load("depth")
    if not rows:
        return
    print("| layers | layers' inputs | peak GiB | executor peak GiB | s/step |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r.get("reversible", 1):
            layout = "rebuilt (reversible)"
            if r.get("stored_top_layers", 0):
                layout += f", the top {r['stored_top_layers']} stored"
        elif r.get("recomputes_layers", 1):
            layout = "stored, layers recomputed"
        else:
            layout = "stored, activations kept"
        if r.get("residual") == "single":
            layout += " (one stream)"
        print(f"| {r['layers']} | {layout} | "
              f"{r['peak_rss_gib']:.2f} | {r['executor_peak_gib']:.2f} | {r['median_step_s']:.1f} |")
    print()


def million():
    for r in load("million"):
        print(f"One step on one sequence of {r['seq_len']} tokens ({r['layers']} layers, "
              f"d_model 128): {r['median_step_s']:.0f} s, peak memory {r['peak_rss_gib']:.2f} GiB "
              f"(executor allocations {r['executor_peak_gib']:.2f} GiB).\n")


def ranks():
    rows = load("ranks")
    if not rows:
        return
    print("| ranks | overlap | s/step | job tok/s | wait for all-reduce after backward (s) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ranks']} | {r['overlap']} | {r['median_step_s']:.2f} | "
              f"{r['job_tokens_per_s']:.0f} | {r['median_comm_wait_s']:.3f} |")
    print()


def allreduce():
    rows = load("allreduce")
    if not rows:
        return
    print("| ranks | bytes | time us | algbw GB/s | busbw GB/s | raw MPI_Allreduce busbw GB/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["bytes"] < 1024:
            continue
        b = r["blocking"]
        print(f"| {r['ranks']} | {r['bytes']} | {b['time_us']:.0f} | {b['algbw_gbs']:.2f} | "
              f"{b['busbw_gbs']:.2f} | {r['mpi_allreduce']['busbw_gbs']:.2f} |")
    print()


# Dense peak rates (TFLOP/s) by device name and precision, from the vendors' data sheets (SXM
# parts, without sparsity): the denominators of model FLOP utilisation.
PEAK_TFLOPS = {
    "H100": {"fp32": 67, "tf32": 495, "bf16": 989},
    "H200": {"fp32": 67, "tf32": 495, "bf16": 989},
    "A100": {"fp32": 19.5, "tf32": 156, "bf16": 312},
}


def device_peak(executor, precision):
    for name, peaks in PEAK_TFLOPS.items():
        if name in executor:
            return peaks.get(precision)
    return None


def gpu():
    rows = load("gpu")
    if not rows:
        return
    print("| tokens | model | precision | ours tok/s | reformer-pytorch tok/s | ratio | dense SDPA tok/s | "
          "ratio | MFU | launches/step | ours GPU GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "implementation" in r:
            continue
        precision = r.get("precision", "fp32")
        def baseline(name):
            # (reformer-pytorch's reversible blocks beside ours, its irreversible ones beside
            # stored layers)
            found = [x for x in rows if x.get("implementation") == name and x["seq_len"] == r["seq_len"]
                     and x.get("precision", "fp32") == precision and r["layers"] == 6
                     and (name != "reformer-pytorch"
                          or x.get("reversible", 1) == r.get("reversible", 1))]
            return found[0]["tokens_per_s"] if found else None
        ref, dense = baseline("reformer-pytorch"), baseline("dense-sdpa")
        peak = device_peak(r["executor"], precision)
        mfu = f"{r['gflops'] / (peak * 1e3):.1%}" if peak else "-"
        model = "reference" if r["layers"] == 6 else f"{r['layers']} layers"
        tokens = r["seq_len"] * r.get("batch", 1)
        if r.get("ff_chunk", 0) >= tokens and r.get("head_chunk", 0) >= tokens:
            model += ", unchunked"
        if r.get("step_graphs"):
            model += ", step graphs"
        if not r.get("reversible", 1):
            model += ", activations kept" if not r.get("recomputes_layers", 1) else ", inputs stored"
        elif r.get("stored_top_layers", 0):
            model += f", top {r['stored_top_layers']} layers stored"
        cells = [str(r["seq_len"]), model, precision, f"{r['tokens_per_s']:.0f}"]
        for b in (ref, dense):
            cells += [f"{b:.0f}", f"{r['tokens_per_s'] / b:.2f}x"] if b else ["-", "-"]
        cells += [mfu, str(r.get("launches_per_step", "-")), f"{r['executor_peak_gib']:.2f}"]
        print("| " + " | ".join(cells) + " |")
    devices = {r["executor"].split(", cuBLAS")[0] for r in rows if "executor" in r}
    print(f"\nDevice: {', '.join(sorted(devices))}. MFU: FLOPs counted as trainer/flop_count.cpp "
          "does, over the device's dense peak at that precision.\n")


for name in sys.argv[1:] or ["throughput", "dropout", "length", "depth", "million", "ranks", "allreduce", "gpu"]:
    print(f"### {name}\n")
    globals()[name]()
