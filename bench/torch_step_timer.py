"""What the PyTorch baselines (reference_pytorch.py, dense_sdpa.py) share: their command line, the
precision switches, the timed loop of training steps and the peak-memory fields of their JSON
line, so both are measured the same way."""
import argparse
import resource
import statistics
import time

import torch


def parse_arguments(description, add_arguments=None):
    """The common options, and those add_arguments(parser) adds."""
    parser = argparse.ArgumentParser(description=description)
    if add_arguments:
        add_arguments(parser)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                        help="tf32: TF32 matmuls on a GPU; bf16: the step under autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    return args, device


def autocast(args, device):
    """bf16 autocast when --precision bf16 (bf16 activations, fp32 weights and optimizer state)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")


def median_step_seconds(args, device, step):
    """Runs step() --warmup + --steps times; the median of the timed ones. On a GPU the step is
    only queued until the device drains, so each is synchronised before its time is taken."""
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(device):
    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "peak_device_gib": (torch.cuda.max_memory_allocated() / 2**30
                                if device.type == "cuda" else None)}
