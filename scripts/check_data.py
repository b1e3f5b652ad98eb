#!/usr/bin/env python3
"""Strictly re-read labelled extended XYZ files and check that they are sane.

Usage: python3 scripts/check_data.py [FILE_OR_DIR ...]   (default: tests/data, recursively,
without the reader fixtures in tests/data/extxyz and the ML-PACE outputs in tests/data/pace)

Independent of label.py on purpose (a second reader catches writer bugs). For every frame:
atom count and column counts, Lattice (9 numbers, non-singular when periodic), pbc, species known
for the folder (li, li_dft: Li; almg: Al, Mg; inp: In, P; wbe: W, Be), energy, forces:R:3, virial (9 numbers, symmetric) present
exactly for fully periodic frames, config_type present, |sum of forces| small (translation
invariance holds for periodic, slab and cluster frames alike; the bound allows for the 1e-6
rounding of each component), energy per atom inside a sane window for the system, max |F| below
20 eV/Å, and time_ps non-decreasing within one `run` (and `start`, for `gen_data.py --starts`). Frames that carry a `d_min` key (the
smallest interatomic distance; li/ and almg/unstable.xyz, inp/, wbe/) get it recomputed here (periodic
images included) and must agree to 1e-3 Å and lie at or above the system's floor (li 1.6 Å, almg
1.8 Å, inp 1.9 Å, wbe 1.5 Å).
Prints per-file, per-config_type ranges.
Exit status 1 on the first failing file (all files are still reported).
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Sane windows of energy per atom (eV) for the two labellers, wide enough for liquids, surfaces
# and clusters, narrow enough to catch unit or sign errors (SNAP Li: about -1.9 for BCC,
# MEAM Al -3.36, Mg -1.51 cohesive energies).
SYSTEMS = {
    "li": dict(species={"Li"}, e_range=(-2.2, -0.8), d_floor=1.6),
    "almg": dict(species={"Al", "Mg"}, e_range=(-3.6, -1.2), d_floor=1.8),
    # SNAP+ZBL In-P (zincblende about -3.48 eV/atom) and W-Be (bcc W -8.85, hcp Be about -3.3).
    "inp": dict(species={"In", "P"}, e_range=(-3.9, -2.5), d_floor=1.9),
    "wbe": dict(species={"W", "Be"}, e_range=(-9.5, -2.5), d_floor=1.5),
    # GPAW (PBE) Li: about -1.88 eV/atom for BCC. DFT forces on a real-space grid do not sum to
    # zero exactly (the grid breaks translation invariance): up to 6e-4 eV/Å seen, 2e-3 allowed.
    "li_dft": dict(species={"Li"}, e_range=(-2.2, -0.8), d_floor=1.6, fsum_tol=2e-3),
}
FMAX = 20.0
# Frames with a `d_min` key were kept only if no two atoms are closer than the system's d_floor
# (Å; see `gen_data.py --unstable`); this one applies when the system is unknown.
D_FLOOR = 1.6


class Bad(Exception):
    pass


def parse_comment(line: str) -> dict[str, str]:
    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split = True
    lex.wordchars += "=:.-+"
    out = {}
    for tok in lex:
        if "=" not in tok:
            out[tok] = "T"
            continue
        k, v = tok.split("=", 1)
        if k in out:
            raise Bad(f"key {k} twice")
        out[k] = v
    return out


def wrap(pos: list[list[float]], cell: list[list[float]] | None, pbc: list[bool]) -> list[list[float]]:
    """Positions mapped into the cell along its periodic directions (fractional part in [0, 1))."""
    if cell is None or not any(pbc):
        return pos
    a, b, c = cell

    def cross(u, v):
        return [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]

    vol = sum(x * y for x, y in zip(a, cross(b, c)))
    rec = [cross(b, c), cross(c, a), cross(a, b)]
    out = []
    for p in pos:
        f = [sum(x * y for x, y in zip(r, p)) / vol for r in rec]
        f = [q - math.floor(q) if pbc[d] else q for d, q in enumerate(f)]
        out.append([f[0] * a[d] + f[1] * b[d] + f[2] * c[d] for d in range(3)])
    return out


def min_distance(pos: list[list[float]], cell: list[list[float]] | None, pbc: list[bool]) -> float:
    """Smallest interatomic distance (Å): every pair, every image within one cell in each periodic
    direction (brute force; exact whenever the result is below half the cell's smallest width)."""
    shifts = [(0.0, 0.0, 0.0)]
    if cell is not None:
        rng = [(-1, 0, 1) if p else (0,) for p in pbc]
        shifts = [tuple(i * cell[0][d] + j * cell[1][d] + k * cell[2][d] for d in range(3))
                  for i in rng[0] for j in rng[1] for k in rng[2]]
    best = math.inf
    n = len(pos)
    for i in range(n):
        xi, yi, zi = pos[i]
        for j in range(n):
            xj, yj, zj = pos[j]
            for sx, sy, sz in shifts:
                if i == j and sx == sy == sz == 0.0:
                    continue
                if i > j and sx == sy == sz == 0.0:
                    continue
                dx, dy, dz = xj + sx - xi, yj + sy - yi, zj + sz - zi
                r2 = dx * dx + dy * dy + dz * dz
                if r2 < best:
                    best = r2
    return math.sqrt(best)


def check_file(path: str, system: str | None) -> tuple[bool, dict]:
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    groups: dict[str, dict] = {}
    last_time: dict[str, float] = {}
    nframes = 0
    while i < len(lines):
        where = f"{os.path.relpath(path, ROOT)}, frame {nframes} (line {i + 1})"
        try:
            if not re.fullmatch(r"\d+", lines[i]):
                raise Bad(f"atom count line is '{lines[i][:30]}'")
            nat = int(lines[i])
            if nat == 0 or i + 2 + nat > len(lines):
                raise Bad(f"{nat} atoms announced, file too short or empty frame")
            info = parse_comment(lines[i + 1])
            if info.get("Properties") != "species:S:1:pos:R:3:forces:R:3":
                raise Bad(f"Properties={info.get('Properties')}")
            pbc = info.get("pbc", "").split()
            if len(pbc) != 3 or any(p not in ("T", "F") for p in pbc):
                raise Bad(f"pbc='{info.get('pbc')}'")
            pbc = [p == "T" for p in pbc]
            cell = None
            if "Lattice" in info:
                v = [float(x) for x in info["Lattice"].split()]
                if len(v) != 9:
                    raise Bad("Lattice needs 9 numbers")
                cell = [v[0:3], v[3:6], v[6:9]]
                a, b, c = cell
                vol = (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
                       + a[2] * (b[0] * c[1] - b[1] * c[0]))
                if abs(vol) < 1.0:
                    raise Bad(f"cell volume {vol}")
            elif any(pbc):
                raise Bad("periodic without Lattice")
            if "config_type" not in info:
                raise Bad("no config_type")
            e = float(info["energy"])
            if "virial" in info:
                w = [float(x) for x in info["virial"].split()]
                if len(w) != 9 or max(abs(w[1] - w[3]), abs(w[2] - w[6]), abs(w[5] - w[7])) > 2e-6:
                    raise Bad("virial not 9 numbers or not symmetric")
                if not all(pbc):
                    raise Bad("virial given for a frame that is not fully periodic")
            elif all(pbc):
                raise Bad("fully periodic frame without virial")
            fsum = [0.0, 0.0, 0.0]
            fmax = 0.0
            fmags = []
            species = set()
            xyz = []
            for k in range(nat):
                t = lines[i + 2 + k].split()
                if len(t) != 7:
                    raise Bad(f"atom line {i + 3 + k} has {len(t)} columns, expected 7")
                species.add(t[0])
                x = [float(s) for s in t[1:4]]
                xyz.append(x)
                f = [float(s) for s in t[4:7]]
                if not all(math.isfinite(q) for q in x + f):
                    raise Bad(f"non-finite number on line {i + 3 + k}")
                for d in range(3):
                    fsum[d] += f[d]
                m = math.sqrt(sum(q * q for q in f))
                fmags.append(m)
                fmax = max(fmax, m)
            if system:
                unknown = species - SYSTEMS[system]["species"]
                if unknown:
                    raise Bad(f"species {sorted(unknown)} not expected in {system}")
            # Each rounded component is off by at most 5e-7: allow 10 sigma of a random sum.
            tol = max(1e-5, 10 * 5e-7 * math.sqrt(nat))
            if system:
                tol = max(tol, SYSTEMS[system].get("fsum_tol", 0.0))
            if max(abs(s) for s in fsum) > tol:
                raise Bad(f"forces sum to {fsum} (tolerance {tol:.1e})")
            epa = e / nat
            if system:
                lo, hi = SYSTEMS[system]["e_range"]
                if not lo <= epa <= hi:
                    raise Bad(f"energy per atom {epa:.4f} eV outside [{lo}, {hi}]")
            if fmax > FMAX:
                raise Bad(f"max |F| {fmax:.2f} eV/Å above {FMAX}")
            if "d_min" in info:
                # Positions are wrapped into the cell here, so the brute-force image search below
                # only has to look one cell away.
                dm = min_distance(wrap(xyz, cell, pbc), cell, pbc)
                if abs(dm - float(info["d_min"])) > 1e-3:
                    raise Bad(f"d_min={info['d_min']} but the smallest distance is {dm:.4f} Å")
                floor = SYSTEMS[system]["d_floor"] if system else D_FLOOR
                if dm < floor:
                    raise Bad(f"two atoms {dm:.4f} Å apart, below the floor {floor} Å")
            if "time_ps" in info and "run" in info:
                # Frames of one MD run (the `run` key, per config_type; with `gen_data.py --starts`
                # also per `start`, absent for the first) are written in time order.
                t = float(info["time_ps"])
                key = (info["config_type"], info["run"], info.get("start", "0"))
                if t < last_time.get(key, -1.0):
                    raise Bad(f"time_ps {t} goes backwards in run {info['run']}")
                last_time[key] = t
            g = groups.setdefault(info["config_type"], dict(frames=0, atoms=set(), epa=[], fmean=[],
                                                            fmax=0.0, virial=0, pbc=set()))
            g["frames"] += 1
            g["atoms"].add(nat)
            g["epa"].append(epa)
            g["fmean"].extend(fmags)
            g["fmax"] = max(g["fmax"], fmax)
            g["virial"] += "virial" in info
            g["pbc"].add(info["pbc"])
        except (Bad, ValueError, KeyError) as exc:
            print(f"FAIL {where}: {exc}")
            return False, groups
        nframes += 1
        i += 2 + nat
    if nframes == 0:
        print(f"FAIL {path}: no frames")
        return False, groups
    return True, groups


def main(argv: list[str]) -> int:
    targets = argv or [os.path.join(ROOT, "tests", "data")]
    files = []
    for t in targets:
        if os.path.isdir(t):
            for dp, dns, fns in os.walk(t):
                # Reader fixtures (an ASE-written file with odd columns) and ML-PACE outputs for
                # comparisons (tests/data/pace), not labelled data.
                dns[:] = [d for d in dns if d not in ("extxyz", "pace")]
                files += [os.path.join(dp, f) for f in fns if f.endswith(".xyz")]
        else:
            files.append(t)
    ok = True
    for path in sorted(files):
        parts = os.path.abspath(path).split(os.sep)
        system = next((p for p in reversed(parts[:-1]) if p in SYSTEMS), None)
        if system is None:
            system = "li" if "li" in os.path.basename(path) else None
        good, groups = check_file(path, system)
        ok &= good
        size = os.path.getsize(path)
        print(f"{'ok  ' if good else 'FAIL'} {os.path.relpath(path, ROOT)} ({size / 1024:.0f} KiB, "
              f"system {system})")
        for k, g in groups.items():
            fm = g["fmean"]
            print(f"     {k:26s} {g['frames']:4d} frames, atoms {min(g['atoms'])}-{max(g['atoms'])}, "
                  f"E/atom [{min(g['epa']):.4f}, {max(g['epa']):.4f}] eV, |F| mean {sum(fm) / len(fm):.3f} "
                  f"max {g['fmax']:.3f} eV/Å, virial {g['virial']}/{g['frames']}, pbc {sorted(g['pbc'])}")
    print("all files ok" if ok else "SOME FILES FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
