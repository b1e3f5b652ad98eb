#!/usr/bin/env python3
"""Halting rules that combine several uncertainty methods, scored on the per-frame rows of
`aceuq check-cutoffs --frames` (as scripts/cutoff_bench.sh writes them).

    python3 scripts/frame_rules.py docs/benchmarks/cutoffs/*_frames.csv [--e-max 1.0]

For each file: recall of the frames whose true largest force error is above e_max, and halts of
frames below e_max / 3 (false halts), for each method's frame rule alone and for rules that
combine the frame rules of gamma, ensemble, distance and gp (the methods with a fitted error
relation): the mean of their frame probabilities against p_halt = 0.5, any of them halting, at
least two of them halting, and an atom above its upper cutoff in any of them or at least two
frame rules (a rule proposed after looking at these files). Also split by held-out and novel
frames. Standard library only.
"""
import argparse
import csv
from collections import defaultdict

COMBINED = ["gamma", "ensemble", "distance", "gp"]


def frames_of(path):
    """{frame: {method: row}} of one CSV."""
    out = defaultdict(dict)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            out[int(r["frame"])][r["method"]] = r
    return out


def rules(methods):
    def alone(m):
        return lambda d: d[m]["halted_frame"] == "1"

    def have(d):
        return all(m in d and d[m]["p_frame"] != "" for m in COMBINED)

    r = {f"{m} frame rule": alone(m) for m in methods}
    if all(m in methods for m in COMBINED):
        r["mean p_frame of the four >= 0.5"] = lambda d: have(d) and (
            sum(float(d[m]["p_frame"]) for m in COMBINED) / len(COMBINED) >= 0.5
        )
        r["any of the four halts"] = lambda d: any(alone(m)(d) for m in COMBINED)
        r["at least two of the four halt"] = lambda d: sum(alone(m)(d) for m in COMBINED) >= 2
        # Proposed after seeing these files (so not independent evidence): evidence from one
        # atom counts alone, an aggregated frame verdict needs a second method to agree.
        r["any atom rule, or two frame rules"] = lambda d: any(
            d[m]["halted_atom"] == "1" for m in COMBINED
        ) or sum(alone(m)(d) for m in COMBINED) >= 2
    return r


def score(frames, rule, e_max, subset=None):
    unstable = caught = false = 0
    for d in frames.values():
        row = next(iter(d.values()))
        if subset is not None and row["set"] != subset:
            continue
        e = float(row["max_force_error"])
        h = rule(d)
        unstable += e > e_max
        caught += h and e > e_max
        false += h and e < e_max / 3
    rec = f"{caught / unstable:.2f} ({caught}/{unstable})" if unstable else "- (0/0)"
    return f"{rec}, {false} false"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--e-max", type=float, default=1.0)
    a = ap.parse_args()
    for path in a.csv:
        frames = frames_of(path)
        methods = sorted({m for d in frames.values() for m in d}, key=lambda m: (
            ["gamma", "gamma_local", "ensemble", "distance", "gp"] + [m]).index(m))
        print(f"{path}: {len(frames)} frames")
        print(f"  {'rule':34s} {'all frames':22s} {'held-out':22s} novel")
        for name, rule in rules(methods).items():
            print(f"  {name:34s} {score(frames, rule, a.e_max):22s} "
                  f"{score(frames, rule, a.e_max, 'held-out'):22s} "
                  f"{score(frames, rule, a.e_max, 'novel')}")


if __name__ == "__main__":
    main()
