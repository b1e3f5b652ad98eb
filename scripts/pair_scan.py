#!/usr/bin/env python3
"""How a reference potential treats close pairs: the evidence behind a data generator's d_floor.

For each requested pair of species, the closest such pair of the first frame of a condition is
pushed together (or pulled apart) along its bond, both atoms moving by half the change, every
other atom fixed; each geometry is labelled with the reference potential. Printed per distance:
the energy relative to the last distance, the force on the second atom along the bond (positive:
pushed apart, i.e. repulsive) and the largest force on any atom. A potential that stays smoothly
repulsive (energy rising, bond force positive and growing) as the pair closes is physical there;
a drop in energy or a force that turns attractive marks a hole where its labels cannot be
trusted, and a data generator's floor must lie above it.

Usage:
    python3 scripts/pair_scan.py --labeller wbe-snap --data tests/data/wbe/test.xyz \\
        Be_liquid_1800K:Be-Be Be69W3_hcp_600K:W-Be W_bcc_300K:W-W [--r 1.05,1.2,...]

Each positional argument is CONFIG_TYPE:A-B (the config_type of the frame to use and the pair's
species). Distances are in Å; the default list runs from 1.05 to 2.2 Å (a --r list reaching past
the pair's own distance also pulls it apart; energies are relative to the last distance). Atoms
closer than 1 Å are refused by the labeller.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import label as L  # noqa: E402


def nearest_image(fr: L.Frame, a: int, b: int) -> tuple[float, list[float]]:
    """Distance and vector a -> b over the 27 nearest periodic images (cells of these sets are
    near-orthogonal and larger than twice the distances scanned)."""
    best = None
    shifts = (-1, 0, 1)
    for i, j, k in itertools.product(shifts, shifts, shifts):
        if fr.cell is None and (i, j, k) != (0, 0, 0):
            continue
        d = [fr.positions[b][x] - fr.positions[a][x] for x in range(3)]
        if fr.cell is not None:
            d = [d[x] + i * fr.cell[0][x] + j * fr.cell[1][x] + k * fr.cell[2][x] for x in range(3)]
        r = math.sqrt(sum(v * v for v in d))
        if best is None or r < best[0]:
            best = (r, d)
    return best


def scan(frames: list[L.Frame], spec: str, labeller: str, rs: list[float]) -> None:
    try:
        ct, pair = spec.split(":")
        sa, sb = pair.split("-")
    except ValueError:
        raise SystemExit(f"pair_scan: '{spec}' is not CONFIG_TYPE:A-B (e.g. Be_liquid_1800K:Be-Be)")
    fr = next((f for f in frames if f.get_info("config_type") == ct), None)
    if fr is None:
        raise SystemExit(f"pair_scan: no frame with config_type={ct} in the data")
    best = None
    n = len(fr.symbols)
    for a in range(n):
        for b in range(a + 1, n):
            if sorted((fr.symbols[a], fr.symbols[b])) != sorted((sa, sb)):
                continue
            i, j = (a, b) if fr.symbols[a] == sa else (b, a)
            r, d = nearest_image(fr, i, j)
            if best is None or r < best[0]:
                best = (r, i, j, d)
    if best is None:
        raise SystemExit(f"pair_scan: the {ct} frame has no {sa}-{sb} pair")
    r0, a, b, d = best
    u = [x / r0 for x in d]
    geoms = []
    for r in rs:
        g = copy.deepcopy(fr)
        g.pos_tokens = None
        g.energy = g.forces = g.virial = None
        s = (r - r0) / 2
        g.positions[a] = [g.positions[a][x] - s * u[x] for x in range(3)]
        g.positions[b] = [g.positions[b][x] + s * u[x] for x in range(3)]
        geoms.append(g)
    L.label_frames(geoms, labeller)
    print(f"{ct} {sa}-{sb}: closest pair at {r0:.3f} Å (atoms {a + 1}, {b + 1})")
    print("   r (Å)   E - E(last) (eV)   F along bond (eV/Å)   max |F| (eV/Å)")
    e_last = geoms[-1].energy
    for r, g in zip(rs, geoms):
        f_bond = sum(g.forces[b][x] * u[x] for x in range(3))
        f_max = max(math.sqrt(sum(v * v for v in f)) for f in g.forces)
        print(f"  {r:6.2f}   {g.energy - e_last:16.3f}   {f_bond:19.3f}   {f_max:14.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labeller", required=True, help="a labeller of scripts/label.py")
    ap.add_argument("--data", required=True, help="extended XYZ with config_type keys")
    ap.add_argument("--r", default="1.05,1.2,1.3,1.4,1.5,1.55,1.6,1.65,1.7,1.8,1.9,2.0,2.2",
                    help="comma-separated pair distances, Å")
    ap.add_argument("pairs", nargs="+", help="CONFIG_TYPE:A-B")
    args = ap.parse_args(argv)
    try:
        rs = [float(x) for x in args.r.split(",")]
    except ValueError:
        ap.error(f"--r {args.r}: not a comma-separated list of numbers")
    frames = L.read_extxyz(args.data)
    for spec in args.pairs:
        scan(frames, spec, args.labeller, rs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
