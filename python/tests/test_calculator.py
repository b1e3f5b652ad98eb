"""The ASE calculator against `aceuq eval` (same library code: equal to 1e-10, the CSV's
precision) and against the LAMMPS plugin (its own neighbour lists and MD-step code path)."""

import subprocess

import numpy as np
import pytest
from ase import Atoms
from ase.build import bcc110
from ase.calculators.calculator import PropertyNotImplementedError
from ase.io import read

import aceuq
from conftest import DATA

METHODS = ["gamma", "gamma_local", "ensemble", "distance", "gp"]
COLUMNS = {
    "gamma": "gamma",
    "gamma_local": "gamma_local",
    "ensemble": "sigma_ensemble",
    "distance": "sigma_distance",
    "gp": "sigma_gp",
}
# LAMMPS's metal-units pressure conversion (eV/Å^3 -> bar), as in its update.cpp.
NKTV2P = 1.6021765e6


def close(actual, desired, rtol=1e-10, atol=1e-12, what=""):
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def test_the_model_carries_every_method(li_model):
    assert li_model.species == ["Li"]
    assert li_model.methods == METHODS
    assert li_model.clusters("Li") == 2
    lo, up = li_model.stored_cutoffs("gamma", "Li")
    assert 0 < lo < up
    assert "Li" in repr(li_model) and "gp" in repr(li_model)


def test_calculator_equals_aceuq_eval_per_atom(li_model):
    frames = read(DATA / "test.xyz", index=":")
    table = aceuq.evaluate(li_model, DATA / "test.xyz")
    calc = aceuq.AceUQCalculator(li_model)
    assert calc.uq_methods == METHODS
    checked = 0
    for k, frame in enumerate(frames):
        rows = table["structure"] == k
        assert rows.sum() == len(frame)
        a = frame.copy()
        a.calc = calc
        e = a.get_potential_energy()
        r = calc.results
        close(e, r["energies"].sum(), rtol=1e-12, what="energy = sum of atom energies")
        close(r["energies"], table["energy_atom"][rows], what=f"frame {k} atom energies")
        forces = np.stack([table[c][rows] for c in ("fx", "fy", "fz")], axis=1)
        close(r["forces"], forces, what=f"frame {k} forces")
        for m in METHODS:
            close(r[m], table[COLUMNS[m]][rows], what=f"frame {k} {m}")
        np.testing.assert_array_equal(r["gamma_local_cluster"], table["cluster"][rows])
        checked += len(a)
    assert checked == 16 * 13 + 15 * 2 + 54


def test_forces_and_stress_are_derivatives_of_the_energy(li_model):
    a = read(DATA / "test.xyz", index=12)  # liquid, orthorhombic
    a.calc = aceuq.AceUQCalculator(li_model, uq=None)
    f = a.get_forces()
    h = 1e-5
    for i, d in [(0, 0), (5, 2), (11, 1)]:
        p = a.positions.copy()
        e = []
        for s in (h, -h):
            a.positions = p
            a.positions[i, d] += s
            e.append(a.get_potential_energy())
        a.positions = p
        assert abs(-(e[0] - e[1]) / (2 * h) - f[i, d]) < 1e-6
    stress = a.get_stress(voigt=False)
    cell = a.cell.array.copy()
    for (i, j) in [(0, 0), (1, 2)]:
        e = []
        for s in (h, -h):
            strain = np.eye(3)
            strain[i, j] += s / 2
            strain[j, i] += s / 2
            b = a.copy()
            b.set_cell(cell @ strain, scale_atoms=True)
            b.calc = a.calc
            e.append(b.get_potential_energy())
        assert abs((e[0] - e[1]) / (2 * h) / a.get_volume() - stress[i, j]) < 1e-7


def test_a_cluster_is_a_cluster_in_any_box(li_model):
    a = read(DATA / "test.xyz", index=0)
    a.pbc = False
    a.center(vacuum=8.0)
    a.calc = aceuq.AceUQCalculator(li_model, uq="gamma,distance")
    e0, f0, g0 = a.get_potential_energy(), a.get_forces(), a.calc.results["gamma"].copy()
    with pytest.raises(PropertyNotImplementedError):
        a.get_stress()
    b = a.copy()
    b.pbc = True  # images 8 Å apart on each side: farther than the 5.5 Å cutoff
    b.calc = aceuq.AceUQCalculator(li_model, uq="gamma,distance")
    close(b.get_potential_energy(), e0, rtol=1e-12)
    close(b.get_forces(), f0, rtol=1e-12, atol=1e-12)
    close(b.calc.results["gamma"], g0, rtol=1e-12)
    assert set(a.calc.results) >= {"gamma", "distance", "energies"}
    assert "gp" not in a.calc.results


def run_lammps(lammps, folder, atoms, boundary):
    lmp, plugin = lammps
    (folder / "frame.xyz").write_text("")
    atoms.write(folder / "frame.xyz", format="extxyz")
    assert aceuq.cli("to-lammps", "--data", folder / "frame.xyz", "--out", folder / "data.lmp") == 0
    names = " ".join(f"{m} 1" for m in METHODS)
    (folder / "in.lmp").write_text(
        f"""plugin load {plugin}
units metal
boundary {boundary}
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * model.aceuq Li
compute pe all pe/atom
compute pv all pressure NULL virial
fix u all pair 1 ace/uq {names}
thermo_style custom step pe c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6]
thermo_modify format float %.17g
dump d all custom 1 out.dump id x y z fx fy fz c_pe f_u[*]
dump_modify d format float %.17g sort id
run 0
"""
    )
    r = subprocess.run(
        [str(lmp), "-nocite", "-log", "log.lammps", "-in", "in.lmp"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    k = next(i for i, l in enumerate(lines) if l.split()[:2] == ["Step", "PotEng"])
    thermo = [float(x) for x in lines[k + 1].split()]
    dump = (folder / "out.dump").read_text().splitlines()
    start = dump.index(next(l for l in dump if l.startswith("ITEM: ATOMS"))) + 1
    return thermo, np.array([[float(x) for x in l.split()] for l in dump[start:]])


@pytest.mark.parametrize(
    "frame,boundary", [(4, "p p p"), (10, "p p f"), (15, "p p p"), ("tilted", "p p p")]
)
def test_calculator_equals_the_lammps_plugin(li_model, lammps, tmp_path, frame, boundary):
    if frame == "tilted":
        a = read(DATA / "test.xyz", index=12)
        cell = a.cell.array.copy()
        cell[1, 0] += 1.3  # b tilted towards a, c towards a and b: LAMMPS xy, xz, yz
        cell[2, 0] -= 0.9
        cell[2, 1] += 0.6
        a.set_cell(cell, scale_atoms=True)
        # The file LAMMPS reads holds 8 decimals (ASE's extxyz writer): compute on those.
        a.set_cell(np.round(a.cell.array, 8))
        a.positions = np.round(a.positions, 8)
    else:
        a = read(DATA / "test.xyz", index=frame)
    # LAMMPS boxes have a along x and b in the xy plane: these cells are already so, so that
    # positions and forces need no rotation.
    assert np.allclose(np.triu(a.cell.array, 1), 0.0)
    (tmp_path / "model.aceuq").write_bytes(open(li_model.path, "rb").read())
    thermo, rows = run_lammps(lammps, tmp_path, a, boundary)
    a.calc = aceuq.AceUQCalculator(li_model)
    e = a.get_potential_energy()
    r = a.calc.results
    scale = np.abs(r["forces"]).max()
    close(thermo[1], e, rtol=1e-12, what="total energy")
    close(rows[:, 7], r["energies"], rtol=0, atol=1e-10, what="atom energies")
    close(rows[:, 4:7], r["forces"], rtol=0, atol=1e-10 * max(scale, 1.0), what="forces")
    for k, m in enumerate(METHODS):
        close(rows[:, 8 + k], r[m], rtol=1e-10, atol=1e-12, what=m)
    if all(a.pbc):
        # LAMMPS pressure = virial / V in bar = -stress (eV/Å^3) * NKTV2P; order xx yy zz xy xz yz.
        s = a.get_stress(voigt=False)
        p = -np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]]) * NKTV2P
        close(thermo[2:8], p, rtol=0, atol=1e-9 * np.abs(p).max(), what="pressure")


def test_bad_input_names_the_problem(li_model):
    with pytest.raises(ValueError, match="no 'bogus' uncertainty.*it has: gamma"):
        aceuq.AceUQCalculator(li_model, uq=["bogus"])
    with pytest.raises(aceuq.AceuqError, match="nowhere.aceuq"):
        aceuq.Model("/nowhere.aceuq")
    a = read(DATA / "test.xyz", index=0)
    a[3].symbol = "Cu"
    a.calc = aceuq.AceUQCalculator(li_model)
    # Atoms are named as ASE counts them, from 0.
    with pytest.raises(aceuq.AceuqError, match=r"atoms\[3\] is Cu, a species the model does not"):
        a.get_potential_energy()
    a[3].symbol = "Li"
    a.positions[5, 1] = np.nan
    with pytest.raises(aceuq.AceuqError, match=r"atoms\[5\] is at \(.*NaN"):
        a.get_potential_energy()
    a.positions[5] = a.positions[7]
    with pytest.raises(aceuq.AceuqError, match=r"atoms\[[57]\] and atoms\[[57]\] are at the same position.*del atoms\[[57]\]"):
        a.get_potential_energy()
    # pbc=True without a cell: ASE gives zero lattice vectors.
    b = Atoms("Li2", positions=[[0, 0, 0], [3, 0, 0]], pbc=True)
    b.calc = aceuq.AceUQCalculator(li_model)
    with pytest.raises(aceuq.AceuqError, match="periodic along lattice vector 0 .a., but that vector is zero"):
        b.get_potential_energy()
    with pytest.raises(ValueError, match="not in the model"):
        li_model.stored_cutoffs("gamma", "Cu")
    with pytest.raises(ValueError, match="unknown uncertainty method 'gama'"):
        li_model.stored_cutoffs("gama", "Li")
    # A command-line error is an exit code, not the end of the Python process.
    assert aceuq.cli("fit", "--bogus") == 2
    with pytest.raises(ValueError, match="cluster 2 is out of range"):
        li_model.stored_cutoffs("gamma_local", "Li", 2)  # clusters 0 and 1
    with pytest.raises(ValueError, match="cluster -1 is out of range"):
        li_model.stored_cutoffs("gamma_local", "Li", -1)
    # The command's message is in the exception (the library writes it to fd 2).
    with pytest.raises(aceuq.AceuqError, match="aceuq eval failed.*nowhere.xyz: cannot open"):
        aceuq.evaluate(li_model, "/nowhere.xyz")


def test_uq_can_be_changed_by_set(li_model):
    a = read(DATA / "test.xyz", index=0)
    a.calc = aceuq.AceUQCalculator(li_model, uq="gamma")
    a.get_potential_energy()
    assert a.calc.set(uq="distance") == {"uq": "distance"}
    a.get_potential_energy()
    assert "distance" in a.calc.results and "gamma" not in a.calc.results
    with pytest.raises(ValueError, match="no 'bogus' uncertainty"):
        a.calc.set(uq="bogus")
    assert a.calc.uq_methods == ["distance"]


def test_uncertainties_are_ase_properties(li_model):
    """get_property computes an uncertainty for the atoms as they are (results[...] would still
    hold the last calculation's); a method not computed is no property."""
    from ase.calculators.calculator import PropertyNotImplementedError

    a = read(DATA / "test.xyz", index=0)
    a.calc = aceuq.AceUQCalculator(li_model, uq=["gamma", "gamma_local"])
    g0 = a.calc.get_property("gamma", a)
    assert g0.shape == (len(a),)
    assert a.calc.get_property("gamma_local_cluster", a).shape == (len(a),)
    a.positions[0] += [0.4, 0.0, 0.0]
    g1 = a.calc.get_property("gamma", a)
    assert not np.array_equal(g0, g1)
    fresh = aceuq.AceUQCalculator(li_model, uq=["gamma"])
    b = a.copy()
    b.calc = fresh
    assert np.array_equal(g1, b.calc.get_property("gamma", b))
    with pytest.raises(PropertyNotImplementedError):
        a.calc.get_property("distance", a)
    a.calc.set(uq="distance")
    assert a.calc.get_property("distance", a).shape == (len(a),)


def test_slabs_and_wires_need_no_vacuum_vector(li_model):
    """ASE's slab builders leave the non-periodic vector zero: the energy is the slab's."""
    calc = aceuq.AceUQCalculator(li_model, uq="gamma")
    slab = bcc110("Li", size=(2, 2, 3), a=3.45)
    assert not slab.cell.array[2].any()
    slab.rattle(0.05, seed=1)
    wire = Atoms("Li3", [[0, 0, 0], [1.7, 1.5, 0], [3.4, 0, 0.2]], cell=[5.1, 0, 0], pbc=[1, 0, 0])
    for a in (slab, wire):
        b = a.copy()
        b.center(vacuum=10.0, axis=[k for k in range(3) if not a.pbc[k]])
        b.positions = a.positions
        b.calc = calc
        e = b.get_potential_energy()
        a.calc = calc
        close(a.get_potential_energy(), e, rtol=1e-12)
    slab.pbc = [True, False, True]  # a zero periodic vector stays an error
    with pytest.raises(aceuq.AceuqError, match="periodic along lattice vector 2 .c., but that"):
        slab.get_potential_energy()


def test_workflow_never_takes_the_model_as_labels(li_model):
    frames = read(DATA / "test.xyz", index=":2")
    labelled = aceuq.evaluate(li_model, frames)["force_error"]
    assert np.isfinite(labelled).all()
    for a in frames:
        a.calc = aceuq.AceUQCalculator(li_model, uq=None)
        a.get_forces()
    with pytest.warns(UserWarning, match="AceUQCalculator: its results are the model's"):
        t = aceuq.evaluate(li_model, frames)
    assert np.isnan(t["force_error"]).all()  # no labels, not zero errors


def test_model_and_calculator_pickle_by_content(li_model, tmp_path):
    """A pickled model carries its file's content: the copy computes the same numbers after the
    file is gone (multiprocessing workers, copied calculators)."""
    import pickle
    import shutil

    path = tmp_path / "copy.aceuq"
    shutil.copy(li_model.path, path)
    model = aceuq.Model(path)
    calc = aceuq.AceUQCalculator(model)
    frame = read(DATA / "test.xyz", index=0)
    frame.calc = calc
    frame.get_potential_energy()
    want = dict(calc.results)
    blob = pickle.dumps(calc)
    path.unlink()
    back = pickle.loads(blob)
    assert back.model.path == path and back.model.methods == METHODS
    a = frame.copy()
    a.calc = back
    a.get_potential_energy()
    for key in ["energy", "forces", "stress"] + METHODS:
        np.testing.assert_array_equal(back.results[key], want[key], err_msg=key)
    # A damaged copy is an AceuqError naming the file, not a crash.
    with pytest.raises(aceuq.AceuqError, match="copy.aceuq"):
        aceuq._native._model_from_bytes(str(path), pickle.dumps(model)[:200])


def test_workflow_functions_use_the_loaded_model_and_keep_false(li_model, tmp_path):
    """A loaded Model given to evaluate is the model as loaded, not whatever its file holds now
    (a refit to the same path, or no file at all); False reaches an option that takes a value
    (and is refused there), while a switch set to False is left out; uq names may carry
    spaces, and a uq of the wrong type is a ValueError."""
    import shutil

    path = tmp_path / "m.aceuq"
    shutil.copy(li_model.path, path)
    model = aceuq.Model(path)
    frames = DATA / "test.xyz"
    want = aceuq.evaluate(model, frames)["force_error"]
    path.unlink()
    np.testing.assert_array_equal(aceuq.evaluate(model, frames)["force_error"], want)
    with pytest.raises(aceuq.AceuqError, match="grow-basis must be auto, on or off, got false"):
        aceuq.fit(DATA / "train.xyz", tmp_path / "g.aceuq", valid=DATA / "valid.xyz",
                  grow_basis=False)
    assert not (tmp_path / "g.aceuq").exists()
    assert aceuq.workflow._options({"active_set": False, "distance": True}, "fit") == [
        "--distance"
    ]
    calc = aceuq.AceUQCalculator(li_model, uq="gamma, distance")
    assert calc.uq_methods == ["gamma", "distance"]
    with pytest.raises(ValueError, match="uq must be"):
        aceuq.AceUQCalculator(li_model, uq=True)
