#!/usr/bin/python3 -s
"""Label extended XYZ frames with DFT energies, forces and virials from GPAW (through ASE).

Usage:
    /usr/bin/python3 -s scripts/label_gpaw.py [--settings S.toml] [options] IN.xyz OUT.xyz
    /usr/bin/python3 -s scripts/label_gpaw.py --check        # is GPAW usable here? (exit 0/1)

GPAW and its PAW datasets come from Debian (`apt-get install gpaw gpaw-data`, or `make gpaw`).
Run this script with Debian's Python and `-s`, so that no numpy from a user site or a virtual
environment shadows the one GPAW was built against.

Settings (TOML file given by --settings, e.g. the [labeller.settings] table of an `aceuq loop`
configuration; every key can also be given as an option, which wins):

  mode            "pw" (plane waves, default), "lcao" or "fd"
  ecut            plane-wave cutoff, eV (pw; default 300)
  h               grid spacing, Å (fd and lcao; default 0.2)
  basis           LCAO basis set (lcao; default "dzp")
  xc              exchange-correlation functional (default "PBE")
  kpoint_density  k-points per Å^-1 along each periodic reciprocal lattice vector: n_i =
                  max(1, ceil(kpoint_density * 2*pi * |b_i|)) with b_i the reciprocal vectors
                  (without the 2*pi), so cells of different sizes get the same sampling
                  (default 2.0, i.e. VASP's KSPACING = 0.5 Å^-1: the 2-atom cubic bcc Li cell,
                  a = 3.44 Å, 2*pi/a = 1.83 Å^-1, gets 4x4x4 and its 2x2x2 supercell of 16
                  atoms 2x2x2). Non-periodic directions get 1.
  kpts            explicit Monkhorst-Pack grid [n1, n2, n3] (overrides kpoint_density)
  gamma           Gamma-centred grid (default true)
  smearing        occupation smearing width, eV (default 0.1)
  smearing_kind   "fermi-dirac" (default) or "marzari-vanderbilt"
  spin            spin-polarised (default false); initial moments: the frame's own
                  (initial_magmoms) where it has them, else `magmom` per atom (default 1.0);
                  without spin a frame's moments are ignored
  charge          total charge (default 0)
  maxiter         largest number of SCF iterations (default 333)
  convergence     table passed to GPAW's convergence= (e.g. { energy = 1e-5, density = 1e-5 })
  timeout_minutes wall time per structure (default 30); a structure that takes longer fails
  energy_key      comment-line key of the energy written (default "energy")
  forces_key      per-atom column of the forces written (default "forces")

What is written: every input frame, in order, with its comment-line keys and per-atom columns
kept, plus
  <energy_key>=E     the free energy (Mermin, eV). With smearing the forces are the derivatives
                     of this energy, not of the zero-width extrapolation, so a fit to both stays
                     consistent; the extrapolation is kept as energy_zero_width=E0.
  <forces_key>:R:3   eV/Å
  virial="9 numbers" eV, -stress * volume (ASE sign: positive diagonal when compressed), only
                     for fully periodic frames in pw mode (GPAW has no stress in fd/lcao)
  dft_kpts="n1 n2 n3", dft_code="gpaw <version>"
The output file is written to a temporary file and renamed only when every frame is labelled.

Resuming and failures: each structure's result (or its failure) is stored in a cache folder
(--cache, default `label_cache` beside OUT.xyz) under a hash of its atoms, cell, pbc and the
settings that change the physics, as soon as it is done. A rerun (after a kill, a timeout or for
a single frame) reuses every stored result. A structure whose SCF does not converge within
`maxiter`, or that exceeds `timeout_minutes`, is recorded as failed: the script labels all the
others, names the failed frames and why on stderr, writes nothing to OUT.xyz and exits 1. `aceuq
loop` then labels each frame alone (answered from the cache) and keeps the failed ones aside in
the iteration's failed.xyz. --retry-failed computes recorded failures again; a timeout is
computed again by itself when `timeout_minutes` is now larger than the one it failed under. A
structure the code refuses (atoms on top of each other, no cell, an element without a dataset)
fails the same way but is not recorded: the cause may lie outside the structure.
Settings are checked for type before anything runs (exit 2): `spin = "no"` or `ecut = true`
are errors, not a spin-polarised run and 1 eV.

The same interface (read IN.xyz, write OUT.xyz with energy and forces, exit non-zero on failure)
fits any ASE calculator: see scripts/label_ase_template.py for VASP, Quantum ESPRESSO or CP2K.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import time

DEFAULTS = {
    "mode": "pw",
    "ecut": 300.0,
    "h": 0.2,
    "basis": "dzp",
    "xc": "PBE",
    "kpoint_density": 2.0,
    "kpts": None,
    "gamma": True,
    "smearing": 0.1,
    "smearing_kind": "fermi-dirac",
    "spin": False,
    "magmom": 1.0,
    "charge": 0.0,
    "maxiter": 333,
    "convergence": None,
    "timeout_minutes": 30.0,
    "energy_key": "energy",
    "forces_key": "forces",
}
# Keys that do not change the numbers (left out of the cache hash).
NOT_PHYSICS = {"timeout_minutes", "energy_key", "forces_key"}
OUTPUT_KEYS = {"energy", "free_energy", "stress", "virial", "energy_zero_width", "dft_kpts",
               "dft_code"}


class SettingsError(Exception):
    pass


class StructureTimeout(Exception):
    pass


def load_settings(path: str | None, overrides: dict) -> dict:
    s = dict(DEFAULTS)
    if path:
        import tomllib

        try:
            with open(path, "rb") as f:
                given = tomllib.load(f) if not path.endswith(".json") else json.load(f)
        except (OSError, ValueError) as e:
            raise SettingsError(f"cannot read settings {path}: {e}") from e
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise SettingsError(
                f"settings {path}: unknown key(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(DEFAULTS))
            )
        s.update(given)
    s.update({k: v for k, v in overrides.items() if v is not None})
    check_types(s)
    return s


def _number(v) -> bool:
    """A finite int or float; True/False are not numbers here (TOML has real booleans)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_types(s: dict) -> None:
    """Every setting of the right type and range: a string where a boolean belongs ('no' is
    true in Python), a boolean where a number belongs (true is 1) or a number given as a string
    would otherwise change the physics silently or fail deep inside GPAW."""
    def bad(key, want):
        raise SettingsError(f"{key} = {s[key]!r}: {want}")

    for key in ("mode", "smearing_kind"):
        if not isinstance(s[key], str):
            bad(key, "give a string")
    if s["mode"] not in ("pw", "lcao", "fd"):
        raise SettingsError(f"mode '{s['mode']}': use pw, lcao or fd")
    if s["smearing_kind"] not in ("fermi-dirac", "marzari-vanderbilt"):
        raise SettingsError(
            f"smearing_kind '{s['smearing_kind']}': use fermi-dirac or marzari-vanderbilt"
        )
    for key in ("xc", "basis"):
        # GPAW also takes tables here (a basis per element, an xc with parameters).
        if not (isinstance(s[key], str) and s[key] or isinstance(s[key], dict) and s[key]):
            bad(key, "give a non-empty string or table")
    for key in ("energy_key", "forces_key"):
        v = s[key]
        if not isinstance(v, str) or not v or any(c in v for c in " \t=\"'"):
            bad(key, "give a name without spaces, '=' or quotes")
    for key in ("gamma", "spin"):
        if not isinstance(s[key], bool):
            bad(key, "give true or false")
    for key in ("ecut", "h", "kpoint_density", "timeout_minutes"):
        if not (_number(s[key]) and s[key] > 0):
            bad(key, "must be a positive number")
    if not (_number(s["smearing"]) and s["smearing"] >= 0):
        bad("smearing", "must be a number >= 0 (eV)")
    for key in ("magmom", "charge"):
        if not _number(s[key]):
            bad(key, "must be a number")
    if not isinstance(s["maxiter"], int) or isinstance(s["maxiter"], bool) or s["maxiter"] < 1:
        bad("maxiter", "must be a positive integer")
    k = s["kpts"]
    if k is not None and not (
        isinstance(k, (list, tuple)) and len(k) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in k)
    ):
        bad("kpts", "give three positive integers, e.g. [4, 4, 4]")
    c = s["convergence"]
    if c is not None and not (isinstance(c, dict) and all(isinstance(x, str) for x in c)):
        bad("convergence", "give a table of GPAW's criteria, e.g. { energy = 1e-5, density = 1e-5 }")


def kpoint_grid(atoms, s: dict) -> list[int]:
    if s["kpts"] is not None:
        return [int(n) if p else 1 for n, p in zip(s["kpts"], atoms.pbc)]
    rec = atoms.cell.reciprocal()  # rows b_i with a_i . b_j = delta_ij (no 2*pi)
    out = []
    for i in range(3):
        if not atoms.pbc[i]:
            out.append(1)
            continue
        length = 2.0 * math.pi * float((rec[i] ** 2).sum()) ** 0.5
        out.append(max(1, math.ceil(s["kpoint_density"] * length - 1e-9)))
    return out


def structure_key(atoms, s: dict, code: str = "gpaw") -> str:
    import numpy as np

    physics = {k: v for k, v in s.items() if k not in NOT_PHYSICS}
    physics["code"] = code
    doc = {
        "numbers": [int(z) for z in atoms.numbers],
        "positions": [[round(float(x), 6) for x in p] for p in atoms.positions],
        "cell": [[round(float(x), 6) for x in v] for v in atoms.cell],
        "pbc": [bool(b) for b in atoms.pbc],
        "settings": physics,
    }
    if atoms.has("initial_magmoms") and (s.get("spin", False) or code != "gpaw"):
        # The frame's own moments (else `magmom`, in the settings, is what GPAW uses; another
        # code's calculator may read them whatever the settings say).
        doc["magmoms"] = np.round(atoms.get_initial_magnetic_moments(), 6).tolist()
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def initial_moments(atoms, s: dict):
    """The initial magnetic moments of a spin-polarised calculation: the frame's own
    (`initial_magmoms`) where it has any, else `magmom` on every atom; None without spin (a
    spin-paired calculation ignores the frame's moments)."""
    if not s.get("spin", False):
        return None
    if atoms.has("initial_magmoms"):
        return atoms.get_initial_magnetic_moments()  # collinear or not, as given
    return [float(s.get("magmom", 1.0))] * len(atoms)


def make_calculator(atoms, s: dict, kpts: list[int], txt: str):
    from gpaw import GPAW, PW, FermiDirac
    from gpaw.occupations import MarzariVanderbilt

    width = float(s["smearing"])
    if s["smearing_kind"] == "fermi-dirac":
        occ = FermiDirac(width)
    else:
        occ = MarzariVanderbilt(width)
    kw = dict(
        xc=s["xc"],
        kpts={"size": kpts, "gamma": bool(s["gamma"])},
        occupations=occ,
        spinpol=bool(s["spin"]),
        charge=float(s["charge"]),
        maxiter=int(s["maxiter"]),
        txt=txt,
    )
    if s["convergence"]:
        kw["convergence"] = dict(s["convergence"])
    if s["mode"] == "pw":
        kw["mode"] = PW(float(s["ecut"]))
    elif s["mode"] == "lcao":
        kw["mode"] = "lcao"
        kw["basis"] = s["basis"]
        kw["h"] = float(s["h"])
    else:
        kw["mode"] = "fd"
        kw["h"] = float(s["h"])
    atoms.set_initial_magnetic_moments(initial_moments(atoms, s))
    return GPAW(**kw)


def _alarm(signum, frame):
    raise StructureTimeout()


def compute(atoms, s: dict, log_path: str, make_calc=None, code: str | None = None) -> dict:
    """Label one structure; returns the cache record (ok or failed).

    `make_calc(atoms, settings, kpts, log_path)` builds the ASE calculator (GPAW by default);
    scripts/label_ase_template.py passes its own."""
    from ase.calculators.calculator import CalculationFailed

    failures: tuple = (CalculationFailed,)
    if make_calc is None:
        import gpaw
        from gpaw import KohnShamConvergenceError

        make_calc = make_calculator
        code = f"gpaw {gpaw.__version__}"
        failures = (KohnShamConvergenceError, CalculationFailed)
    kpts = kpoint_grid(atoms, s)
    work = atoms.copy()
    t0 = time.time()
    seconds = max(1, int(round(60.0 * float(s["timeout_minutes"]))))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        work.calc = make_calc(work, s, kpts, log_path)
        free = work.get_potential_energy(force_consistent=True)
        zero = work.get_potential_energy()
        forces = work.get_forces()
        virial = None
        if s.get("mode", "pw") == "pw" and all(work.pbc):
            stress = work.get_stress(voigt=False)
            virial = (-stress * work.get_volume()).reshape(-1).tolist()
        rec = {
            "ok": True,
            "free_energy": float(free),
            "energy_zero_width": float(zero),
            "forces": forces.tolist(),
            "virial": virial,
            "kpts": kpts,
            "code": code or "unknown",
        }
    except StructureTimeout:
        # Kept with its limit: a rerun with a larger timeout_minutes computes it again.
        rec = {"ok": False, "timeout_minutes": float(s["timeout_minutes"]),
               "error": f"timeout after {s['timeout_minutes']} min (raise timeout_minutes: "
               "a rerun with a larger one computes it again; or use a cheaper setting)"}
    except failures as e:
        rec = {"ok": False, "error": f"SCF did not converge in {s.get('maxiter')} iterations "
               f"({type(e).__name__}: {e}; see {log_path}; raise maxiter, smearing, or change "
               "the mixer)"}
    except (MemoryError, NotImplementedError):
        raise  # the machine or the script, not the structure
    except Exception as e:  # noqa: BLE001 - the code refused this structure (or settings)
        # This frame fails and the others are still labelled; not cached, since the cause may
        # lie outside the structure and the settings (a missing dataset, an environment).
        rec = {"ok": False, "cache": False,
               "error": f"the calculation raised {type(e).__name__}: {e} (see {log_path}; atoms "
               "too close, no cell, an element without a PAW dataset, or a setting the code "
               "does not know)"}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    rec["seconds"] = round(time.time() - t0, 3)
    rec["kpts"] = kpts
    return rec


def timed_out_under(rec: dict) -> float:
    """The timeout_minutes a failed record timed out under (records written before the limit
    was stored say it in their message); inf for other failures."""
    if "timeout_minutes" in rec:
        return float(rec["timeout_minutes"])
    m = re.match(r"timeout after ([0-9.eE+-]+) min", rec.get("error", ""))
    try:
        return float(m.group(1)) if m else math.inf
    except ValueError:
        return math.inf


def write_json_atomic(path: str, doc: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def label_file(inp: str, out: str, s: dict, cache: str, retry_failed: bool,
               make_calc=None, code: str | None = None) -> int:
    import numpy as np
    from ase.io import read, write

    try:
        frames = read(inp, index=":", format="extxyz")
    except Exception as e:  # ASE raises many kinds for a malformed file
        print(f"label_gpaw: cannot read {inp}: {e}", file=sys.stderr)
        return 2
    os.makedirs(cache, exist_ok=True)
    failed = []
    labelled = []
    n = len(frames)
    t_all = time.time()
    for i, atoms in enumerate(frames):
        atoms.calc = None
        key = structure_key(atoms, s, code or "gpaw")
        rec_path = os.path.join(cache, key + ".json")
        rec = None
        if os.path.exists(rec_path):
            with open(rec_path) as f:
                rec = json.load(f)
            if not rec.get("ok") and (
                retry_failed or timed_out_under(rec) < float(s["timeout_minutes"])
            ):
                rec = None
        source = "cached"
        if rec is None:
            rec = compute(atoms, s, os.path.join(cache, key + ".log"), make_calc, code)
            if rec.get("cache", True):
                write_json_atomic(rec_path, rec)
            source = "computed"
        kp = "x".join(str(k) for k in rec["kpts"])
        if rec["ok"]:
            print(
                f"frame {i + 1}/{n}: {len(atoms)} atoms, k {kp}, E {rec['free_energy']:.6f} eV, "
                f"{rec['seconds']:.1f} s ({source})",
                flush=True,
            )
        else:
            print(f"frame {i + 1}/{n}: FAILED ({source}): {rec['error']}", flush=True)
            failed.append((i, rec["error"]))
        labelled.append((atoms, rec))
    print(f"label_gpaw: {n - len(failed)}/{n} labelled in {time.time() - t_all:.1f} s; "
          f"cache {cache}", flush=True)
    if failed:
        for i, why in failed:
            print(f"label_gpaw: frame {i} (0-based) of {inp} failed: {why}", file=sys.stderr)
        print(f"label_gpaw: {out} not written ({len(failed)} of {n} frames failed)",
              file=sys.stderr)
        return 1
    ek, fk = s["energy_key"], s["forces_key"]
    for atoms, rec in labelled:
        for k in list(atoms.info):
            if k in OUTPUT_KEYS or k == ek:
                del atoms.info[k]
        for k in ("forces", fk):
            if k in atoms.arrays:
                del atoms.arrays[k]
        atoms.info[ek] = rec["free_energy"]
        atoms.info["energy_zero_width"] = rec["energy_zero_width"]
        if rec["virial"] is not None:
            atoms.info["virial"] = np.array(rec["virial"]).reshape(3, 3)
        atoms.info["dft_kpts"] = np.array(rec["kpts"], dtype=int)
        atoms.info["dft_code"] = rec["code"].replace(" ", "_")
        atoms.arrays[fk] = np.array(rec["forces"])
    d = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".xyz")
    os.close(fd)
    write(tmp, [a for a, _ in labelled], format="extxyz")
    os.replace(tmp, out)
    return 0


def check() -> int:
    try:
        import ase
        import gpaw
        from gpaw import setup_paths  # noqa: F401
        from gpaw.setup import create_setup

        create_setup("Li", "PBE")
    except Exception as e:  # noqa: BLE001 - any failure means "not usable"
        print(f"GPAW is not usable with {sys.executable}: {type(e).__name__}: {e}")
        print("install it with: apt-get install gpaw gpaw-data (or `make gpaw`)")
        return 1
    print(f"GPAW {gpaw.__version__}, ASE {ase.__version__}, PAW datasets found ({sys.executable})")
    return 0


def _cli_bool(x: str) -> bool:
    v = x.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"'{x}' is no boolean: give true or false")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        description="Label extended XYZ frames with GPAW DFT (energy, forces, virial).",
        epilog="See the module docstring (head of this file) for every setting.",
    )
    p.add_argument("input", nargs="?", help="extended XYZ to label")
    p.add_argument("output", nargs="?", help="labelled extended XYZ to write")
    p.add_argument("--settings", help="TOML (or .json) file of settings")
    p.add_argument("--cache", help="folder of per-structure results (default: label_cache "
                   "beside OUTPUT)")
    p.add_argument("--retry-failed", action="store_true", help="compute recorded failures again")
    p.add_argument("--check", action="store_true", help="only check that GPAW is usable")
    for key, val in DEFAULTS.items():
        if key in ("kpts", "convergence"):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(val, bool):
            p.add_argument(flag, dest=key, type=_cli_bool, help=f"true/false (default {val})")
        else:
            p.add_argument(flag, dest=key, type=type(val), help=f"(default {val})")
    p.add_argument("--kpts", type=int, nargs=3, help="explicit k-point grid")
    a = p.parse_args(argv)
    if a.check:
        return check()
    if not a.input or not a.output:
        p.error("give INPUT and OUTPUT (or --check)")
    overrides = {k: getattr(a, k) for k in DEFAULTS if hasattr(a, k)}
    try:
        s = load_settings(a.settings, overrides)
    except SettingsError as e:
        print(f"label_gpaw: {e}", file=sys.stderr)
        return 2
    cache = a.cache or os.path.join(os.path.dirname(os.path.abspath(a.output)), "label_cache")
    return label_file(a.input, a.output, s, cache, a.retry_failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
