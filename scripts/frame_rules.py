#!/usr/bin/env python3
"""Halting rules that combine several uncertainty methods, scored on the per-frame rows of
`aceuq check-cutoffs --frames` (as scripts/cutoff_bench.sh writes them).

    python3 scripts/frame_rules.py docs/benchmarks/cutoffs/*_frames.csv

For each file: recall of the frames whose true largest force error is above e_max, and halts of
frames below e_max / 3 (false halts), e_max and p_halt as the file gives them, for each method's
frame rule alone ("frame rule" = the watch's `upper frame`: the frame probability at or above
p_halt, or an atom above its upper cutoff; n/a for a method calibrated without a fitted error
relation) and for rules that combine the frame rules of gamma, ensemble, distance and gp (the
methods with a fitted error relation): the mean of their frame probabilities against p_halt, any of them halting, at
least two of them halting, and an atom above its upper cutoff in any of them or at least two
frame rules (a rule proposed after looking at these files; the watch's `upper vote`, whose rows
`check-cutoffs` writes as method `vote`, scored from those rows too). Also split by held-out and
novel frames. Standard library only.
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


def rules(methods, with_rule, p_halt):
    def alone(m):
        return lambda d: d[m]["halted_frame"] == "1"

    r = {f"{m} frame rule": alone(m) if m in with_rule else None for m in methods if m != "vote"}
    if all(m in with_rule for m in COMBINED):
        r["mean p_frame of the four >= p_halt"] = lambda d: (
            sum(float(d[m]["p_frame"]) for m in COMBINED) / len(COMBINED) >= p_halt
        )
        r["any of the four halts"] = lambda d: any(alone(m)(d) for m in COMBINED)
        r["at least two of the four halt"] = lambda d: sum(alone(m)(d) for m in COMBINED) >= 2
        # Proposed after seeing these files (so not independent evidence): evidence from one
        # atom counts alone, an aggregated frame verdict needs a second method to agree.
        r["any atom rule, or two frame rules"] = lambda d: any(
            d[m]["halted_atom"] == "1" for m in COMBINED
        ) or sum(alone(m)(d) for m in COMBINED) >= 2
    if "vote" in methods:
        # The watch's `upper vote` as `aceuq check-cutoffs` computes it (the rule above, from
        # the jurors the model has: gamma, ensemble, distance, gp with a fitted error relation).
        r["upper vote (check-cutoffs rows)"] = alone("vote")
    return r


def score(frames, rule, e_max, subset=None):
    if rule is None:
        return "n/a"
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
    a = ap.parse_args()
    for path in a.csv:
        frames = frames_of(path)
        rows = [r for d in frames.values() for r in d.values()]
        e_max = {float(r["e_max"]) for r in rows}
        p_halt = {float(r["p_halt"]) for r in rows if r["p_halt"] != ""}
        if len(e_max) != 1 or len(p_halt) > 1:
            raise SystemExit(f"{path}: expected one e_max and p_halt, found {e_max}, {p_halt}")
        e_max = e_max.pop()
        p_halt = p_halt.pop() if p_halt else None
        methods = sorted({r["method"] for r in rows}, key=lambda m: (
            ["gamma", "gamma_local", "ensemble", "distance", "gp", "vote"] + [m]).index(m))
        with_rule = {r["method"] for r in rows if r["p_frame"] != ""}
        print(f"{path}: {len(frames)} frames, e_max {e_max} eV/A, p_halt {p_halt}")
        print(f"  {'rule':34s} {'all frames':22s} {'held-out':22s} novel")
        for name, rule in rules(methods, with_rule, p_halt).items():
            print(f"  {name:34s} {score(frames, rule, e_max):22s} "
                  f"{score(frames, rule, e_max, 'held-out'):22s} "
                  f"{score(frames, rule, e_max, 'novel')}")


if __name__ == "__main__":
    main()
