"""Inclusive and self shares of a py-spy raw (folded) profile, optionally under one frame.

    python -m benchmarks.folded PROFILE [--under FRAME] [--top N] [--share FRAME ...]

FRAME is a substring of a frame as py-spy writes it, e.g. "settle_batch (" or
"core_mode (benchmarks/run.py:273)". With --under, only stacks through that frame count,
from it down. Line numbers are dropped from the reported names (a function counts once
per stack), so a function's inclusive share is the share of samples it was on the stack.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path


def shares(path: Path, under: str | None = None) -> tuple[int, Counter[str], Counter[str], list[tuple[list[str], int]]]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    stacks = []
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if under is not None:
            start = next((i for i, f in enumerate(frames) if under in f), None)
            if start is None:
                continue
            frames = frames[start:]
        samples = int(count)
        total += samples
        stacks.append((frames, samples))
        names = [re.sub(r":\d+\)$", ")", f) for f in frames]
        for name in set(names):
            inclusive[name] += samples
        own[names[-1]] += samples
    return total, inclusive, own, stacks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--under")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--share", action="append", default=[], help="share of samples with FRAME on the stack")
    args = parser.parse_args(argv)
    total, inclusive, own, stacks = shares(args.profile, args.under)
    print(f"{total} samples" + (f" under {args.under!r}" if args.under else ""))
    for frame in args.share:
        hit = sum(n for frames, n in stacks if any(frame in f for f in frames))
        print(f"{100 * hit / max(total, 1):5.1f}%  with {frame!r} on the stack")
    print("inclusive:")
    for name, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")
    print("self:")
    for name, n in own.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
