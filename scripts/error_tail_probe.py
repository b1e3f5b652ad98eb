#!/usr/bin/env python3
"""Probe: would a heavier tail in the error model given u make the frame rule's probabilities honest?

The upper cutoff and the frame rule model an atom's force error as e | u ~ Maxwell(s(u)), and a
frame's probability of an error above e_max as 1 - prod_i (1 - P(e_i > e_max | u_i)). This script
takes a calibrated model, standardizes the calibration atoms' errors by their fitted scale,
z = e / s(u), and compares four models of z on labelled frames:

  maxwell    z ~ Maxwell(1): what `aceuq calibrate` stores;
  tail       Maxwell(1) below the TAIL_Q quantile of z, a generalized Pareto tail above it
             (per species, fitted to every calibration atom);
  tail_high  the same tail fitted to, and used for, the atoms whose u is above the U_Q quantile
             of the calibration atoms' u (Maxwell below);
  cluster_scale  Maxwell(1) with the scale s(u) multiplied per species and gamma_local cluster
             by the Maxwell scale of the calibration atoms' z in that cluster (models with
             gamma_local only): an error scale that depends on the environment as well as on u.

For each, per method and check set: frames halted at p_halt 0.5 among those whose true largest
force error exceeds e_max (1 eV/A), false halts (largest error below e_max / 3), the unstable
frames observed against the sum of the frame probabilities (expected), and the frames' log loss.
It does not change any model. Needs numpy and scipy (the project's venv has both) and the aceuq
binary.

  scripts/error_tail_probe.py --model cal.aceuq --species W,Be \\
      --calib tests/data/wbe/valid.xyz tests/data/wbe/calib.xyz \\
      --check test=tests/data/wbe/test.xyz starts7=tests/data/wbe/starts_seed7.xyz

A check set may list several files joined by '+'; 'FILE:odd' keeps the odd frames only (the
frames cutoff_bench.sh checks of an unstable set whose even frames were given to --high).
"""
import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from scipy import stats
from scipy.special import erfcx, logsumexp

METHODS = ["gamma", "gamma_local", "ensemble", "distance", "gp", "contact"]
COLUMN = {"gamma": "gamma", "gamma_local": "gamma_local", "ensemble": "sigma_ensemble",
          "distance": "sigma_distance", "gp": "sigma_gp", "contact": "contact"}


def error_scales(aceuq, model, species):
    """s(u) = a + b u^k per (method, species) from `aceuq info` (None: no fitted relation)."""
    text = subprocess.run([aceuq, "info", "--model", model], check=True, capture_output=True,
                          text=True).stdout
    out, method = {}, None
    for line in text.splitlines():
        # Each method's entries follow a line "<method>:" (`aceuq info`'s calibration part).
        h = re.match(r"^(\w+):$", line)
        if h:
            method = h.group(1) if h.group(1) in METHODS else None
            continue
        m = re.match(r"\s*(\w+): upper rule (\w+)", line)
        if not m or method is None or m.group(1) not in species:
            continue
        g = re.search(r"s\(u\) = (\S+) \+ (\S+) u\^(\S+) eV", line)
        out[(method, m.group(1))] = tuple(map(float, g.groups())) if g else None
    return out


def per_atom(aceuq, model, path, tmp, cache):
    """Rows of `aceuq eval --per-atom` (cached per file)."""
    if path not in cache:
        csv_path = os.path.join(tmp, f"{len(cache)}.csv")
        subprocess.run([aceuq, "eval", "--model", model, "--data", path, "--per-atom", csv_path],
                       check=True, capture_output=True)
        cache[path] = list(csv.DictReader(open(csv_path)))
    return cache[path]


def columns(rows, method):
    sp = np.array([r["species"] for r in rows])
    e = np.array([float(r["force_error"]) for r in rows])
    u = np.array([float(r[COLUMN[method]]) for r in rows])
    st = np.array([int(r["structure"]) for r in rows])
    return sp, e, u, st


def scale(par, method, sp, u):
    s = np.full(len(u), np.nan)
    for x in set(sp):
        a, b, k = par[(method, x)]
        w = sp == x
        s[w] = a + b * np.maximum(u[w], 0.0) ** k
    return s


def fit_tail(z, q):
    t = np.quantile(z, q)
    y = z[z > t] - t
    xi, _, sigma = stats.genpareto.fit(y, floc=0.0)
    return t, len(y) / len(z), xi, sigma


def maxwell_log_sf(z):
    """ln P(Z > z) for Maxwell(1), without underflow: P = exp(-z^2/2) (erfcx(z/sqrt2) +
    sqrt(2/pi) z)."""
    z = np.asarray(z, dtype=float)
    return -0.5 * z * z + np.log(erfcx(z / np.sqrt(2.0)) + np.sqrt(2.0 / np.pi) * z)


def log_sf(z, tail):
    """ln P(Z > z): Maxwell(1), or Maxwell below the threshold and the GPD tail above it."""
    if tail is None:
        return maxwell_log_sf(z)
    t, pt, xi, sigma = tail
    body = np.log1p(-(1.0 - pt) * stats.maxwell.cdf(np.minimum(z, t)) / stats.maxwell.cdf(t))
    return np.where(z > t, np.log(pt) + stats.genpareto.logsf(np.maximum(z - t, 0), xi,
                                                             scale=sigma), body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aceuq", default=os.path.join(os.path.dirname(__file__), "..", "target",
                                                     "release", "aceuq"))
    ap.add_argument("--model", required=True, help="a calibrated model (aceuq calibrate --out)")
    ap.add_argument("--species", required=True, help="comma-separated, as in the model")
    ap.add_argument("--calib", nargs="+", required=True, help="the calibration's --valid files")
    ap.add_argument("--check", nargs="+", required=True, help="NAME=FILE[:odd][+FILE...]")
    ap.add_argument("--tail-q", type=float, default=0.9, help="quantile of z the tail starts at")
    ap.add_argument("--u-q", type=float, default=0.8, help="tail_high: quantile of u above which")
    ap.add_argument("--e-max", type=float, default=1.0)
    ap.add_argument("--p-halt", type=float, default=0.5)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    species = a.species.split(",")
    par = error_scales(a.aceuq, a.model, species)
    cache = {}
    tmp = tempfile.mkdtemp()
    checks = []
    for c in a.check:
        name, files = c.split("=", 1)
        parts = []
        for f in files.split("+"):
            odd = f.endswith(":odd")
            parts.append((f[:-4] if odd else f, odd))
        checks.append((name, parts))
    print(f"model {a.model}; e_max {a.e_max} eV/A, p_halt {a.p_halt}; tail above the {a.tail_q} "
          f"quantile of z = e / s(u); tail_high: atoms above the {a.u_q} quantile of u\n")
    # How far the calibration atoms' z stray from Maxwell(1) beyond its 99 % and 99.9 % quantiles.
    q99, q999 = stats.maxwell.isf(0.01), stats.maxwell.isf(0.001)
    print(f"Calibration atoms with z above Maxwell(1)'s 0.99 quantile ({q99:.2f}; 1 % expected) "
          f"and its 0.999 quantile ({q999:.2f}; 0.1 % expected):\n")
    print("| method | species | atoms | z > 0.99 quantile | z > 0.999 quantile | largest z |")
    print("|---|---|---|---|---|---|")
    for method in METHODS:
        for x in species:
            if par.get((method, x)) is None:
                continue
            z = []
            for f in a.calib:
                sp, e, u, _ = columns(per_atom(a.aceuq, a.model, f, tmp, cache), method)
                w = sp == x
                z.append(e[w] / scale(par, method, sp[w], u[w]))
            z = np.concatenate(z)
            print(f"| {method} | {x} | {len(z)} | {100 * np.mean(z > q99):.2f} % | "
                  f"{100 * np.mean(z > q999):.2f} % | {z.max():.1f} |")
    print()
    print("| method | model | z tail per species (t, xi) | check | halted / unstable | false "
          "halts | observed / expected | log loss |")
    print("|---|---|---|---|---|---|---|---|")
    for method in METHODS:
        if any(par.get((method, x)) is None for x in species):
            print(f"| {method} | no fitted s(u) for every species | | | | | | |")
            continue
        tails = {"maxwell": {}, "tail": {}, "tail_high": {}}
        u_lo, mult = {}, {}
        clustered = "cluster" in per_atom(a.aceuq, a.model, a.calib[0], tmp, cache)[0]
        for x in species:
            z, uu, cl = [], [], []
            for f in a.calib:
                rows = per_atom(a.aceuq, a.model, f, tmp, cache)
                sp, e, u, _ = columns(rows, method)
                w = sp == x
                z.append(e[w] / scale(par, method, sp[w], u[w]))
                uu.append(u[w])
                if clustered:
                    cl.append(np.array([int(r["cluster"]) for r in rows])[w])
            z, uu = np.concatenate(z), np.concatenate(uu)
            tails["maxwell"][x] = None
            tails["tail"][x] = fit_tail(z, a.tail_q)
            u_lo[x] = np.quantile(uu, a.u_q)
            tails["tail_high"][x] = fit_tail(z[uu >= u_lo[x]], a.tail_q)
            if clustered:
                # cluster_scale: Maxwell with s(u) times the Maxwell scale of z over the
                # calibration atoms of the atom's gamma_local cluster (sqrt(mean z^2 / 3)).
                cl = np.concatenate(cl)
                for c in np.unique(cl):
                    mult[(x, c)] = np.sqrt(np.mean(z[cl == c] ** 2) / 3.0)
        if clustered:
            tails["cluster_scale"] = {x: None for x in species}
        for variant, tail in tails.items():
            shown = ", ".join(f"{x} {t[0]:.2f}, {t[2]:.2f}" for x, t in tail.items()
                              if t is not None) or "-"
            if variant == "cluster_scale":
                shown = "multipliers " + ", ".join(
                    f"{x} {min(v for (y, _), v in mult.items() if y == x):.2f}-"
                    f"{max(v for (y, _), v in mult.items() if y == x):.2f}" for x in species)
            for name, parts in checks:
                lc, ef = [], []
                for path, odd in parts:
                    rows = per_atom(a.aceuq, a.model, path, tmp, cache)
                    sp, e, u, st = columns(rows, method)
                    if odd:
                        w = st % 2 == 1
                        sp, e, u, st = sp[w], e[w], u[w], st[w]
                    s = scale(par, method, sp, u)
                    if variant == "cluster_scale":
                        cl = np.array([int(r["cluster"]) for r in rows])
                        if odd:
                            cl = cl[np.array([int(r["structure"]) for r in rows]) % 2 == 1]
                        s = s * np.array([mult.get((x, c), 1.0) for x, c in zip(sp, cl)])
                    z = a.e_max / s
                    lp = np.zeros(len(z))
                    for x in species:
                        w = sp == x
                        lp[w] = log_sf(z[w], tail[x])
                        if variant == "tail_high":
                            lo = w & (u < u_lo[x])
                            lp[lo] = log_sf(z[lo], None)
                    for f in np.unique(st):
                        w = st == f
                        # ln P(no atom errs above e_max) and ln P(some atom does), the latter
                        # from the atoms' log-probabilities where the frame's is below 1e-300
                        # (no clipping: a frame called calm at 1e-20 that errs scores 46).
                        with np.errstate(divide="ignore"):
                            c = np.sum(np.log1p(-np.exp(lp[w])))
                        q = -np.expm1(c)
                        lc.append((c, np.log(q) if q > 1e-300 else logsumexp(lp[w])))
                        ef.append(e[w].max())
                ef = np.array(ef)
                calm_log = np.array([c for c, _ in lc])
                some_log = np.array([s for _, s in lc])
                pf = -np.expm1(calm_log)
                unstable, calm, halt = ef > a.e_max, ef < a.e_max / 3, pf >= a.p_halt
                loss = -np.sum(np.where(unstable, some_log, calm_log))
                print(f"| {method} | {variant} | {shown} | {name} | {np.sum(halt & unstable)} / "
                      f"{np.sum(unstable)} | {np.sum(halt & calm)} | {np.sum(unstable)} / "
                      f"{pf.sum():.1f} | {loss:.1f} |")
                shown = ""
    return 0


if __name__ == "__main__":
    sys.exit(main())
