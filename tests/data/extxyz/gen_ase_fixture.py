"""Regenerate ase_written.xyz and ase_expected.txt with ASE (needs `pip install ase numpy`).

ase_written.xyz is written by ASE's own extxyz writer; ase_expected.txt holds the values ASE has
in memory (cell rows, pbc, energy, virial = -stress * volume as 3x3 row-major, positions, forces,
selected info/arrays), so the Rust reader is checked against an independent implementation.
Run from this directory: python gen_ase_fixture.py
"""
import numpy as np
from ase import Atoms
from ase.build import bulk, molecule, fcc111
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.stress import voigt_6_to_full_3x3_stress

rng = np.random.default_rng(7)
frames = []

# 1. Triclinic periodic cell, rattled, with energy, forces, stress and assorted info/arrays.
a = bulk("Al", "fcc", a=4.05) * (2, 1, 1)
a.cell = a.cell.array + rng.normal(scale=0.1, size=(3, 3))
a.rattle(0.05, seed=1)
a.info["config_type"] = "bulk_tri"
a.info["temperature"] = 300.5
a.info["step"] = 12
a.info["comment"] = "rattled fcc with spaces"
a.info["converged"] = True
a.info["kpts"] = np.array([4, 4, 2])
a.new_array("gamma", rng.uniform(0, 3, len(a)))
a.set_tags(np.arange(len(a)))
a.calc = SinglePointCalculator(a, energy=-13.123456789012345,
                               forces=rng.normal(size=(len(a), 3)),
                               stress=rng.normal(scale=0.01, size=6))
frames.append(a)

# 2. Non-periodic molecule (ASE writes no Lattice when the cell is zero).
m = molecule("H2O")
m.info["config_type"] = "molecule"
m.calc = SinglePointCalculator(m, energy=-14.2, forces=rng.normal(size=(3, 3)))
frames.append(m)

# 3. Slab with partial periodicity T T F.
s = fcc111("Cu", size=(2, 2, 2), vacuum=5.0)
s.pbc = [True, True, False]
s.calc = SinglePointCalculator(s, energy=-30.5, forces=rng.normal(size=(len(s), 3)))
frames.append(s)

write("ase_written.xyz", frames, format="extxyz")

with open("ase_expected.txt", "w") as f:
    for at in frames:
        f.write(f"frame {len(at)}\n")
        if at.cell.any():
            f.write("cell " + " ".join(repr(float(x)) for x in at.cell.array.ravel()) + "\n")
        f.write("pbc " + " ".join(str(int(p)) for p in at.pbc) + "\n")
        f.write(f"energy {at.calc.results['energy']!r}\n")
        if "stress" in at.calc.results:
            vir = -voigt_6_to_full_3x3_stress(at.calc.results["stress"]) * at.get_volume()
            f.write("virial " + " ".join(repr(float(x)) for x in vir.ravel()) + "\n")
        f.write(f"config_type {at.info.get('config_type', '-')}\n")
        for sym, p, fo in zip(at.get_chemical_symbols(), at.positions, at.calc.results["forces"]):
            f.write(f"atom {sym} " + " ".join(repr(float(x)) for x in [*p, *fo]) + "\n")
        if "gamma" in at.arrays:
            f.write("gamma " + " ".join(repr(float(x)) for x in at.arrays["gamma"]) + "\n")
