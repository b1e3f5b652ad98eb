#!/usr/bin/env python3
"""How well the closest approach of two atoms separates unstable from calm frames.

For each frame that `scripts/cutoff_bench.sh` checked (the per-frame rows
docs/benchmarks/cutoffs/<system>_<rule>[_seed7]_frames.csv), the contact ratio
c = max over atom pairs (i, j) of d_train(s_i, s_j) / r_ij, where d_train is the shortest distance
of that species pair in the system's training data (the distance below which an aceuq model
switches its ZBL core on: `aceuq info` prints it); c > 1 means two atoms closer than any pair the
model was fitted on. Then, as the section "How far Li's frames can be separated at all" of
docs/benchmarks/cutoffs/README.md does for the uncertainty measures: the threshold just above
the largest c on a calm frame (true largest force error below e_max / 3), chosen after seeing
the frames, and the unstable frames (above e_max) it catches; and the same for c together with
gamma's frame probability p_frame (either halting, each threshold just above its calm maximum).

    .venv/bin/python scripts/contact_separation.py [CUTOFF_BENCH_DIR]

Needs ASE (the project venv has it). Reads tests/data; writes nothing.
"""

import csv
import math
import sys
from pathlib import Path

from ase.io import read
from ase.neighborlist import neighbor_list

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
REACH = 5.0  # Å: far beyond any shortest distance


def pairs(atoms):
    """(species i, species j, distance) of every pair closer than REACH."""
    a = atoms.copy()
    if not a.pbc.any():
        a.center(vacuum=REACH + 1.0)
    i, j, d = neighbor_list("ijd", a, REACH)
    z = a.get_chemical_symbols()
    return ((z[p], z[q], r) for p, q, r in zip(i, j, d))


def key(a, b):
    return (a, b) if a <= b else (b, a)


def shortest(frames):
    ref = {}
    for f in frames:
        for a, b, r in pairs(f):
            k = key(a, b)
            ref[k] = min(ref.get(k, math.inf), r)
    return ref


def contact(atoms, ref):
    fallback = min(ref.values())
    return max((ref.get(key(a, b), fallback) / r for a, b, r in pairs(atoms)), default=0.0)


def frames_of(system, csv_path, cache):
    """Per frame of the CSV (gamma's rows): contact ratio, true largest error, e_max, p_frame,
    config_type."""
    out = []
    rows = [r for r in csv.DictReader(open(csv_path)) if r["method"] == "gamma"]
    for r in rows:
        name = r["file"]
        if name not in cache:
            if name.startswith("bench/"):
                # The bench's checked half of the unstable set: its odd frames.
                cache[name] = read(DATA / system / "unstable.xyz", ":")[1::2]
            else:
                cache[name] = read(ROOT / name, ":")
        atoms = cache[name][int(r["index_in_file"])]
        p = float(r["p_frame"]) if r["p_frame"] not in ("", "-") else math.nan
        out.append((contact(atoms, cache["ref"]), float(r["max_force_error"]),
                    float(r["e_max"]), p, r["config_type"]))
    return out


def catch(frames, stats):
    """Unstable frames caught with every statistic's threshold just above its calm maximum."""
    calm = [f for f in frames if f[1] < f[2] / 3]
    unstable = [f for f in frames if f[1] > f[2]]
    top = [max((s(f) for f in calm if not math.isnan(s(f))), default=-math.inf) for s in stats]
    caught = [f for f in unstable if any(s(f) > t for s, t in zip(stats, top))]
    return len(caught), len(unstable), len(calm), top


def main():
    bench = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "benchmarks" / "cutoffs"
    sets = {
        "li": [("original", "li_default_frames.csv"), ("fresh", "li_default_seed7_frames.csv")],
        "almg": [("original", "almg_default_frames.csv"),
                 ("fresh", "almg_default_seed7_frames.csv")],
        "inp": [("held-out", "inp_default_frames.csv")],
        "wbe": [("held-out", "wbe_default_frames.csv")],
    }
    c = lambda f: f[0]  # noqa: E731
    p = lambda f: f[3]  # noqa: E731
    print("| system, frames | unstable | calm | contact: largest on a calm frame | "
          "smallest on an unstable frame | caught by contact | by gamma p_frame | by either |")
    print("|---|---|---|---|---|---|---|---|")
    for system, parts in sets.items():
        cache = {"ref": shortest(read(DATA / system / "train.xyz", ":"))}
        refs = ", ".join(f"{a}-{b} {r:.3f}" for (a, b), r in sorted(cache["ref"].items()))
        print(f"<!-- {system}: shortest training distances (Å) {refs} -->")
        every = []
        for label, name in parts:
            fr = frames_of(system, bench / name, cache)
            every += fr
            rows = [(label, fr)]
            if len(parts) > 1 and label == parts[-1][0]:
                rows.append(("both", every))
            for lab, f in rows:
                n_c, n_u, n_calm, (top_c,) = catch(f, [c])
                n_p, *_ = catch(f, [p])
                n_e, *_ = catch(f, [c, p])
                low = min((x[0] for x in f if x[1] > x[2]), default=math.nan)
                print(f"| {system}, {lab} | {n_u} | {n_calm} | {top_c:.4f} | {low:.4f} | "
                      f"{n_c} | {n_p} | {n_e} |")


if __name__ == "__main__":
    main()
