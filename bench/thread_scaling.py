#!/usr/bin/env python3
"""How well each kind of launch uses the CPU's threads.

Runs `step_bench --profile-ops` twice, on one OpenMP thread and on N, and prints each launch's
time per step in both runs, the speedup, and the milliseconds a step loses to it against perfect
scaling (its time on N threads less its time on one thread / N), largest loss first. An op running
at one thread's pace shows a speedup near 1 and a large loss: that is how the reference model's
thin bf16 products in oneDNN were found (kernels/cpu/onednn_matmul.h, kThinBf16Plan).

  bench/thread_scaling.py [--threads N] [--steps S] [--warmup W] [--top K] -- STEP_BENCH_ARGS...

e.g. bench/thread_scaling.py -- --config bench/reference.yaml --set train.seq_len=4096
     --set "model.axial_shape=[64,64]" --set runtime.precision=bf16
RF_BENCH names the step_bench command (default: build/bench/step_bench beside this folder).
"""
import argparse
import os
import re
import shlex
import subprocess
import sys

ROW = re.compile(r"^\s*([0-9.]+)\s+([0-9.]+)%\s+([0-9.]+)\s+(?:([0-9]+)\s+)?(\S.*?)\s*$")


def launch_table(command, threads):
    """{launch: ms per step} from one --profile-ops run on `threads` OpenMP threads."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"thread_scaling: step_bench failed on {threads} thread(s) (exit "
                 f"{run.returncode}): {last}")
    table, inside = {}, False
    for line in run.stderr.splitlines():
        if "ms/step" in line and "launch" in line:
            inside = True
            continue
        match = ROW.match(line) if inside else None
        if match:
            table[match.group(5)] = float(match.group(1))
    if not table:
        sys.exit(f"thread_scaling: no launch table in step_bench's output on {threads} thread(s)")
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of the second run (default: the CPUs here)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--top", type=int, default=25, help="launches to print")
    parser.add_argument("step_bench_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    rest = args.step_bench_args[1:] if args.step_bench_args[:1] == ["--"] else args.step_bench_args
    if args.threads < 2:
        sys.exit(f"thread_scaling: --threads {args.threads}: compare one thread with two or more")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bench = shlex.split(os.environ.get("RF_BENCH", os.path.join(root, "build/bench/step_bench")))
    command = bench + rest + ["--profile-ops", "--steps", str(args.steps),
                              "--warmup", str(args.warmup)]
    one, many = launch_table(command, 1), launch_table(command, args.threads)
    n = args.threads
    rows = []
    for name, t_many in many.items():
        t_one = one.get(name)
        if t_one is None:
            continue
        rows.append((t_many - t_one / n, t_one, t_many, name))
    rows.sort(reverse=True)
    print(f"{'lost ms':>8} {'1 thread':>9} {str(n) + ' threads':>10} {'speedup':>8}  launch")
    for lost, t_one, t_many, name in rows[:args.top]:
        speedup = t_one / t_many if t_many > 0 else float("inf")
        print(f"{lost:8.2f} {t_one:9.2f} {t_many:10.2f} {speedup:7.2f}x  {name}")
    total_one, total_many = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{sum(r[0] for r in rows):8.2f} {total_one:9.2f} {total_many:10.2f} "
          f"{total_one / total_many:7.2f}x  all launches (ms per step)")


if __name__ == "__main__":
    main()
