#!/usr/bin/env python3
"""What the attention kernels compile to, without a GPU: per kernel, ptxas's registers, stack,
spills and shared memory, and from the SASS (cuobjdump -sass) the instructions of the smallest
loop that holds all of its tensor-core products (HMMA), by kind.

A static count: a branch's both sides count (dropout, relative positions), a loop inside the loop
(staging) counts once. It shows where the issue slots go between products; it does not time
anything. bench/sass_stats.sh compiles the kernels and runs this.

Usage: sass_stats.py PTXAS_LOG SASS_TEXT [--match SUBSTRING]
"""
import argparse
import collections
import re
import sys

FUNCTION = re.compile(r"Function : (\S+)")
INSTRUCTION = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)([.A-Z0-9_]*)(.*)")
BRANCH_TARGET = re.compile(r"0x([0-9a-f]+)")
KINDS = ("HMMA", "FFMA", "FADD", "FMUL", "IMAD", "ISETP", "LOP3", "F2I", "MUFU", "LDS", "LDG",
         "LDL", "STL", "CALL", "BRA")


def short_name(mangled):
    """mma_forward_tiles<64, plain, dropout> for attention_tiles::mma_forward_tiles<64, false,
    true>: its head width, score terms and (tensor-core kernels) dropout, from the mangled name."""
    m = re.search(r"attention_tiles\d+(\w+?)ILi(\d+)E((?:Lb[01]E)*)", mangled)
    if not m:
        return mangled
    flags = re.findall(r"Lb([01])E", m.group(3))
    words = [("terms" if flags[0] == "1" else "plain")] if flags else []
    if len(flags) > 1:
        words.append("dropout" if flags[1] == "1" else "no dropout")
    return f"{m.group(1)}<{', '.join([m.group(2)] + words)}>"


def read_ptxas(path):
    """{mangled name: {regs, stack, spill_stores, smem}} from ptxas -v output."""
    out, current = {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            current = m.group(1)
            out[current] = {}
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores", line)
        if m:
            out[current].update(stack=int(m.group(1)), spill_stores=int(m.group(2)))
        m = re.search(r"Used (\d+) registers.*?(\d+) bytes smem", line)
        if m:
            out[current].update(regs=int(m.group(1)), smem=int(m.group(2)))
    return out


def read_sass(path):
    """{mangled name: [(address, opcode, operands)]} from cuobjdump -sass output."""
    out, current = {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        m = FUNCTION.search(line)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        m = INSTRUCTION.match(line)
        if m and current is not None:
            out[current].append((int(m.group(1), 16), m.group(2), m.group(4)))
    return out


def product_loop(instructions):
    """The instructions of the smallest backward branch's range that holds every HMMA, or None."""
    products = [a for a, op, _ in instructions if op == "HMMA"]
    if not products:
        return None
    best = None
    for address, op, operands in instructions:
        if op != "BRA":
            continue
        m = BRANCH_TARGET.search(operands)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target <= min(products) and address >= max(products):
            if best is None or address - target < best[1] - best[0]:
                best = (target, address)
    if best is None:
        return None
    return [op for a, op, _ in instructions if best[0] <= a <= best[1]]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ptxas_log")
    parser.add_argument("sass")
    parser.add_argument("--match", default="", help="only kernels whose name contains this")
    args = parser.parse_args(argv)
    ptxas, sass = read_ptxas(args.ptxas_log), read_sass(args.sass)
    if not sass:
        print(f"error: {args.sass}: no SASS functions (is it cuobjdump -sass output?)",
              file=sys.stderr)
        return 1
    print("kernel | regs | stack B | spill B | smem B | instructions | product loop | "
          + " | ".join(KINDS))
    for name in sorted(sass, key=short_name):
        if args.match not in short_name(name):
            continue
        info = ptxas.get(name, {})
        loop = product_loop(sass[name])
        counts = collections.Counter(loop or [])
        cells = [short_name(name), info.get("regs", "?"), info.get("stack", "?"),
                 info.get("spill_stores", "?"), info.get("smem", "?"), len(sass[name]),
                 len(loop) if loop else "-"] + [counts[k] if loop else "-" for k in KINDS]
        print(" | ".join(str(c) for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
