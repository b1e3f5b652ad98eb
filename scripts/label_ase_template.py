#!/usr/bin/env python3
"""Template: label extended XYZ frames with any ASE calculator (VASP, Quantum ESPRESSO, CP2K, ...).

Copy this file, fill in `make_calculator` for your code, and point the loop at it:

    [labeller]
    command = "python3 {dir}/label_mycode.py --settings {settings} {input} {output}"
    timeout_minutes = 600
    settings = { kpoint_density = 2.0, timeout_minutes = 60, ecut = 500 }

It reuses the machinery of label_gpaw.py (same folder): k-point grids from `kpoint_density`
(points per Å^-1, i.e. VASP's KSPACING = 1/kpoint_density), one structure at a time with a
per-structure cache for resuming (`label_cache` beside the output), a per-structure
`timeout_minutes`, a failure (ASE's CalculationFailed, e.g. an SCF that did not converge, or a
timeout) recorded and reported with exit status 1 and no output file, and the output format
(free energy under `energy_key`, forces under `forces_key`, virial for fully periodic cells).
Everything in the settings table is passed to `make_calculator`; the keys used by the machinery
are kpoint_density (default 2.0), kpts, timeout_minutes (default 30), energy_key and forces_key.

The energy written is `get_potential_energy(force_consistent=True)`: the free energy whose
derivatives are the forces. Make sure your code reports it (VASP: `free  energy TOTEN`; QE with
smearing: the total energy including -TS).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import label_gpaw as core  # noqa: E402

CODE = "mycode"  # goes into the cache key and into dft_code= of every labelled frame


def make_calculator(atoms, settings: dict, kpts: list[int], log_path: str):
    """Return an ASE calculator for `atoms` (already a private copy). Examples:

    VASP (needs ASE_VASP_COMMAND and VASP_PP_PATH):
        from ase.calculators.vasp import Vasp
        return Vasp(directory=log_path + ".d", xc="PBE", encut=settings.get("ecut", 500),
                    kpts=kpts, gamma=True, ismear=1, sigma=settings.get("smearing", 0.1),
                    ediff=1e-6, nelm=settings.get("maxiter", 100), lwave=False, lcharg=False)

    Quantum ESPRESSO (needs ASE_ESPRESSO_COMMAND and pseudopotentials):
        from ase.calculators.espresso import Espresso
        return Espresso(directory=log_path + ".d", kpts=kpts, tstress=True, tprnfor=True,
                        pseudopotentials={"Li": "li_pbe_v1.4.uspp.F.UPF"},
                        input_data={"system": {"ecutwfc": 40, "occupations": "smearing",
                                               "smearing": "mv", "degauss": 0.01}})

    CP2K (needs ASE_CP2K_COMMAND): from ase.calculators.cp2k import CP2K; return CP2K(...)
    """
    raise NotImplementedError("fill in make_calculator() for your DFT code")


def main(argv: list[str]) -> int:
    import argparse
    import tomllib

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--settings", help="TOML file of settings")
    p.add_argument("--cache", help="per-structure results (default: label_cache beside OUTPUT)")
    p.add_argument("--retry-failed", action="store_true")
    a = p.parse_args(argv)
    s = {"kpoint_density": 2.0, "kpts": None, "timeout_minutes": 30.0,
         "energy_key": "energy", "forces_key": "forces"}
    if a.settings:
        with open(a.settings, "rb") as f:
            s.update(tomllib.load(f))
    cache = a.cache or os.path.join(os.path.dirname(os.path.abspath(a.output)), "label_cache")
    return core.label_file(a.input, a.output, s, cache, a.retry_failed, make_calculator, CODE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
