"""aceuq.Watch in ASE dynamics: candidates above the lower cutoff, a halt above the upper one,
frames that aceuq select reads (halt frames left out), and the Python example end to end."""

import contextlib
import io
import math
import os
import pickle
import re
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from ase import units
from ase.io import read, write
from ase.md.verlet import VelocityVerlet
from ase.optimize import FIRE

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
    k = e.value.atom
    assert gamma_at_halt[k] == e.value.value
    assert f"atom index {k} (Li, id {k + 1} in the dump)" in str(e.value)
    frames = read(tmp_path / "c.xyz", index=":")
    assert len(frames) == watch.frames_dumped >= 2
    kinds = [f.info["config_type"] for f in frames]
    assert kinds[-1] == "halt" and set(kinds[:-1]) == {"candidate"}
    last = frames[-1]
    np.testing.assert_allclose(last.arrays["gamma"], gamma_at_halt, atol=1e-8)  # 8 decimals
    # The atom the message names by id is the one with the halting value in the dump.
    at = int(np.flatnonzero(last.arrays["id"] == k + 1)[0])
    assert abs(last.arrays["gamma"][at] - e.value.value) <= 1e-8
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
    # The settings line gives gamma_local's cutoffs per cluster present, as the fix does.
    log = io.StringIO()
    aceuq.Watch(a, "gamma_local", upper=None, log=log)()
    present = sorted(set(a.calc.results["gamma_local_cluster"].tolist()))
    shown = re.findall(r"Li:(\d): lower \S+ upper inf", log.getvalue())
    assert [int(c) for c in shown] == present, log.getvalue()


def test_watch_keeps_lower_below_upper_and_takes_empty_atoms(li_model):
    """As fix ace/uq/watch: a given upper below the calibrated lower cutoff lowers it (a warning:
    every candidate is then a halt); a given lower above the calibrated upper is an error; no
    atoms is a check with nothing above anything."""
    a = hot_bcc(li_model)
    lower, _ = a.calc.cutoffs("gamma", a)
    log = io.StringIO()
    w = aceuq.Watch(a, "gamma", upper=0.5 * lower[0], halt=False, log=log)
    w()
    assert f"upper {0.5 * lower[0]:.6g} is below the calibrated lower cutoff of Li" in log.getvalue()
    lo, up = w._cutoffs()
    assert (lo == up).all()
    # This small model has no calibrated upper cutoff for gamma: give the calculator one.
    calibrated = a.calc.cutoffs
    a.calc.cutoffs = lambda m, atoms=None: (calibrated(m, atoms)[0], np.full(len(a), 2.0))
    w = aceuq.Watch(a, "gamma", lower=3.0, upper="atom", log=None)
    with pytest.raises(ValueError, match="for Li the lower cutoff 3 is above the calibrated upper cutoff 2 of gamma"):
        w()
    empty = a[[]]
    empty.calc = aceuq.AceUQCalculator(li_model, uq="gamma")
    w = aceuq.Watch(empty, "gamma", log=None)
    w()
    assert w.checks == 1 and w.max_value == -math.inf and w.halted is None


def _run_watch(model, upper, path, steps=3000):
    a = hot_bcc(model)
    dyn = VelocityVerlet(a, 2 * units.fs)
    log = io.StringIO()
    watch = aceuq.Watch(a, "gamma", dump=path, upper=upper, dyn=dyn, log=log)
    dyn.attach(watch, interval=5)
    try:
        dyn.run(steps)
    except aceuq.Extrapolation:
        pass
    return watch, log.getvalue()


def test_watch_frame_rule_as_fix_ace_uq_watch(li_model, tmp_path):
    """upper='auto' applies the frame rule of fix ace/uq/watch when the calibration has a fitted
    error scale: it halts no later than upper='atom' on the same (deterministic) trajectory and
    at the same step as upper='frame'; every frame written carries p_frame, below p_halt for
    candidates, and a halt has p_frame >= p_halt or an atom above its upper cutoff. The
    probability is recomputed here from the frame's own values and the model's stored relation.
    Calibrated for an error limit of 0.25 eV/Å, which this small model's gamma reaches for no
    single atom (upper cutoff inf) but the hot crystal's atoms together do: a halt by the frame
    rule alone."""
    model = aceuq.calibrate(
        li_model.path, DATA / "valid.xyz", out=tmp_path / "m.aceuq", pool_size=2000,
        max_error=0.25, methods="gamma",
    )
    runs = {}
    for upper in ["atom", "auto", "frame"]:
        watch, log = _run_watch(model, upper, tmp_path / f"{upper}.xyz")
        runs[upper] = (watch, log)
    atom, auto, frame = runs["atom"][0], runs["auto"][0], runs["frame"][0]
    assert "(frame rule)" in runs["auto"][1] and "(frame rule)" not in runs["atom"][1]
    assert auto.halted is not None, runs["auto"][1][-2000:]
    assert frame.halted is not None and frame.halted.step == auto.halted.step
    assert atom.halted is None and "will not halt on it" in runs["atom"][1]
    # No upper cutoff, but an error scale that grows without bound: one atom can halt the frame
    # rule, so with it there is nothing to warn about.
    assert "no upper cutoff" not in runs["auto"][1] + runs["frame"][1]
    assert "(frame rule); no atom is above its upper cutoff" in str(auto.halted)
    frames = read(tmp_path / "auto.xyz", index=":")
    assert frames and all("p_frame" in f.info for f in frames)
    assert all("p_frame" not in f.info for f in read(tmp_path / "atom.xyz", index=":"))
    p_halt = None
    for f in frames:
        r = model.frame_log_calm("gamma", f.get_chemical_symbols(), list(f.arrays["gamma"]))
        assert r is not None
        p, p_halt = -np.expm1(r[0]), r[1]
        # The frame holds gamma to 8 decimals: the recomputed probability agrees closely.
        assert abs(p - f.info["p_frame"]) <= 1e-5 * max(p, 1e-300) + 1e-12, (p, f.info)
        if f.info["config_type"] == "halt":
            assert f.info["p_frame"] >= p_halt or f.info["n_above_upper"] >= 1
        else:
            assert f.info["p_frame"] < p_halt and f.info["n_above_upper"] == 0
    assert frames[-1].info["config_type"] == "halt"
    assert auto.halted.p_frame == frames[-1].info["p_frame"]
    # Per-atom terms add: two halves of the halt frame sum to the whole.
    last = frames[-1]
    sym, g = last.get_chemical_symbols(), list(last.arrays["gamma"])
    h = len(g) // 2
    whole = model.frame_log_calm("gamma", sym, g)[0]
    parts = model.frame_log_calm("gamma", sym[:h], g[:h])[0] + model.frame_log_calm(
        "gamma", sym[h:], g[h:]
    )[0]
    assert abs(whole - parts) <= 1e-12 * abs(whole) + 1e-300


def test_watch_frame_rule_needs_a_fitted_error_scale(li_model, tmp_path):
    """With the seeds' ratio rule there is no s(u): upper='auto' halts on single atoms and says
    so, upper='frame' is a ValueError naming the way out."""
    ratio = aceuq.calibrate(
        li_model.path, DATA / "valid.xyz", out=tmp_path / "ratio.aceuq", pool_size=2000,
        upper_rule="ratio", methods="gamma",
    )
    a = hot_bcc(ratio)
    log = io.StringIO()
    watch = aceuq.Watch(a, "gamma", upper="auto", log=log)
    watch()
    assert "halts on single atoms only" in log.getvalue()
    with pytest.raises(ValueError, match="upper='atom'"):
        aceuq.Watch(a, "gamma", upper="frame", log=None)  # refused when created
    for bad in ["sometimes", True]:
        with pytest.raises(ValueError, match="upper must be"):
            aceuq.Watch(a, "gamma", upper=bad)
    aceuq.Watch(a, "gamma", upper=np.float64(3.0), log=None)()  # numpy numbers are numbers


def test_watch_refuses_a_quantity_the_calculator_does_not_compute(li_model):
    a = hot_bcc(li_model, uq="gamma")
    with pytest.raises(ValueError, match="does not compute 'gp'"):
        aceuq.Watch(a, "gp")
    with pytest.raises(ValueError, match="'foo' is not an uncertainty method"):
        aceuq.Watch(a, "foo")
    with pytest.raises(ValueError, match="upper is NaN"):
        aceuq.Watch(a, "gamma", upper=float("nan"))
    with pytest.raises(ValueError, match="lower=5.0 is above upper=1.0"):
        aceuq.Watch(a, "gamma", lower=5.0, upper=1.0)


def test_watch_follows_the_atoms_calculator_and_writes_only_its_own_columns(li_model, tmp_path):
    a = hot_bcc(li_model)
    a.arrays["dft_forces"] = np.ones((len(a), 3))  # labels under custom keys: not the frame's
    a.info["dft_energy"] = -1.0
    a.set_masses(np.full(len(a), 7.016))  # an isotope: kept, as the momenta are
    opt = FIRE(a, logfile=None)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # the default log is sys.stdout when it prints
        watch = aceuq.Watch(a, "gamma", dump=tmp_path / "c.xyz", lower=0.0, upper=None, dyn=opt)
        watch()
    assert "aceuq.Watch: gamma [Li: lower 0" in buf.getvalue()
    frame = read(tmp_path / "c.xyz")
    assert "dft_forces" not in frame.arrays and "dft_energy" not in frame.info
    assert "time" not in frame.info  # an optimizer's dt is no time
    assert np.allclose(frame.get_masses(), 7.016)
    # A new calculator: the watch reads its results, not the old one's.
    a.calc = aceuq.AceUQCalculator(li_model, uq="gamma")
    a.positions[0] = a.positions[1] + [0.8, 0, 0]
    watch()
    assert watch.max_value == a.calc.results["gamma"].max() > 3.0
    # Another model: its calibration chose other rules; the watch refuses it.
    other = tmp_path / "other.aceuq"
    shutil.copy(li_model.path, other)
    a.calc = aceuq.AceUQCalculator(other, uq="gamma")
    with pytest.raises(ValueError, match="create a new Watch"):
        watch()
    a.calc = aceuq.AceUQCalculator(li_model, uq="gp")
    with pytest.raises(ValueError, match="does not compute 'gamma'"):
        watch()


def test_watch_dump_failures(li_model, tmp_path):
    a = hot_bcc(li_model)
    with pytest.raises(ValueError, match="no_dir/c.xyz.*does not exist"):
        aceuq.Watch(a, "gamma", dump=tmp_path / "no_dir" / "c.xyz")
    # A write that fails part-way (here a file size limit, as a full disk) leaves the file as
    # it was.
    path = tmp_path / "c.xyz"
    watch = aceuq.Watch(a, "gamma", dump=path, lower=0.0, upper=None, log=None)
    watch()
    size = path.stat().st_size
    halting = aceuq.Watch(a, "gamma", dump=path, upper=0.0, log=None)

    def at_the_limit(call):
        old = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, old[1]))
        try:
            call()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old)
            signal.signal(signal.SIGXFSZ, handler)

    with pytest.raises(aceuq.AceuqError, match="unchanged"):
        at_the_limit(watch)
    assert path.stat().st_size == size and watch.frames_dumped == 1
    # At a halt the Extrapolation comes all the same, with the write error attached.
    with pytest.raises(aceuq.Extrapolation, match="could not be written") as e:
        at_the_limit(halting)
    assert isinstance(e.value.write_error, aceuq.AceuqError) and path.stat().st_size == size
    watch()
    assert len(read(path, index=":")) == watch.frames_dumped == 2


def test_watch_dump_files_of_others_are_kept(li_model, tmp_path):
    """As the LAMMPS fix: a file that is no XYZ, or whose last frame is incomplete, is refused
    when the watch is created, untouched; a last line without its newline gets one first."""
    a = hot_bcc(li_model)
    notes = tmp_path / "notes.xyz"
    notes.write_text("my notes\n")
    with pytest.raises(ValueError, match="not an extended XYZ file"):
        aceuq.Watch(a, "gamma", dump=notes)
    assert notes.read_text() == "my notes\n"
    frame = tmp_path / "one.xyz"
    write(frame, a[:3], format="extxyz")
    text = frame.read_text()
    torn = tmp_path / "torn.xyz"
    torn.write_text(text + text.splitlines(keepends=True)[0] + text.splitlines()[1][:20])
    with pytest.raises(ValueError, match="incomplete"):
        aceuq.Watch(a, "gamma", dump=torn)
    nonl = tmp_path / "nonl.xyz"
    nonl.write_text(text.rstrip("\n"))
    watch = aceuq.Watch(a, "gamma", dump=nonl, lower=0.0, upper=None, log=None)
    watch()
    frames = read(nonl, index=":")
    assert len(frames) == 2 and len(frames[1]) == len(a)
    for bad in ("", str(tmp_path / "new.xyz") + os.sep):
        with pytest.raises(ValueError, match="names no file|is a directory"):
            aceuq.Watch(a, "gamma", dump=bad)


def test_halts_and_errors_cross_process_boundaries(li_model, tmp_path):
    """Extrapolation and AceuqError pickle with what they carry (a process pool's results)."""
    e = aceuq.Extrapolation("halting at step 3", 3, 7, 2.5, 1.0, 0.75, OSError(28, "full"))
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is aceuq.Extrapolation and str(back) == "halting at step 3"
    assert (back.step, back.atom, back.value, back.upper, back.p_frame) == (3, 7, 2.5, 1.0, 0.75)
    assert isinstance(back.write_error, OSError) and back.write_error.errno == 28
    with pytest.raises(aceuq.AceuqError) as err:
        aceuq.Model(tmp_path / "missing.aceuq")
    back = pickle.loads(pickle.dumps(err.value))
    assert type(back) is aceuq.AceuqError and str(back) == str(err.value)


def test_watch_log_to_a_file(li_model, tmp_path):
    a = hot_bcc(li_model)
    log = tmp_path / "watch.log"
    watch = aceuq.Watch(a, "gamma", upper=0.0, log=log)
    with pytest.raises(aceuq.Extrapolation):
        watch()
    assert "aceuq.Watch: halting at step 0" in log.read_text()
    with pytest.raises(ValueError, match="log must be"):
        aceuq.Watch(a, "gamma", log=3)


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


def test_watch_upper_vote_as_fix_ace_uq_watch(li_model, tmp_path):
    """upper='vote' as in fix ace/uq/watch: the jury is every method among gamma, ensemble,
    distance and gp that the calculator computes with a fitted error scale; every frame written
    carries each juror's frame probability (recomputed here from the frame's atoms through the
    calculator and the model's stored relation) and the count of frame rules at p_halt, and a
    frame halts exactly when an atom is above a juror's upper cutoff or two frame rules reach
    p_halt. Calibrated for an error limit of 0.25 eV/Å, which the hot crystal's atoms reach: the
    run halts. A calculator that computes one juror only cannot vote (ValueError naming why);
    upper='auto' says which rule the calibration chose."""
    model = aceuq.calibrate(
        li_model.path, DATA / "valid.xyz", out=tmp_path / "m.aceuq", pool_size=2000,
        max_error=0.25,
    )
    jury = ["gamma", "ensemble", "distance", "gp"]
    a = hot_bcc(model, uq=jury)
    dyn = VelocityVerlet(a, 2 * units.fs)
    log = io.StringIO()
    watch = aceuq.Watch(a, "gamma", dump=tmp_path / "v.xyz", lower=0.0, upper="vote", dyn=dyn,
                        log=log)
    assert watch.voting and len(watch.jury) >= 2, watch.jury
    assert f"halts by upper vote of {', '.join(watch.jury)}" in log.getvalue()
    dyn.attach(watch, interval=50)
    with pytest.raises(aceuq.Extrapolation, match="by upper vote"):
        dyn.run(1500)
    frames = read(tmp_path / "v.xyz", index=":")
    assert len(frames) == watch.frames_dumped >= 2
    no_upper = set()
    for f in frames:
        b = f.copy()
        b.calc = aceuq.AceUQCalculator(model, uq=jury)
        b.get_potential_energy()
        names = [kv.split(":")[0] for kv in f.info["vote_p_frame"].split()]
        p_file = [float(kv.split(":")[1]) for kv in f.info["vote_p_frame"].split()]
        assert names == watch.jury
        ratios = dict(
            (kv.split(":")[0], float(kv.split(":")[1]))
            for kv in f.info["vote_u_over_u_max"].split()
        )
        assert list(ratios) == watch.jury
        votes, above, near = 0, False, False
        for m, pf in zip(names, p_file):
            u = b.calc.results[m]
            log_calm, p_halt = model.frame_log_calm(m, b.get_chemical_symbols(), list(u))
            p = -np.expm1(log_calm)
            assert abs(p - pf) <= 1e-6 * p + 1e-12, (m, p, pf)
            votes += p >= p_halt
            up = b.calc.cutoffs(m, b)[1]
            above |= bool((u > up).any())
            # Largest u / u_max, or nan when no atom has an upper cutoff (gp at 0.25 eV/Å).
            if np.isfinite(up).any():
                r = float(np.max(u[np.isfinite(up)] / up[np.isfinite(up)]))
                assert abs(ratios[m] - r) <= 1e-6 * r + 1e-12, (m, ratios[m], r)
            else:
                no_upper.add(m)
                assert math.isnan(ratios[m]), (m, ratios[m])
            # Verdicts within 1e-6 of a threshold are not compared (the frame holds positions
            # to finite precision).
            near |= abs(p - p_halt) < 1e-6 or bool((abs(u - up) < 1e-6 * abs(up)).any())
        if near:
            continue
        assert f.info["votes"] == votes
        assert (f.info["config_type"] == "halt") == (above or votes >= 2), f.info
    assert frames[-1].info["config_type"] == "halt"
    # Both kinds of juror were checked: the GP saturates below the error scale 0.25 eV/Å needs
    # (no upper cutoff, nan), ensemble and distance reach it.
    assert "gp" in no_upper and {"ensemble", "distance"}.isdisjoint(no_upper), no_upper
    one = hot_bcc(model, uq="gamma")
    with pytest.raises(ValueError, match="upper='vote' needs at least two"):
        aceuq.Watch(one, "gamma", upper="vote", log=None)
    # upper='auto' follows the calibration's choice (printed), only with the jury it scored.
    votes, scored, note = model.halt_rule()
    log = io.StringIO()
    auto = aceuq.Watch(hot_bcc(model, uq=jury), "gamma", log=log)
    assert note in log.getvalue(), log.getvalue()
    assert auto.voting == (votes and list(scored) == auto.jury == [m for m in jury if m in scored])
    assert not aceuq.Watch(hot_bcc(model, uq=jury), "gamma", halt=False, log=None).voting
    # Distance recalibrated for another error limit does not sit beside gamma (as in the fix).
    other = aceuq.calibrate(
        tmp_path / "m.aceuq", DATA / "valid.xyz", out=tmp_path / "o.aceuq", pool_size=2000,
        max_error=0.5, methods="distance",
    )
    assert other.error_limit("distance", "Li") == (0.5, 0.5)
    assert other.error_limit("gamma", "Li") == (0.25, 0.5)
    log = io.StringIO()
    w = aceuq.Watch(hot_bcc(other, uq=jury), "gamma", upper="vote", log=log)
    assert "distance" not in w.jury and "gamma" in w.jury, w.jury
    assert "distance: its Li relation gives P(e > 0.5 eV/Å) at p_halt 0.5, the jury's (gamma) " \
        "P(e > 0.25 eV/Å) at p_halt 0.5" in log.getvalue(), log.getvalue()
    # Gamma recalibrated instead: the larger group that agrees votes without it.
    regamma = aceuq.calibrate(
        tmp_path / "m.aceuq", DATA / "valid.xyz", out=tmp_path / "g.aceuq", pool_size=2000,
        max_error=0.5, methods="gamma",
    )
    log = io.StringIO()
    w = aceuq.Watch(hot_bcc(regamma, uq=jury), "gamma", upper="vote", log=log)
    assert "gamma" not in w.jury and len(w.jury) >= 2, w.jury
    assert re.search(
        r"gamma: its Li relation gives P\(e > 0\.5 eV/Å\) at p_halt 0\.5, the jury's "
        r"\((ensemble|distance|gp)\) P\(e > 0\.25 eV/Å\)", log.getvalue()), log.getvalue()


def test_watch_auto_halts_by_the_juror_the_calibration_chose(tmp_path):
    """As fix ace/uq/watch: where the calibration found one juror's own frame rule better than
    gamma's frame rule and the vote (contact, with labelled unstable Li frames), upper='auto'
    seats that juror alone, says so, and halts a frame whose atoms come closer than any training
    pair; the same frame uncompressed runs on."""
    li = ROOT / "tests" / "data" / "li"
    path = tmp_path / "c.aceuq"
    aceuq.fit(li / "train.xyz", path, valid=li / "valid.xyz", active_set=True, contact=True)
    high = read(li / "unstable.xyz", index="::2")
    model = aceuq.calibrate(path, li / "valid.xyz", pool_size=5000, high=high)
    votes, jury, note = model.halt_rule()
    assert votes and jury == ["contact"], note
    assert "halts by contact's frame rule" in note
    outcome = []
    # Calm; squeezed until the frame probability alone halts (every atom below u_max: one frame
    # rule suffices for a jury of one); squeezed until an atom is above u_max.
    for f in (1.0, 0.83, 0.8):
        a = read(li / "test.xyz", index=1)
        a.set_cell(a.cell * f, scale_atoms=True)
        a.calc = aceuq.AceUQCalculator(model)
        u_max = a.calc.cutoffs("contact", a)[1][0]
        a.get_potential_energy()
        if f == 0.83:
            assert a.calc.results["contact"].max() < u_max
        log = io.StringIO()
        w = aceuq.Watch(a, "gamma", dump=tmp_path / f"w{f}.xyz", log=log)
        assert w.voting and w.jury == ["contact"], log.getvalue()
        assert "halts by contact's frame rule" in log.getvalue()
        try:
            w()
            outcome.append(False)
        except aceuq.Extrapolation as e:
            # Named as fix ace/uq/watch names it: the juror's frame rule, not a vote.
            assert "by contact's frame rule: 0 of 1 jurors" in str(e) or (
                "by contact's frame rule: 1 of 1 jurors" in str(e)), str(e)
            outcome.append(True)
        # gamma's own upper cutoff is not applied (the juror halts): shown as inf, as the fix does.
        assert re.search(r"gamma \[Li: lower \S+ upper inf\]", log.getvalue()), log.getvalue()
    assert outcome == [False, True, True]


def test_watch_takes_the_filter_an_optimizer_moves(li_model):
    """A cell relaxation optimizes a filter of the atoms (FrechetCellFilter): the watch given
    that filter watches the atoms inside it (it crashed at its first check)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    a = read(DATA / "test.xyz", index=0)
    a.calc = aceuq.AceUQCalculator(li_model)
    f = FrechetCellFilter(a)
    opt = BFGS(f, logfile=None)
    w = aceuq.Watch(f, "gamma", upper=None, dyn=opt, log=None)
    assert w.atoms is a
    opt.attach(w, interval=1)
    opt.run(fmax=1e-9, steps=2)
    assert w.checks >= 2
    with pytest.raises(TypeError, match="Watch needs an ase.Atoms"):
        aceuq.Watch("not atoms", "gamma")


def test_watch_on_an_uncalibrated_model_says_so_when_created(tmp_path):
    """'auto' cutoffs need a calibration: the watch says so when it is created (it said so at
    the first check, inside dyn.run()), and takes numbers instead."""
    path = tmp_path / "u.aceuq"
    aceuq.fit(DATA / "train.xyz", path, active_set=True)
    a = read(DATA / "test.xyz", index=0)
    a.calc = aceuq.AceUQCalculator(path, uq="gamma")
    with pytest.raises(ValueError, match="no calibrated gamma cutoffs for Li: run aceuq calibrate"):
        aceuq.Watch(a, "gamma", log=None)
    w = aceuq.Watch(a, "gamma", lower=2.0, upper=None, log=None)
    w()
    assert w.checks == 1
