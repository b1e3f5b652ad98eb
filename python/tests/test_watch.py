"""aceuq.Watch in ASE dynamics: candidates above the lower cutoff, a halt above the upper one,
frames that aceuq select reads (halt frames left out), and the Python example end to end."""

import subprocess
import sys

import numpy as np
import pytest
from ase import units
from ase.io import read
from ase.md.verlet import VelocityVerlet

import aceuq
from conftest import DATA, ROOT


def hot_bcc(model, uq="gamma"):
    a = read(DATA / "test.xyz", index=0)  # 16-atom bcc at 75 K
    a.calc = aceuq.AceUQCalculator(model, uq=uq)
    rng = np.random.default_rng(3)
    a.set_momenta(rng.normal(0, 1.2, (len(a), 3)))  # ~1400 K: leaves the training data
    return a


def test_watch_dumps_candidates_and_halts(li_model, tmp_path):
    a = hot_bcc(li_model)
    lower, _ = a.calc.cutoffs("gamma", a)
    dyn = VelocityVerlet(a, 2 * units.fs)
    upper = 3 * lower[0]  # this small model has no calibrated upper cutoff: set one
    watch = aceuq.Watch(a, "gamma", dump=tmp_path / "c.xyz", upper=upper, dyn=dyn, log=None)
    dyn.attach(watch, interval=5)
    with pytest.raises(aceuq.Extrapolation) as e:
        dyn.run(5000)
    assert watch.halted is e.value and e.value.value > upper
    gamma_at_halt = a.calc.results["gamma"]
    assert e.value.value == gamma_at_halt.max()
    assert e.value.step == dyn.nsteps and e.value.step % 5 == 0
    frames = read(tmp_path / "c.xyz", index=":")
    assert len(frames) == watch.frames_dumped >= 2
    kinds = [f.info["config_type"] for f in frames]
    assert kinds[-1] == "halt" and set(kinds[:-1]) == {"candidate"}
    last = frames[-1]
    np.testing.assert_allclose(last.arrays["gamma"], gamma_at_halt, atol=1e-8)  # 8 decimals
    np.testing.assert_allclose(last.positions, a.positions, atol=1e-7)
    assert last.info["n_above_upper"] == int((gamma_at_halt > upper).sum()) >= 1
    for f in frames:  # unlabelled: a candidate must not look like DFT data
        assert f.calc is None and "forces" not in f.arrays and "energy" not in f.info
        assert f.info["n_above_lower"] == int((f.arrays["gamma"] > lower[0]).sum()) >= 1

    chosen = aceuq.select(li_model, tmp_path / "c.xyz", max=3, out=tmp_path / "for_dft.xyz")
    assert 1 <= len(chosen) <= 3
    assert all(c.info["config_type"] == "candidate" for c in chosen)
    steps = {f.info["step"] for f in frames[:-1]}
    assert {c.info["step"] for c in chosen} <= steps
    with_halt = aceuq.select(li_model, tmp_path / "c.xyz", max=len(frames), include_halted=True)
    assert "halt" in {c.info["config_type"] for c in with_halt}


def test_watch_without_upper_never_halts_and_gamma_local_uses_clusters(li_model, tmp_path):
    a = hot_bcc(li_model, uq="gamma_local")
    dyn = VelocityVerlet(a, 2 * units.fs)
    watch = aceuq.Watch(a, "gamma_local", dump=tmp_path / "c.xyz", upper=None, dyn=dyn, log=None)
    dyn.attach(watch, interval=10)
    dyn.run(300)
    assert watch.halted is None and watch.checks == 31
    frames = read(tmp_path / "c.xyz", index=":")
    assert len(frames) == watch.frames_dumped >= 1
    lo, up = a.calc.cutoffs("gamma_local")
    assert np.isinf(up).all()
    for f in frames:
        assert set(np.unique(f.arrays["cluster"])) <= {0, 1}


def test_watch_refuses_a_quantity_the_calculator_does_not_compute(li_model):
    a = hot_bcc(li_model, uq="gamma")
    with pytest.raises(ValueError, match="does not compute 'gp'"):
        aceuq.Watch(a, "gp")


def test_the_python_md_example_halts_and_selects(tmp_path):
    r = subprocess.run(
        [sys.executable, ROOT / "examples" / "python" / "md_watch.py", "--out", tmp_path,
         "--steps", "3000"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "stopped at step" in r.stdout, r.stdout[-2000:]
    chosen = read(tmp_path / "for_dft.xyz", index=":")
    assert 1 <= len(chosen) <= 5
    assert all(c.info["config_type"] == "candidate" for c in chosen)
