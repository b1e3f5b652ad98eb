#!/usr/bin/env python3
"""Generate the aceuq reference data sets: MD with a cheap potential, relabelled with label.py.

The recipe follows Annevelink & Viswanathan (liquid Li, SNAP labels):

Li (sampler: library MEAM Li, `pair_coeff * * library.meam Li NULL Li`; labels: li-snap)
  main run     250 atoms (5x5x5 BCC, a = 3.51 Å), melted at 1500 K (NVT), density equilibrated at
               600 K / 0 bar (NPT; the box is then set to the mean box length of the second half),
               NVT 600 K re-equilibration, then production at 600 K (Nose-Hoover, 1 fs):
               a dense segment (a frame every 10 fs) followed by a sparse one (a frame every 0.5 ps).
               The MSD of the production run gives the diffusion coefficient (liquid check).
  pool         dense + sparse frames in time order (`time_ps`, `step`, `segment` keys); not
               committed (written to --pool).
  train/valid  from the sparse segment: train = every other frame (at most 50), valid = 10 of
               the others, evenly spread.
  test         an independent run (other velocity seed, melted and equilibrated separately).
  novel        heterogeneous subsets, each its own config_type: cold BCC (75 K, NPT), BCC under
               random elastic strains (general triclinic cells, written in a rotated, non-LAMMPS
               orientation), BCC with vacancies, a (100) slab (pbc T T F), free clusters (no cell,
               pbc F F F) and compressed hot liquid (15 % denser than the 600 K liquid, 1000 K).
Al-Mg (Jelinek 2012 MEAM samples and labels: almg-meam)
  Al fcc, Al93Mg7 fcc, Mg90Al10 hcp, Mg hcp at 300 and 600 K, Al70Mg30 and Al50Mg50 liquids at
  1100 K (melted at 2000 K first); NPT 0 bar, 144 atoms each. Frames of each condition in time
  order are split train / valid / test (test = the latest frames).

Modes: --quick (CI: small and short, a couple of minutes), default (the committed data in
tests/data), --full (a 250 ps sparse segment: a 600-frame pool for the active-learning
benchmark), --hetero (only the multi-phase Li set tests/data/li_hetero/phases.xyz for the
uncertainty benchmark: the novel subsets above with 16-18 frames per phase, plus BCC with
self-interstitials; the compressed liquid's density comes from the committed li/train.xyz box),
--unstable (only li/unstable.xyz and almg/unstable.xyz, each with an unstable_summary.json:
configurations beyond the training data where a model fitted on it becomes unreliable. Li:
compressed liquids 1.1-1.4x at 1000-2500 K, hot liquids 2000-4000 K, rattled BCC, knock-on
collisions, hot clusters, frames with two atoms closer than 1.6 Å not kept (UNSTABLE). Al-Mg: hot
and rattled crystals, an off-training fcc composition, hot and compressed liquids, a knock-on
(ALMG_UNSTABLE); --only li|almg for one of them),
--alloys (only the two-element sets inp/ and wbe/ {train,valid,test}.xyz with a summary.json
beside them; --only inp|wbe for one of them; see below), --calib (only li/, almg/, inp/ and
wbe/calib.xyz with a calib_summary.json beside each: calibration frames from runs independent of
the training runs. Li: 4 further independent liquid runs, 10 frames 1 ps apart each; Al-Mg: 4
further runs of every condition, 2 frames each; In-P and W-Be: 8 starts of 1 frame for every
trained condition, each start its own random sites, velocities and melt, screened like the other
alloy runs; see CALIB).
Deterministic for a given --seed (one LAMMPS process per job, no MPI).

In-P and W-Be (--alloys; samples and labels from the same DFT-trained SNAP+ZBL potential:
label.py's inp-snap, Cusentino, Wood & Thompson, J. Phys. Chem. A 124, 5456 (2020), and wbe-snap,
Wood et al., Phys. Rev. B 99, 184305 (2019); parameters and conditions in ALLOYS)
  Each condition (one config_type) has a main run and an independent run (its own generator,
  seeded with "<seed + 3000>:<config_type>:<run>": other velocities, vacancy, substitution and
  antisite sites, strain), each its own LAMMPS process: build the start cell in Python, draw
  velocities at 2T (liquids: melt first, NVT or NPT), equilibrate (Nose-Hoover NPT 0 bar aniso, or NVT),
  then a frame every `every` ps. Main-run frames in time order: the last n_valid -> valid, the
  rest -> train; independent-run frames -> test. Sanity filters (the potential is trusted only
  inside its domain): lost atoms, an atom without a neighbour within 4 Å, two atoms closer than
  d_floor, a volume per atom outside v_window x the start cell's, E/atom outside e_window around
  the start structure's, max |F| above f_absurd; a failing frame is dropped with every later
  frame of its run, an aborted run loses all its frames, a condition without kept main-run
  frames loses its test frames (nothing to train on). Every drop and its reasons go to
  summary.json (`dropped`), with per-run averages (T, P, volume, E/atom, MSD) and timings.
  In-P: 64-atom zincblende cells (2x2x2, a = 5.83 Å) at 300, 600, 900 K, strained (+-3 %, NVT),
  with an In and a P vacancy, an antisite pair, In34P30 and In30P34 (2 substitutions), and at
  1200 K (no liquid: the potential collapses once the crystal melts; with seed 2024 the filters
  drop the antisite pair and In30P34 altogether, see tests/data/README.md). W-Be: bcc W (54 atoms,
  a = 3.18 Å) at 300 and 1500 K, with a vacancy (1000 K), W51Be3 (600 K), W48Be6 (2500 K); hcp Be
  (72 atoms, a = 2.29 Å, c/a 1.57) at 300 and 900 K, with 2 vacancies, Be69W3 (600 K); liquid Be
  (melted 2 ps at 3000 K, NPT 0 bar, then NPT 1800 K).
  Larger sets (--out DIR): --frames-per-run N lengthens every main run; --starts K splits the
  main run of each condition with random sites (substitutions, antisites, vacancies, strain) and
  of each liquid over K starts of N/K frames, each with its own sites or melt and velocities
  (seeded "...:main<k>" for k > 0): solutes and antisites barely move at 600 K, so one start
  samples one arrangement of them while the independent run tests another, and a liquid run that
  leaves the teacher's domain early loses only that start's later frames. The last n_valid frames
  of the last start are valid.

Usage:
    python3 scripts/gen_data.py [--quick|--full|--hetero|--unstable|--alloys|--calib] [--seed 2024] [--out DIR]
        [--pool FILE] [--lmp PATH] [--potentials DIR] [--keep DIR] [--only li|almg|inp|wbe]
        [--frames-per-run N] [--starts K]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import label as L  # noqa: E402

FS = 0.001  # timestep in ps

# Per-mode parameters. Times in ps unless the name says steps.
MODES = {
    "quick": dict(
        li_melt=2.0, li_npt=3.0, li_nvt_eq=1.0, dense_ps=0.2, dense_every=10, sparse_ps=5.0,
        sparse_every=500, n_train=5, n_valid=2, test_ps=3.0, test_every=1000,
        nov_scale=0.4, nov_frames=2, almg_conditions=3, almg_eq=1.0, almg_frames=3,
        almg_every=300, almg_melt=1.5,
    ),
    "default": dict(
        li_melt=5.0, li_npt=10.0, li_nvt_eq=2.0, dense_ps=1.0, dense_every=10, sparse_ps=50.0,
        sparse_every=500, n_train=50, n_valid=10, test_ps=20.0, test_every=1000,
        nov_scale=1.0, nov_frames=5, almg_conditions=10, almg_eq=3.0, almg_frames=8,
        almg_every=500, almg_melt=3.0,
    ),
    "full": dict(
        li_melt=5.0, li_npt=10.0, li_nvt_eq=2.0, dense_ps=1.0, dense_every=10, sparse_ps=250.0,
        sparse_every=500, n_train=50, n_valid=10, test_ps=20.0, test_every=1000,
        nov_scale=1.0, nov_frames=5, almg_conditions=10, almg_eq=3.0, almg_frames=8,
        almg_every=500, almg_melt=3.0,
    ),
}

# --hetero: the novel-subset recipe with more frames per phase and interstitials (Li only).
HETERO = dict(
    nov_scale=1.0, nov_frames=16, strain_blocks=8, strain_frames=2, vacancies=[1, 2, 3],
    vac_frames=6, interstitials=[1, 2], int_frames=8, cluster_sizes=[13, 27, 40, 59],
    cluster_frames=4,
)

LI_A = 3.51  # BCC lattice constant of the start configuration (Å), MEAM Li's a0 is 3.509


def steps(ps: float) -> int:
    return int(round(ps / FS))


def log(msg: str) -> None:
    print(f"[gen_data {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# LAMMPS dumps -> frames


def read_dump(path: str, symbols_of_type: dict[int, str]) -> list[dict]:
    """Read a LAMMPS `custom id type x y z` dump (sorted by id); returns step, cell rows, pos."""
    out = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    i = 0
    while i < len(lines):
        if lines[i] != "ITEM: TIMESTEP":
            raise L.LabelError(f"{path}: unexpected line {i + 1}: {lines[i][:60]}")
        step = int(lines[i + 1])
        nat = int(lines[i + 3])
        hdr = lines[i + 4]
        b = [[float(x) for x in lines[i + 5 + k].split()] for k in range(3)]
        if "xy" in hdr:
            xy, xz, yz = b[0][2], b[1][2], b[2][2]
            xlo = b[0][0] - min(0.0, xy, xz, xy + xz)
            xhi = b[0][1] - max(0.0, xy, xz, xy + xz)
            ylo = b[1][0] - min(0.0, yz)
            yhi = b[1][1] - max(0.0, yz)
            zlo, zhi = b[2][0], b[2][1]
        else:
            xy = xz = yz = 0.0
            (xlo, xhi), (ylo, yhi), (zlo, zhi) = (r[:2] for r in b)
        cell = [[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]]
        if lines[i + 8].split()[:6] != ["ITEM:", "ATOMS", "id", "type", "x", "y"]:
            raise L.LabelError(f"{path}: unexpected atom columns '{lines[i + 8]}'")
        syms, pos = [], []
        for k in range(nat):
            t = lines[i + 9 + k].split()
            syms.append(symbols_of_type[int(t[1])])
            pos.append([float(t[2]) - xlo, float(t[3]) - ylo, float(t[4]) - zlo])
        out.append(dict(step=step, cell=cell, symbols=syms, positions=pos))
        i += 9 + nat
    return out


def quantize(fr: L.Frame) -> L.Frame:
    """Round positions (1e-6 Å) and cell (1e-8 Å) to what the file will hold, before labelling,
    so the labels belong exactly to the written geometry (relabelling a file reproduces it)."""
    fr.positions = [[float(L.fmt_num(x, 6)) for x in p] for p in fr.positions]
    if fr.cell is not None:
        fr.cell = [[float(L.cell_num(x)) for x in r] for r in fr.cell]
    return fr


def make_frame(d: dict, info: list[tuple[str, str]], pbc=(True, True, True), cell=True) -> L.Frame:
    fr = L.Frame(symbols=d["symbols"], positions=d["positions"], cell=d["cell"] if cell else None,
                 pbc=pbc)
    for k, v in info:
        fr.set_info(k, v)
    return quantize(fr)


@contextlib.contextmanager
def lammps_and_work(args):
    """The LAMMPS binary, its potentials folder and the work folder: --keep DIR, else a temporary
    one, removed when the mode is done."""
    lmp = L.find_lmp(args.lmp)
    pot = L.find_potentials(lmp, args.potentials)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        yield lmp, pot, args.keep
        return
    with tempfile.TemporaryDirectory(prefix="aceuq-gen-") as work:
        yield lmp, pot, work


def exits_on_label_error(mode):
    """A mode's exit code: its own, or 1 with the message when labelling or LAMMPS fails."""
    @functools.wraps(mode)
    def run(*a, **kw) -> int:
        try:
            return mode(*a, **kw)
        except L.LabelError as exc:
            print(f"gen_data.py: error: {exc}", file=sys.stderr)
            return 1
    return run


def run_job(lmp: str, script: str, work: str, name: str) -> tuple[str, float]:
    """Run one LAMMPS job in `work`; raises with the LAMMPS error on failure."""
    t0 = time.time()
    rc, text = L.run_lammps(lmp, script, work, log_name=f"{name}.log")
    dt = time.time() - t0
    if rc != 0:
        raise L.LabelError(f"LAMMPS job '{name}' failed (exit {rc}): {L.lammps_error_lines(text)}; "
                           f"see {os.path.join(work, name + '.log')} (use --keep DIR to keep it)")
    log(f"LAMMPS job {name}: {dt:.1f} s")
    return text, dt


HEADER = """units metal
atom_style atomic
atom_modify map array
neighbor 2.0 bin
neigh_modify every 1 delay 0 check yes
timestep {dt}
"""

LI_MEAM = "pair_style meam\npair_coeff * * {pot}/library.meam Li NULL Li\n"
ALMG_MEAM = ("pair_style meam\npair_coeff * * {pot}/library.meam AlS SiS MgS CuS FeS "
             "{pot}/AlSiMgCuFe.meam AlS MgS\n")


# ---------------------------------------------------------------------------------------------
# Li liquid runs


def li_liquid_script(p: dict, pot: str, seed: int, prefix: str, segments: list[tuple[str, float, int]]) -> str:
    """Melt, NPT-equilibrate, NVT production with one dump per segment (name, ps, every steps)."""
    npt_half = steps(p["li_npt"] / 2)
    s = HEADER.format(dt=FS) + f"""boundary p p p
lattice bcc {LI_A}
region cell block 0 5 0 5 0 5
create_box 1 cell
create_atoms 1 box
mass 1 6.94
{LI_MEAM.format(pot=pot)}
thermo 1000
thermo_style custom step temp pe press vol
velocity all create 1500 {seed} mom yes rot yes dist gaussian
fix md all nvt temp 1500 1500 0.1
run {steps(p['li_melt'])}
unfix md
fix md all npt temp 600 600 0.1 iso 0 0 1.0
run {npt_half}
reset_timestep 0
variable L equal lx
fix avel all ave/time 10 {npt_half // 10} {npt_half} v_L
run {npt_half}
variable s equal f_avel/lx
print "ACEUQ_NPT_MEAN_L $(f_avel:%.10f)"
change_box all x scale $s y scale $s z scale $s remap
unfix avel
unfix md
fix md all nvt temp 600 600 0.1
run {steps(p['li_nvt_eq'])}
reset_timestep 0
variable vol equal vol
compute msd all msd com yes
fix msdout all ave/time 100 1 100 c_msd[4] file {prefix}_msd.txt format " %.8g"
fix thout all ave/time 100 1 100 c_thermo_temp c_thermo_press v_vol file {prefix}_thermo.txt
"""
    for name, ps, every in segments:
        s += f"""dump {name} all custom {every} {prefix}_{name}.dump id type x y z
dump_modify {name} sort id format float %.8f
run {steps(ps)}
undump {name}
"""
    return s


def read_series(path: str) -> list[list[float]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            rows.append([float(x) for x in line.split()])
    return rows


def linfit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares line; returns slope, intercept, R^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 1.0
    return slope, my - slope * mx, r2


def diffusion(msd_path: str, thermo_path: str, nat: int) -> dict:
    """D from the MSD slope over t >= 1 ps (or the last 80 %), plus halves as a linearity check."""
    rows = read_series(msd_path)
    t = [r[0] * FS for r in rows]
    m = [r[1] for r in rows]
    tmax = t[-1]
    t0 = min(1.0, 0.2 * tmax)
    sel = [(a, b) for a, b in zip(t, m) if a >= t0]
    xs, ys = [a for a, _ in sel], [b for _, b in sel]
    slope, icpt, r2 = linfit(xs, ys)
    half = len(xs) // 2
    s1 = linfit(xs[:half], ys[:half])[0]
    s2 = linfit(xs[half:], ys[half:])[0]
    th = read_series(thermo_path)
    temp = sum(r[1] for r in th) / len(th)
    press = sum(r[2] for r in th) / len(th)
    vol = sum(r[3] for r in th) / len(th)
    # 1 Å^2/ps = 1e-4 cm^2/s
    return dict(
        D_A2_per_ps=slope / 6, D_cm2_per_s=slope / 6 * 1e-4, fit_window_ps=[t0, tmax],
        fit_R2=r2, D_first_half_A2_per_ps=s1 / 6, D_second_half_A2_per_ps=s2 / 6,
        msd_at_A2={f"{x:g}ps": y for x, y in zip(t, m) if x in (0.1, 1.0, 5.0, 10.0, 20.0, 50.0)}
        | {f"{tmax:g}ps": m[-1]},
        mean_T_K=temp, mean_P_bar=press, volume_per_atom_A3=vol / nat,
        density_g_cm3=nat * 6.94 / 6.02214076e23 / (vol * 1e-24),
    )


def liquid_frames(path: str, run: str) -> list[L.Frame]:
    """The frames of a Li liquid run's production dump (without its first, step-0 frame), tagged
    `liquid_600K`, with their time, step and run name."""
    frames = []
    for d in read_dump(path, {1: "Li"}):
        if d["step"] == 0:
            continue
        frames.append(make_frame(d, [("config_type", "liquid_600K"), ("time_ps", f"{d['step'] * FS:.3f}"),
                                     ("step", str(d["step"])), ("run", run)]))
    return frames


def li_liquid(p, lmp, pot, seed, work):
    rng = random.Random(seed)
    seed_main = rng.randrange(1, 900000)
    seed_test = rng.randrange(1, 900000)
    dense_steps = steps(p["dense_ps"])
    segs = [("dense", p["dense_ps"], p["dense_every"]), ("sparse", p["sparse_ps"], p["sparse_every"])]
    text, t_main = run_job(lmp, li_liquid_script(p, pot, seed_main, "main", segs), work, "li_main")
    segs_t = [("prod", p["test_ps"], p["test_every"])]
    text_t, t_test = run_job(lmp, li_liquid_script(p, pot, seed_test, "indep", segs_t), work, "li_indep")
    info = {"seed_main": seed_main, "seed_independent": seed_test, "lammps": L.lammps_version(text),
            "md_seconds_main": t_main, "md_seconds_independent": t_test}
    info["main"] = diffusion(os.path.join(work, "main_msd.txt"), os.path.join(work, "main_thermo.txt"), 250)
    info["independent"] = diffusion(os.path.join(work, "indep_msd.txt"),
                                    os.path.join(work, "indep_thermo.txt"), 250)
    types = {1: "Li"}
    pool = []
    for seg in ("dense", "sparse"):
        for d in read_dump(os.path.join(work, f"main_{seg}.dump"), types):
            if d["step"] == 0 or (seg == "sparse" and d["step"] <= dense_steps):
                continue  # the first frame of a segment repeats the last one of the previous
            pool.append(make_frame(d, [("config_type", "liquid_600K"), ("segment", seg),
                                       ("time_ps", f"{d['step'] * FS:.3f}"), ("step", str(d["step"])),
                                       ("run", "main")]))
    test = liquid_frames(os.path.join(work, "indep_prod.dump"), "independent")
    sparse = [f for f in pool if f.get_info("segment") == "sparse"]
    # train: every other sparse frame (1 ps apart with the default 0.5 ps stride), at most n_train,
    # spread over the whole segment; valid: n_valid of the remaining frames, evenly spaced.
    even = sparse[0::2]
    stride = max(1, math.ceil(len(even) / p["n_train"]))
    train = even[::stride][: p["n_train"]]
    odd = sparse[1::2]
    vstride = max(1, len(odd) // p["n_valid"])
    valid = odd[::vstride][: p["n_valid"]]
    return pool, train, valid, test, info


# ---------------------------------------------------------------------------------------------
# Li novel subsets


def bcc_frame(n: tuple[int, int, int], a: float) -> L.Frame:
    pos = []
    for i in range(n[0]):
        for j in range(n[1]):
            for k in range(n[2]):
                pos.append([i * a, j * a, k * a])
                pos.append([(i + 0.5) * a, (j + 0.5) * a, (k + 0.5) * a])
    cell = [[n[0] * a, 0.0, 0.0], [0.0, n[1] * a, 0.0], [0.0, 0.0, n[2] * a]]
    return L.Frame(symbols=["Li"] * len(pos), positions=pos, cell=cell, pbc=(True, True, True))


def li_novel(p, lmp, pot, seed, work, v_liquid):
    """Build each subset's start structures in Python, run MEAM MD blocks in one LAMMPS job."""
    rng = random.Random(seed + 17)
    nf = p["nov_frames"]
    sc = p["nov_scale"]
    eq = max(0.5, 2.0 * sc)  # ps of equilibration per block
    gap = 0.5  # ps between frames
    blocks = []  # (name, frame, boundary, fix-commands, T, nframes, post) ; post maps dump -> Frame

    def add(name, fr, bnd, fixcmd, temp, nframes, post, eq_ps=None, vel_T=None):
        blocks.append(dict(name=name, frame=fr, bnd=bnd, fix=fixcmd, T=temp, n=nframes, post=post,
                           eq=eq if eq_ps is None else eq_ps, velT=vel_T or temp))

    def periodic_post(fr_in, config, pbc=(True, True, True)):
        def post(d, box):
            qt = L._matT(box.q)
            pos = [L._matvec(qt, x) for x in d["positions"]]
            return make_frame(dict(symbols=d["symbols"], positions=pos, cell=fr_in.cell),
                              [("config_type", config)], pbc=pbc)
        return post

    # 1. cold BCC, NPT at 75 K.
    fr = bcc_frame((4, 4, 4), LI_A)
    add("bcc_cold_75K", fr, "p p p", "fix md all npt temp 75 75 0.1 iso 0 0 1.0", 75, nf,
        lambda d, box: make_frame(d, [("config_type", "bcc_cold_75K")]))
    # 2. strained BCC: a random symmetric strain (components up to 3 %) per block, 300 K NVT,
    # the cell then rotated by a random rotation so it is a general triclinic cell.
    for k in range(p.get("strain_blocks", max(2, nf + 1 if sc >= 1 else nf))):
        eps = [[0.0] * 3 for _ in range(3)]
        for i in range(3):
            eps[i][i] = rng.uniform(-0.03, 0.03)
            for j in range(i + 1, 3):
                eps[i][j] = eps[j][i] = rng.uniform(-0.03, 0.03)
        rot = L._rot_random(rng)
        m = L._matmul(rot, [[(1.0 if i == j else 0.0) + eps[i][j] for j in range(3)] for i in range(3)])
        base = bcc_frame((4, 4, 4), LI_A)
        fr = L.Frame(symbols=base.symbols, positions=[L._matvec(m, x) for x in base.positions],
                     cell=[L._matvec(m, r) for r in base.cell], pbc=(True, True, True))
        strain_txt = " ".join(f"{eps[i][j]:.5f}" for i in range(3) for j in range(3))

        def post(d, box, fr=fr, strain_txt=strain_txt):
            f = periodic_post(fr, "bcc_strained_300K")(d, box)
            f.set_info("strain", strain_txt)
            return f
        add(f"bcc_strained_{k}", fr, "p p p", "fix md all nvt temp 300 300 0.1", 300,
            p.get("strain_frames", 1), post, eq_ps=max(0.5, sc))
    # 3. vacancies: remove 1 or 3 random atoms.
    nvac_list = p.get("vacancies", [1, 3] if sc >= 1 else [2])
    for nvac in nvac_list:
        fr = bcc_frame((4, 4, 4), LI_A)
        gone = set(rng.sample(range(len(fr.symbols)), nvac))
        fr.positions = [x for i, x in enumerate(fr.positions) if i not in gone]
        fr.symbols = ["Li"] * len(fr.positions)
        cfg = "bcc_vacancy_300K"
        add(f"bcc_vacancy_{nvac}", fr, "p p p", "fix md all nvt temp 300 300 0.1", 300,
            p.get("vac_frames", max(1, (nf + 1) // len(nvac_list))),
            lambda d, box, cfg=cfg, nvac=nvac: make_frame(d, [("config_type", cfg), ("vacancies", str(nvac))]))
    # 3b. (--hetero only) self-interstitials: 1 or 2 extra atoms at tetrahedral sites
    # ((1/2, 1/4, 0) a, 1.96 Å from the nearest atoms) of distinct random cells; MEAM relaxes them
    # during the equilibration.
    for nint in p.get("interstitials", []):
        fr = bcc_frame((4, 4, 4), LI_A)
        cells = rng.sample([(i, j, k) for i in range(4) for j in range(4) for k in range(4)], nint)
        for (i, j, k) in cells:
            fr.positions.append([(i + 0.5) * LI_A, (j + 0.25) * LI_A, k * LI_A])
        fr.symbols = ["Li"] * len(fr.positions)
        cfg = "bcc_interstitial_300K"
        add(f"bcc_interstitial_{nint}", fr, "p p p", "fix md all nvt temp 300 300 0.1", 300,
            p["int_frames"],
            lambda d, box, cfg=cfg, nint=nint: make_frame(d, [("config_type", cfg),
                                                               ("interstitials", str(nint))]))
    # 4. (100) slab, 3x3x7 cells with 15 Å of vacuum; MD in the padded periodic box, written with
    # pbc T T F (the vacuum-padded Lattice kept).
    fr = bcc_frame((3, 3, 7), LI_A)
    fr.cell[2][2] += 15.0
    fr.positions = [[x, y, z + 7.5] for x, y, z in fr.positions]
    add("surface_100_300K", fr, "p p p", "fix md all nvt temp 300 300 0.1", 300, nf,
        lambda d, box: make_frame(d, [("config_type", "surface_100_300K")], pbc=(True, True, False)))
    # 5. clusters of 10-40 atoms cut from BCC as spheres around a random centre; MD with
    # shrink-wrapped boundaries, written without a cell.
    sizes = p.get("cluster_sizes", [13, 27, 40] if sc >= 1 else [15])
    for nat in sizes:
        big = bcc_frame((6, 6, 6), LI_A)
        c0 = [3 * LI_A + rng.uniform(-0.5, 0.5) for _ in range(3)]
        order = sorted(range(len(big.positions)),
                       key=lambda i: sum((big.positions[i][d] - c0[d]) ** 2 for d in range(3)))
        pos = [big.positions[i] for i in order[:nat]]
        fr = L.Frame(symbols=["Li"] * nat, positions=pos, cell=None, pbc=(False, False, False))
        add(f"cluster_{nat}", fr, "s s s", "fix md all nvt temp 300 300 0.1", 300,
            p.get("cluster_frames", max(1, (nf * 2) // len(sizes))),
            lambda d, box: make_frame(d, [("config_type", "cluster_300K")], pbc=(False, False, False),
                                      cell=False))
    # 6. compressed hot liquid: 128 atoms at 1/1.15 of the 600 K liquid volume per atom, melted at
    # 2000 K, sampled at 1000 K (NVT).
    a_c = (2.0 * v_liquid / 1.15) ** (1.0 / 3.0)
    fr = bcc_frame((4, 4, 4), a_c)
    add("liquid_compressed_1000K", fr, "p p p",
        "fix md all nvt temp 2000 2000 0.1\nrun {melt}\nunfix md\nfix md all nvt temp 1000 1000 0.1".format(
            melt=steps(max(1.0, 2.0 * sc))), 1000, nf,
        lambda d, box: make_frame(d, [("config_type", "liquid_compressed_1000K"),
                                      ("density_factor", "1.15")]), vel_T=2000)

    script = []
    boxes = []
    for bi, b in enumerate(blocks):
        box = L.to_lammps_box(b["frame"], pad=6.0)
        boxes.append(box)
        L.write_data_file(os.path.join(work, f"nov{bi}.data"), box, [1] * len(b["frame"].symbols), (6.94,))
        vseed = rng.randrange(1, 900000)
        every = steps(gap)
        script.append(HEADER.format(dt=FS) + f"""boundary {b['bnd']}
read_data nov{bi}.data
{LI_MEAM.format(pot=pot)}
thermo 500
velocity all create {b['velT']} {vseed} mom yes rot yes dist gaussian
{b['fix']}
run {steps(b['eq'])}
reset_timestep 0
dump d all custom {every} nov{bi}.dump id type x y z
dump_modify d sort id format float %.8f first no
run {every * b['n']}
""")
    text, dt = run_job(lmp, "clear\n".join(script), work, "li_novel")
    frames = []
    for bi, b in enumerate(blocks):
        ds = [d for d in read_dump(os.path.join(work, f"nov{bi}.dump"), {1: "Li"}) if d["step"] > 0]
        for d in ds:
            f = b["post"](d, boxes[bi])
            f.set_info("time_ps", f"{d['step'] * FS:.3f}")
            frames.append(f)
    return frames, dt


# ---------------------------------------------------------------------------------------------
# Al-Mg


ALMG_CONDITIONS = [
    # name, lattice, base type (1 Al, 2 Mg), fraction of the other type, T (K), liquid
    ("Al_fcc", "fcc", 1, 0.0, 300, False),
    ("Mg90Al10_hcp", "hcp", 2, 0.10, 600, False),
    ("Al70Mg30_liquid", "fcc", 1, 0.30, 1100, True),
    ("Al_fcc", "fcc", 1, 0.0, 600, False),
    ("Al93Mg7_fcc", "fcc", 1, 0.07, 300, False),
    ("Al93Mg7_fcc", "fcc", 1, 0.07, 600, False),
    ("Mg90Al10_hcp", "hcp", 2, 0.10, 300, False),
    ("Mg_hcp", "hcp", 2, 0.0, 300, False),
    ("Mg_hcp", "hcp", 2, 0.0, 600, False),
    ("Al50Mg50_liquid", "fcc", 1, 0.50, 1100, True),
]


def almg(p, lmp, pot, seed, work, run=None):
    """One MEAM MD run per Al-Mg condition (one LAMMPS job); the frames per condition. `run`, when
    given, is written into every frame's info (the --calib starts)."""
    rng = random.Random(seed + 31)
    script = []
    conds = ALMG_CONDITIONS[: p["almg_conditions"]]
    every = p["almg_every"]
    for ci, (name, lat, base, frac, temp, liquid) in enumerate(conds):
        vseed = rng.randrange(1, 900000)
        sseed = rng.randrange(1, 900000)
        if lat == "fcc":
            build = "lattice fcc 4.05\nregion cell block 0 3 0 3 0 4\n"  # 144 atoms
        else:
            build = "lattice hcp 3.21\nregion cell block 0 4 0 3 0 3\n"  # 144 atoms
        other = 2 if base == 1 else 1
        sub = f"set type {base} type/ratio {other} {frac} {sseed}\n" if frac > 0 else ""
        if liquid:
            pre = (f"velocity all create 2000 {vseed} mom yes rot yes dist gaussian\n"
                   f"fix md all npt temp 2000 2000 0.1 iso 0 0 1.0\nrun {steps(p['almg_melt'])}\n"
                   f"unfix md\nfix md all npt temp {temp} {temp} 0.1 iso 0 0 1.0\n")
        else:
            pre = (f"velocity all create {2 * temp} {vseed} mom yes rot yes dist gaussian\n"
                   f"fix md all npt temp {temp} {temp} 0.1 aniso 0 0 1.0\n")
        script.append(HEADER.format(dt=FS) + f"""boundary p p p
{build}create_box 2 cell
create_atoms {base} box
{sub}mass 1 26.9815
mass 2 24.305
{ALMG_MEAM.format(pot=pot)}
thermo 500
thermo_style custom step temp pe press vol
{pre}run {steps(p['almg_eq'])}
reset_timestep 0
dump d all custom {every} almg{ci}.dump id type x y z
dump_modify d sort id format float %.8f first no
run {every * p['almg_frames']}
""")
    text, dt = run_job(lmp, "clear\n".join(script), work, f"almg_{run}" if run else "almg")
    out = []
    for ci, (name, lat, base, frac, temp, liquid) in enumerate(conds):
        cfg = f"{name}_{temp}K"
        frames = []
        for d in read_dump(os.path.join(work, f"almg{ci}.dump"), {1: "Al", 2: "Mg"}):
            if d["step"] == 0:
                continue
            info = [("config_type", cfg), ("time_ps", f"{d['step'] * FS:.3f}"), ("step", str(d["step"]))]
            frames.append(make_frame(d, info + ([("run", run)] if run else [])))
        out.append(frames)
    return out, dt


def split_almg(groups: list[list[L.Frame]]) -> tuple[list, list, list]:
    """Per condition, in time order: test = the last quarter (at least 1), valid = 1 frame before
    those, train = the rest. Later frames are the most decorrelated from the training ones."""
    train, valid, test = [], [], []
    for g in groups:
        n = len(g)
        nt = max(1, n // 4)
        test += g[n - nt:]
        valid.append(g[n - nt - 1])
        train += g[: n - nt - 1]
    return train, valid, test


# ---------------------------------------------------------------------------------------------
# --unstable: Li configurations beyond the 600 K training liquid (hot, compressed, rattled,
# knock-on collisions, hot clusters), for testing upper (halt) uncertainty cutoffs.

# Each condition is one config_type. Times in ps; `frames` per condition; `every` ps between frames.
UNSTABLE = dict(
    eq=1.0,  # ps at the sampling temperature before the first frame
    melt=1.0,  # ps of melting at max(2000 K, T) for the liquids
    every=0.25,  # ps between frames of the thermostatted blocks
    # (density factor relative to the 600 K liquid of li/train.xyz, T in K, frames); 128 atoms
    compressed=[(1.1, 1000, 2), (1.15, 1000, 3), (1.2, 1500, 4), (1.25, 1500, 6), (1.3, 2000, 3),
                (1.4, 2500, 4)],
    # (T in K, frames); 54 atoms at the 600 K liquid density
    hot=[(2000, 4), (3000, 4), (4000, 3)],
    # (rms displacement in Å, frames): 54-atom BCC at 300 K (MEAM NVT), then each atom displaced
    # by an isotropic Gaussian vector of that rms length
    rattled=[(0.1, 2), (0.4, 4), (0.5, 4)],
    # (kinetic energy of the knocked atom in eV, frames): 128-atom BCC at 300 K, one atom given
    # that energy in a random direction, NVE with a 0.25 fs step, a frame every `knock_every` ps
    knock=[(3, 3), (10, 4)],
    knock_every=0.01,
    knock_dt=0.00025,
    # (atoms, T in K, frames): spheres cut from BCC, shrink-wrapped boundaries
    clusters=[(13, 800, 3), (20, 1500, 4), (27, 1000, 3), (40, 1200, 4)],
    # Teacher sanity: frames with two atoms closer than d_floor (Å) are not labelled (below about
    # 1.6 Å the SNAP's repulsion between an approaching pair stops growing: it is extrapolating);
    # frames whose SNAP labels have an atom with |F| above f_absurd (eV/Å) are dropped. The linear
    # SNAP of the same authors (li-snap-linear) is evaluated as a second opinion on every kept
    # frame and its disagreement recorded in the summary (not a filter).
    d_floor=1.6,
    f_absurd=50.0,
)


def min_distance(fr: L.Frame) -> float:
    """Smallest interatomic distance (Å), with periodic images along the periodic directions."""
    pos = fr.positions
    n = len(pos)
    if fr.cell is None or not any(fr.pbc):
        best = math.inf
        for i in range(n):
            xi = pos[i]
            for j in range(i + 1, n):
                d = (xi[0] - pos[j][0]) ** 2 + (xi[1] - pos[j][1]) ** 2 + (xi[2] - pos[j][2]) ** 2
                best = min(best, d)
        return math.sqrt(best)
    # Fractional coordinates (cell rows are the lattice vectors), minimum image by rounding along
    # periodic directions; for a non-orthogonal cell also the 26 neighbouring images (then exact
    # for any cell shape).
    a, b, c = fr.cell
    vol = L._dot(a, L._cross(b, c))
    rec = [[x / vol for x in L._cross(b, c)], [x / vol for x in L._cross(c, a)],
           [x / vol for x in L._cross(a, b)]]
    frac = [[L._dot(r, p) for r in rec] for p in pos]
    ortho = abs(L._dot(a, b)) + abs(L._dot(a, c)) + abs(L._dot(b, c)) < 1e-9
    shifts = [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
              if (fr.pbc[0] or i == 0) and (fr.pbc[1] or j == 0) and (fr.pbc[2] or k == 0)]
    if ortho:
        shifts = [(0, 0, 0)]
    per = [1.0 if q else 0.0 for q in fr.pbc]
    best = math.inf
    for i in range(n):
        fi = frac[i]
        for j in range(i + 1, n):
            fj = frac[j]
            d0, d1, d2 = fi[0] - fj[0], fi[1] - fj[1], fi[2] - fj[2]
            d0 -= per[0] * round(d0)
            d1 -= per[1] * round(d1)
            d2 -= per[2] * round(d2)
            for s0, s1, s2 in shifts:
                f0, f1, f2 = d0 + s0, d1 + s1, d2 + s2
                x = f0 * a[0] + f1 * b[0] + f2 * c[0]
                y = f0 * a[1] + f1 * b[1] + f2 * c[1]
                z = f0 * a[2] + f1 * b[2] + f2 * c[2]
                r2 = x * x + y * y + z * z
                if r2 < best:
                    best = r2
    return math.sqrt(best)


def li_unstable(p, lmp, pot, seed, work, v_liquid):
    """MEAM MD of every condition of `p` in one LAMMPS job; returns the (unlabelled) frames.

    Every condition draws its random numbers (velocity seed, knocked atom and direction, cluster
    centre, rattle) from its own generator, seeded with the seed and the config_type, so adding,
    removing or lengthening one condition leaves the frames of the others unchanged, and a
    condition with more frames extends the same trajectory.
    """
    blocks = []
    every = steps(p["every"])

    def add(cfg, rng, fr, bnd, prep, vel_t, every_steps, n, extra, dt=FS, rattle=0.0):
        blocks.append(dict(cfg=cfg, rng=rng, frame=fr, bnd=bnd, prep=prep, velT=vel_t,
                           every=every_steps, n=n, extra=extra, dt=dt, rattle=rattle))

    def melt_prep(temp):
        tm = max(2000, temp)
        return tm, (f"fix md all nvt temp {tm} {tm} 0.1\nrun {steps(p['melt'])}\nunfix md\n"
                    f"fix md all nvt temp {temp} {temp} 0.1\nrun {steps(p['eq'])}")

    # 1. compressed liquids: 4x4x4 BCC scaled to v_liquid / factor per atom, melted at
    # max(2000 K, T), then NVT at T.
    for fac, temp, n in p["compressed"]:
        cfg = f"liquid_compressed_{fac:g}x_{temp}K"
        tm, prep = melt_prep(temp)
        add(cfg, random.Random(f"{seed}:{cfg}"), bcc_frame((4, 4, 4), (2.0 * v_liquid / fac) ** (1 / 3)),
            "p p p", prep, tm, every, n, [("density_factor", f"{fac:g}")])
    # 2. hot liquids at the density of the 600 K liquid (54 atoms).
    for temp, n in p["hot"]:
        cfg = f"liquid_hot_{temp}K"
        tm, prep = melt_prep(temp)
        add(cfg, random.Random(f"{seed}:{cfg}"), bcc_frame((3, 3, 3), (2.0 * v_liquid) ** (1 / 3)),
            "p p p", prep, tm, every, n, [("density_factor", "1")])
    # 3. rattled BCC: 54-atom BCC at 300 K (MEAM NVT), frames 0.5 ps apart, then every atom
    # displaced by an isotropic Gaussian vector of rms length s (applied in Python).
    for s, n in p["rattled"]:
        cfg = f"bcc_rattled_{s:g}A"
        add(cfg, random.Random(f"{seed}:{cfg}"), bcc_frame((3, 3, 3), LI_A), "p p p",
            f"fix md all nvt temp 300 300 0.1\nrun {steps(p['eq'])}", 300, steps(0.5), n,
            [("rattle_rms_A", f"{s:g}")], rattle=s)
    # 4. knock-on: one atom of a 128-atom BCC crystal at 300 K gets e eV in a random direction,
    # then NVE with a short step; frames every knock_every ps from the kick on.
    for e, n in p["knock"]:
        cfg = f"knock_on_{e:g}eV"
        rng = random.Random(f"{seed}:{cfg}")
        k = rng.randrange(128) + 1
        u = [rng.gauss(0.0, 1.0) for _ in range(3)]
        nu = math.sqrt(sum(x * x for x in u))
        v = math.sqrt(2.0 * e / 6.94 * 9648.5332)  # Å/ps (1 eV/amu = 9648.5332 Å^2/ps^2)
        vel = [v * x / nu for x in u]
        prep = (f"fix md all nvt temp 300 300 0.1\nrun {steps(p['eq'])}\nunfix md\n"
                f"group pka id {k}\n"
                f"velocity pka set {vel[0]:.8f} {vel[1]:.8f} {vel[2]:.8f} units box\n"
                f"timestep {p['knock_dt']}\nfix md all nve")
        add(cfg, rng, bcc_frame((4, 4, 4), LI_A), "p p p", prep, 300,
            int(round(p["knock_every"] / p["knock_dt"])), n, [("pka_eV", f"{e:g}"), ("pka_id", str(k))],
            dt=p["knock_dt"])
    # 5. hot clusters: spheres cut from BCC around a random centre, NVT at T, shrink-wrapped
    # boundaries, written without a cell.
    for nat, temp, n in p["clusters"]:
        cfg = f"cluster_{nat}_{temp}K"
        rng = random.Random(f"{seed}:{cfg}")
        big = bcc_frame((6, 6, 6), LI_A)
        c0 = [3 * LI_A + rng.uniform(-0.5, 0.5) for _ in range(3)]
        order = sorted(range(len(big.positions)),
                       key=lambda i: sum((big.positions[i][d] - c0[d]) ** 2 for d in range(3)))
        fr = L.Frame(symbols=["Li"] * nat, positions=[big.positions[i] for i in order[:nat]],
                     cell=None, pbc=(False, False, False))
        add(cfg, rng, fr, "s s s", f"fix md all nvt temp {temp} {temp} 0.1\nrun {steps(p['eq'])}",
            temp, every, n, [])

    script = []
    for bi, b in enumerate(blocks):
        box = L.to_lammps_box(b["frame"], pad=6.0)
        L.write_data_file(os.path.join(work, f"uns{bi}.data"), box, [1] * len(b["frame"].symbols),
                          (6.94,))
        vseed = b["rng"].randrange(1, 900000)
        script.append(HEADER.format(dt=FS) + f"""boundary {b['bnd']}
read_data uns{bi}.data
{LI_MEAM.format(pot=pot)}
thermo 500
velocity all create {b['velT']} {vseed} mom yes rot yes dist gaussian
{b['prep']}
reset_timestep 0
dump d all custom {b['every']} uns{bi}.dump id type x y z
dump_modify d sort id format float %.8f first no
run {b['every'] * b['n']}
""")
    text, dt = run_job(lmp, "clear\n".join(script), work, "li_unstable")
    frames = []
    for bi, b in enumerate(blocks):
        cluster = b["bnd"] == "s s s"
        for d in read_dump(os.path.join(work, f"uns{bi}.dump"), {1: "Li"}):
            if d["step"] == 0:
                continue
            if b["rattle"] > 0:
                sig = b["rattle"] / math.sqrt(3.0)
                d["positions"] = [[x + b["rng"].gauss(0.0, sig) for x in q] for q in d["positions"]]
            f = make_frame(d, [("config_type", b["cfg"])] + b["extra"],
                           pbc=(False, False, False) if cluster else (True, True, True),
                           cell=not cluster)
            f.set_info("time_ps", f"{d['step'] * b['dt']:.4f}")
            frames.append(f)
    return frames, dt, L.lammps_version(text)


# Al-Mg beyond the training conditions (Jelinek MEAM samples and labels). Each entry of `npt` is
# (name, lattice, base type (1 Al, 2 Mg), fraction of the other type, T in K, P in bar, liquid,
# frames): NPT (iso for liquids, aniso for solids), liquids melted at max(2000 K, T) first.
# `rattled`: (name, lattice, base type, fraction, rms displacement in Å, frames) from NVT 300 K.
# `knock`: (kinetic energy in eV, frames) of one atom of 108-atom fcc Al at 300 K, NVE.
ALMG_UNSTABLE = dict(
    eq=1.5,
    melt=2.0,
    every=0.25,
    npt=[
        ("Al_fcc", "fcc", 1, 0.0, 900, 0, False, 3),
        ("Mg_hcp", "hcp", 2, 0.0, 900, 0, False, 3),
        ("Mg90Al10_hcp", "hcp", 2, 0.10, 300, 50000, False, 3),
        ("Al80Mg20_fcc", "fcc", 1, 0.20, 800, 0, False, 2),
        ("Al50Mg50_liquid", "fcc", 1, 0.50, 1500, 0, True, 2),
        ("Al50Mg50_liquid", "fcc", 1, 0.50, 1100, 50000, True, 2),
    ],
    rattled=[
        ("Al_fcc", "fcc", 1, 0.0, 0.05, 3),
        ("Al_fcc", "fcc", 1, 0.0, 0.15, 3),
        ("Mg_hcp", "hcp", 2, 0.0, 0.1, 3),
        ("Al93Mg7_fcc", "fcc", 1, 0.07, 0.2, 1),
    ],
    knock=[(5, 2)],
    knock_every=0.01,
    knock_dt=0.00025,
    d_floor=1.8,
    f_absurd=50.0,
)


def almg_unstable(p, lmp, pot, seed, work):
    """MEAM MD of the Al-Mg conditions of `p` in one LAMMPS job (own generator per condition)."""
    blocks = []
    for name, lat, base, frac, temp, press, liquid, n in p["npt"]:
        cfg = f"{name}_{temp}K" + (f"_{press / 10000:g}GPa" if press else "")
        if liquid:
            tm = max(2000, temp)
            prep = (f"fix md all npt temp {tm} {tm} 0.1 iso 0 0 1.0\nrun {steps(p['melt'])}\nunfix md\n"
                    f"fix md all npt temp {temp} {temp} 0.1 iso {press} {press} 1.0\n"
                    f"run {steps(p['eq'])}")
            vt = tm
        else:
            prep = f"fix md all npt temp {temp} {temp} 0.1 aniso {press} {press} 1.0\nrun {steps(p['eq'])}"
            vt = 2 * temp
        blocks.append(dict(cfg=cfg, lat=lat, base=base, frac=frac, prep=prep, velT=vt,
                           every=steps(p["every"]), n=n, rattle=0.0, dt=FS,
                           extra=[("pressure_GPa", f"{press / 10000:g}")] if press else []))
    for name, lat, base, frac, s, n in p["rattled"]:
        cfg = f"{name}_rattled_{s:g}A"
        blocks.append(dict(cfg=cfg, lat=lat, base=base, frac=frac,
                           prep=f"fix md all nvt temp 300 300 0.1\nrun {steps(p['eq'])}", velT=600,
                           every=steps(0.5), n=n, rattle=s, dt=FS, extra=[("rattle_rms_A", f"{s:g}")]))
    for e, n in p["knock"]:
        cfg = f"Al_fcc_knock_on_{e:g}eV"
        blocks.append(dict(cfg=cfg, lat="fcc", base=1, frac=0.0, knock=e, velT=600,
                           every=int(round(p["knock_every"] / p["knock_dt"])), n=n, rattle=0.0,
                           dt=p["knock_dt"], extra=[("pka_eV", f"{e:g}")]))
    script = []
    for bi, b in enumerate(blocks):
        rng = b["rng"] = random.Random(f"{seed}:{b['cfg']}")
        vseed = rng.randrange(1, 900000)
        sseed = rng.randrange(1, 900000)
        if b["lat"] == "fcc":
            build = "lattice fcc 4.05\nregion cell block 0 3 0 3 0 3\n"  # 108 atoms
            nat = 108
        else:
            build = "lattice hcp 3.21\nregion cell block 0 4 0 2 0 3\n"  # 96 atoms
            nat = 96
        other = 2 if b["base"] == 1 else 1
        sub = f"set type {b['base']} type/ratio {other} {b['frac']} {sseed}\n" if b["frac"] > 0 else ""
        if "knock" in b:
            k = rng.randrange(nat) + 1
            u = [rng.gauss(0.0, 1.0) for _ in range(3)]
            nu = math.sqrt(sum(x * x for x in u))
            v = math.sqrt(2.0 * b["knock"] / 26.9815 * 9648.5332)
            vel = [v * x / nu for x in u]
            b["extra"].append(("pka_id", str(k)))
            b["prep"] = (f"fix md all nvt temp 300 300 0.1\nrun {steps(p['eq'])}\nunfix md\n"
                         f"group pka id {k}\n"
                         f"velocity pka set {vel[0]:.8f} {vel[1]:.8f} {vel[2]:.8f} units box\n"
                         f"timestep {p['knock_dt']}\nfix md all nve")
        script.append(HEADER.format(dt=FS) + f"""boundary p p p
{build}create_box 2 cell
create_atoms {b['base']} box
{sub}mass 1 26.9815
mass 2 24.305
{ALMG_MEAM.format(pot=pot)}
thermo 500
velocity all create {b['velT']} {vseed} mom yes rot yes dist gaussian
{b['prep']}
reset_timestep 0
dump d all custom {b['every']} auns{bi}.dump id type x y z
dump_modify d sort id format float %.8f first no
run {b['every'] * b['n']}
""")
    text, dt = run_job(lmp, "clear\n".join(script), work, "almg_unstable")
    frames = []
    for bi, b in enumerate(blocks):
        for d in read_dump(os.path.join(work, f"auns{bi}.dump"), {1: "Al", 2: "Mg"}):
            if d["step"] == 0:
                continue
            if b["rattle"] > 0:
                sig = b["rattle"] / math.sqrt(3.0)
                d["positions"] = [[x + b["rng"].gauss(0.0, sig) for x in q] for q in d["positions"]]
            f = make_frame(d, [("config_type", b["cfg"])] + b["extra"])
            f.set_info("time_ps", f"{d['step'] * b['dt']:.4f}")
            frames.append(f)
    return frames, dt, L.lammps_version(text)


@exits_on_label_error
def main_unstable(args, argv) -> int:
    """--unstable: beyond the training conditions (Li: MEAM MD, li-snap labels, linear-SNAP second
    opinion; Al-Mg: Jelinek MEAM MD and labels), with the sanity filters of UNSTABLE and
    ALMG_UNSTABLE. Writes OUT/li/unstable.xyz and OUT/almg/unstable.xyz (OUT: --out, default
    tests/data), each with an unstable_summary.json beside it; --only li|almg for one system."""
    root = L.REPO_ROOT
    data = args.out or os.path.join(root, "tests", "data")
    cmd_args = argv if argv is not None else sys.argv[1:]
    with lammps_and_work(args) as (lmp, pot, work):
        for system in ("li", "almg"):
            if args.only not in (None, system):
                continue
            t_start = time.time()
            p = UNSTABLE if system == "li" else ALMG_UNSTABLE
            summary = {"mode": "unstable", "system": system, "seed": args.seed, "params": p,
                       "command": recorded_command(cmd_args)}
            # Offset the Python seed (like --hetero's +1000) so no geometry repeats another set.
            if system == "li":
                v_liq = train_volume_per_atom(os.path.join(root, "tests", "data", "li", "train.xyz"))
                summary["liquid_volume_per_atom_A3"] = v_liq
                log(f"unstable Li MEAM MD, seed {args.seed}, liquid volume {v_liq:.3f} A^3/atom")
                frames, t_md, version = li_unstable(p, lmp, pot, args.seed + 2000, work, v_liq)
                labeller, second, what = "li-snap", "li-snap-linear", "SNAP"
            else:
                log(f"unstable Al-Mg MEAM MD, seed {args.seed}")
                frames, t_md, version = almg_unstable(p, lmp, pot, args.seed + 2000, work)
                labeller, second, what = "almg-meam", None, "MEAM"
            summary["lammps"] = version
            summary["md_seconds"] = t_md
            dropped = []
            keep = []
            for f in frames:
                dmin = min_distance(f)
                f.set_info("d_min", f"{dmin:.4f}")
                if dmin < p["d_floor"]:
                    dropped.append(dict(config_type=f.get_info("config_type"),
                                        time_ps=f.get_info("time_ps"), d_min=round(dmin, 4),
                                        reason=f"d_min below {p['d_floor']} A"))
                else:
                    keep.append(f)
            t0 = time.time()
            L.label_frames(keep, labeller, lmp, pot)
            summary["label_seconds"] = time.time() - t0
            log(f"labelled {len(keep)} frames with {labeller} in {summary['label_seconds']:.1f} s")
            final = []
            for f in keep:
                fmax = max(math.sqrt(sum(c * c for c in v)) for v in f.forces)
                if not fmax <= p["f_absurd"]:
                    dropped.append(dict(config_type=f.get_info("config_type"),
                                        time_ps=f.get_info("time_ps"),
                                        d_min=float(f.get_info("d_min")), fmax=round(fmax, 3),
                                        reason=f"{what} max |F| above {p['f_absurd']} eV/A"))
                else:
                    final.append(f)
            summary["dropped"] = dropped
            for dr in dropped:
                log(f"dropped {dr['config_type']} t={dr['time_ps']} ps: {dr['reason']} "
                    f"(d_min {dr['d_min']})")
            per_frame = [dict(config_type=f.get_info("config_type"),
                              time_ps=float(f.get_info("time_ps")), atoms=len(f.symbols),
                              d_min=float(f.get_info("d_min")),
                              max_abs_F=round(max(math.sqrt(sum(c * c for c in v)) for v in f.forces), 4))
                         for f in final]
            if second:
                # Second opinion: the linear SNAP of the same paper on copies of the kept frames.
                t0 = time.time()
                twins = [L.Frame(symbols=list(f.symbols), positions=[list(x) for x in f.positions],
                                 cell=None if f.cell is None else [list(r) for r in f.cell], pbc=f.pbc)
                         for f in final]
                L.label_frames(twins, second, lmp, pot)
                summary["second_opinion_seconds"] = time.time() - t0
                for r, f, g in zip(per_frame, final, twins):
                    r["linear_snap_max_abs_dF"] = round(max(
                        math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v)))
                        for u, v in zip(f.forces, g.forces)), 4)
                    r["linear_snap_dE_per_atom"] = round((g.energy - f.energy) / len(f.symbols), 5)
            summary["per_frame"] = per_frame
            out = os.path.join(data, system)
            os.makedirs(out, exist_ok=True)
            path = os.path.join(out, "unstable.xyz")
            L.write_extxyz_atomic(path, final)
            st = stats(final)
            for k, fs in st.items():
                dm = [float(f.get_info("d_min")) for f in final if f.get_info("config_type") == k]
                fs["d_min"] = [min(dm), max(dm)]
            summary["files"] = {os.path.relpath(path, root): dict(
                frames=len(final), atoms=sum(len(f.symbols) for f in final),
                bytes=os.path.getsize(path), stats=st)}
            log(f"wrote {os.path.relpath(path, root)}: {len(final)} frames, "
                f"{os.path.getsize(path) / 1024:.0f} KiB")
            summary["total_seconds"] = time.time() - t_start
            with open(os.path.join(out, "unstable_summary.json"), "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=1, ensure_ascii=False)
            log(f"{system} done in {summary['total_seconds']:.0f} s")
        return 0


# ---------------------------------------------------------------------------------------------
# --alloys: two-element DFT-trained SNAP+ZBL potentials (In-P, W-Be). The same potential samples
# (LAMMPS MD) and labels (label.py), so there is no sampler/labeller mismatch; what has to be
# watched is the potential's own domain (see the sanity filters of ALLOYS).

# Each system: labeller, timestep per condition (ps), equilibration `eq` (ps) after the
# velocity draw, `every` (ps) between frames, frames of the main run (`n_main`,
# the last `n_valid` of them are valid, the others train) and of the independent run (`n_test`,
# test), and the sanity filters: `d_floor` (Å, smallest allowed interatomic distance),
# `isolated` (Å, an atom whose nearest neighbour is farther is detached), `e_window` (eV/atom,
# allowed range of E/atom minus that of the run's start structure, unrelaxed: a minimisation
# can itself fall into a hole of the potential), `v_window`
# (allowed range of the volume per atom over that of the start cell), `f_absurd` (eV/Å). A frame
# that fails one of them is dropped together with every later frame of the same run (the
# trajectory has left the potential's domain); a run that LAMMPS aborts (e.g. lost atoms) loses
# all its frames, and a condition whose main run lost all its frames loses its test frames too. Conditions: config_type, lattice (kind, cells, a[, c/a]), temperature (K),
# ensemble (`npt`: Nose-Hoover, 0 bar, aniso; `nvt`: fixed cell), and optionally `dt`, `vac`
# (species -> number of random vacancies), `sub` ((from, to, number) random substitutions),
# `antisite` (random pairs of the two species swapped), `strain` (each component of a random
# symmetric strain uniform in +-strain; a new strain per run), `melt` ((T, ps[, "npt"]): NVT at
# T in the start cell, or NPT 0 bar iso, before the (iso) NPT at the sampling temperature).
# In-P has no liquid here: this SNAP+ZBL collapses once its crystal melts (tests/data/README.md).
ALLOYS = {
    "inp": dict(
        labeller="inp-snap",
        dt=0.002, eq=0.8, every=0.2, n_main=8, n_valid=2, n_test=3,
        d_floor=1.9, isolated=4.0, e_window=(-0.3, 1.2), v_window=(0.8, 1.3), f_absurd=30.0,
        conditions=[
            dict(cfg="zb_300K", lattice=("zincblende", (2, 2, 2), 5.83), T=300, ens="npt"),
            dict(cfg="zb_600K", lattice=("zincblende", (2, 2, 2), 5.83), T=600, ens="npt"),
            dict(cfg="zb_900K", lattice=("zincblende", (2, 2, 2), 5.83), T=900, ens="npt"),
            dict(cfg="zb_strained_600K", lattice=("zincblende", (2, 2, 2), 5.83), T=600, ens="nvt",
                 strain=0.03),
            dict(cfg="zb_vacancy_600K", lattice=("zincblende", (2, 2, 2), 5.83), T=600, ens="npt",
                 vac={"In": 1, "P": 1}),
            dict(cfg="zb_antisite_600K", lattice=("zincblende", (2, 2, 2), 5.83), T=600, ens="npt",
                 antisite=1),
            dict(cfg="zb_In34P30_600K", lattice=("zincblende", (2, 2, 2), 5.83), T=600, ens="npt",
                 sub=[("P", "In", 2)]),
            dict(cfg="zb_In30P34_600K", lattice=("zincblende", (2, 2, 2), 5.83), T=600, ens="npt",
                 sub=[("In", "P", 2)]),
            dict(cfg="zb_1200K", lattice=("zincblende", (2, 2, 2), 5.83), T=1200, ens="npt"),
        ],
    ),
    # W-Be's floor: scripts/pair_scan.py finds the teacher smoothly repulsive for Be-Be, W-Be and
    # W-W pairs down to 1.05 A; a Be-Be pair at 1.5 A costs 1.6 eV (10 kT at 1800 K), at 1.7 A
    # 0.4 eV, which the liquid reaches in ordinary runs (the earlier 1.7 A floor dropped them).
    "wbe": dict(
        labeller="wbe-snap",
        dt=0.001, eq=0.6, every=0.15, n_main=8, n_valid=2, n_test=3,
        d_floor=1.5, isolated=4.0, e_window=(-0.3, 1.2), v_window=(0.8, 1.3), f_absurd=30.0,
        conditions=[
            dict(cfg="W_bcc_300K", lattice=("bcc", (3, 3, 3), 3.18, "W"), T=300, ens="npt",
                 dt=0.002),
            dict(cfg="W_bcc_1500K", lattice=("bcc", (3, 3, 3), 3.18, "W"), T=1500, ens="npt",
                 dt=0.002),
            dict(cfg="W_bcc_vacancy_1000K", lattice=("bcc", (3, 3, 3), 3.18, "W"), T=1000,
                 ens="npt", dt=0.002, vac={"W": 1}),
            dict(cfg="W51Be3_bcc_600K", lattice=("bcc", (3, 3, 3), 3.18, "W"), T=600, ens="npt",
                 sub=[("W", "Be", 3)]),
            dict(cfg="Be_hcp_300K", lattice=("hcp", (3, 2, 3), 2.29, "Be", 1.57), T=300, ens="npt"),
            dict(cfg="Be_hcp_900K", lattice=("hcp", (3, 2, 3), 2.29, "Be", 1.57), T=900, ens="npt"),
            dict(cfg="Be_hcp_vacancy_600K", lattice=("hcp", (3, 2, 3), 2.29, "Be", 1.57), T=600,
                 ens="npt", vac={"Be": 2}),
            dict(cfg="Be69W3_hcp_600K", lattice=("hcp", (3, 2, 3), 2.29, "Be", 1.57), T=600,
                 ens="npt", sub=[("Be", "W", 3)]),
            dict(cfg="W48Be6_bcc_2500K", lattice=("bcc", (3, 3, 3), 3.18, "W"), T=2500, ens="npt",
                 sub=[("W", "Be", 6)]),
            dict(cfg="Be_liquid_1800K", lattice=("hcp", (3, 2, 3), 2.29, "Be", 1.57), T=1800,
                 ens="npt", melt=(3000, 2.0, "npt")),
        ],
    ),
}


def lattice_frame(spec: tuple) -> L.Frame:
    """A periodic crystal: ("zincblende", cells, a) In/P; ("bcc", cells, a, el);
    ("b2", cells, a, corner, centre); ("hcp", cells, a, el, c/a) in orthohexagonal cells
    (a x sqrt(3) a x c, 4 atoms each)."""
    kind, n, a = spec[0], spec[1], spec[2]
    if kind == "zincblende":
        fcc = ((0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0))
        basis = [("In", o) for o in fcc] + [("P", tuple(x + 0.25 for x in o)) for o in fcc]
        lengths = (a, a, a)
    elif kind == "bcc":
        basis = [(spec[3], (0, 0, 0)), (spec[3], (0.5, 0.5, 0.5))]
        lengths = (a, a, a)
    elif kind == "b2":
        basis = [(spec[3], (0, 0, 0)), (spec[4], (0.5, 0.5, 0.5))]
        lengths = (a, a, a)
    elif kind == "hcp":
        basis = [(spec[3], o) for o in ((0, 0, 0), (0.5, 0.5, 0), (0.5, 5 / 6, 0.5), (0, 1 / 3, 0.5))]
        lengths = (a, math.sqrt(3) * a, spec[4] * a)
    else:
        raise ValueError(kind)
    sym, pos = [], []
    for i in range(n[0]):
        for j in range(n[1]):
            for k in range(n[2]):
                for el, o in basis:
                    sym.append(el)
                    pos.append([(i + o[0]) * lengths[0], (j + o[1]) * lengths[1], (k + o[2]) * lengths[2]])
    cell = [[n[0] * lengths[0], 0.0, 0.0], [0.0, n[1] * lengths[1], 0.0], [0.0, 0.0, n[2] * lengths[2]]]
    return L.Frame(symbols=sym, positions=pos, cell=cell, pbc=(True, True, True))


def alloy_start(cond: dict, species: tuple[str, str], rng: random.Random) -> tuple[L.Frame, list]:
    """The start structure of one run of a condition: lattice, then antisites, substitutions,
    vacancies and strain drawn from `rng`; returns the frame and the info keys to record."""
    fr = lattice_frame(cond["lattice"])
    extra = []
    for _ in range(cond.get("antisite", 0)):
        a = rng.choice([i for i, s in enumerate(fr.symbols) if s == species[0]])
        b = rng.choice([i for i, s in enumerate(fr.symbols) if s == species[1]])
        fr.symbols[a], fr.symbols[b] = species[1], species[0]
    if cond.get("antisite"):
        extra.append(("antisites", str(cond["antisite"])))
    for src, dst, k in cond.get("sub", []):
        for i in rng.sample([i for i, s in enumerate(fr.symbols) if s == src], k):
            fr.symbols[i] = dst
    gone = set()
    for el, k in sorted(cond.get("vac", {}).items()):
        gone |= set(rng.sample([i for i, s in enumerate(fr.symbols) if s == el], k))
    if gone:
        fr.symbols = [s for i, s in enumerate(fr.symbols) if i not in gone]
        fr.positions = [x for i, x in enumerate(fr.positions) if i not in gone]
        extra.append(("vacancies", str(len(gone))))
    if cond.get("strain"):
        s = cond["strain"]
        eps = [[0.0] * 3 for _ in range(3)]
        for i in range(3):
            eps[i][i] = rng.uniform(-s, s)
            for j in range(i + 1, 3):
                eps[i][j] = eps[j][i] = rng.uniform(-s, s)
        m = [[(1.0 if i == j else 0.0) + eps[i][j] for j in range(3)] for i in range(3)]
        fr.positions = [L._matvec(m, x) for x in fr.positions]
        fr.cell = [L._matvec(m, r) for r in fr.cell]
        extra.append(("strain", " ".join(f"{eps[i][j]:.5f}" for i in range(3) for j in range(3))))
    return fr, extra


def nearest_distances(fr: L.Frame) -> list[float]:
    """Per atom, the distance (Å) to its nearest other atom (periodic images included; the atom's
    own images count too, as in min_distance)."""
    pos = fr.positions
    n = len(pos)
    a, b, c = fr.cell
    vol = L._dot(a, L._cross(b, c))
    rec = [[x / vol for x in L._cross(b, c)], [x / vol for x in L._cross(c, a)],
           [x / vol for x in L._cross(a, b)]]
    frac = [[L._dot(r, p) for r in rec] for p in pos]
    ortho = abs(L._dot(a, b)) + abs(L._dot(a, c)) + abs(L._dot(b, c)) < 1e-9
    shifts = [(0, 0, 0)] if ortho else [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1)
                                        for k in (-1, 0, 1)]
    own = min(_norm_rows(fr.cell))
    best = [own * own] * n
    for i in range(n):
        fi = frac[i]
        for j in range(i + 1, n):
            fj = frac[j]
            d0, d1, d2 = fi[0] - fj[0], fi[1] - fj[1], fi[2] - fj[2]
            d0 -= round(d0)
            d1 -= round(d1)
            d2 -= round(d2)
            for s0, s1, s2 in shifts:
                f0, f1, f2 = d0 + s0, d1 + s1, d2 + s2
                x = f0 * a[0] + f1 * b[0] + f2 * c[0]
                y = f0 * a[1] + f1 * b[1] + f2 * c[1]
                z = f0 * a[2] + f1 * b[2] + f2 * c[2]
                r2 = x * x + y * y + z * z
                if r2 < best[i]:
                    best[i] = r2
                if r2 < best[j]:
                    best[j] = r2
    return [math.sqrt(x) for x in best]


def _norm_rows(m):
    return [L._norm(r) for r in m]


def alloy_run(system: str, p: dict, cond: dict, run: str, seed: int, lmp: str, pot: str,
              work: str, start: int = 0, nframes: int | None = None) -> dict:
    """One MD run (main or independent) of one condition in its own LAMMPS process. Returns the
    unlabelled frames in time order and what the run reported (start energy, averages at the frames,
    mean squared displacement, timing, or the LAMMPS error). `start` > 0 draws another start
    structure (other random sites and velocities) for a main run split over several starts, and
    `nframes` overrides the run's frame count."""
    lab = L.LABELLERS[p["labeller"]]
    cfg = cond["cfg"]
    rng = random.Random(f"{seed}:{cfg}:{run}" + (str(start) if start else ""))
    fr, extra = alloy_start(cond, lab.species, rng)
    if start:
        extra.append(("start", str(start)))
    nat = len(fr.symbols)
    tag = f"{system}_{cfg}_{run}" + (str(start) if start else "")
    box = L.to_lammps_box(fr, pad=6.0)
    L.write_data_file(os.path.join(work, f"{tag}.data"), box,
                      [lab.species.index(s) + 1 for s in fr.symbols], lab.masses)
    dt = cond.get("dt", p["dt"])
    every = int(round(p["every"] / dt))
    n = nframes if nframes is not None else (p["n_main"] if run == "main" else p["n_test"])
    temp = cond["T"]
    vseed = rng.randrange(1, 900000)
    fix = (f"fix md all npt temp {temp} {temp} 0.1 aniso 0 0 1.0" if cond["ens"] == "npt"
           else f"fix md all nvt temp {temp} {temp} 0.1")
    if "melt" in cond:
        tm, ps = cond["melt"][:2]
        mfix = (f"npt temp {tm} {tm} 0.1 iso 0 0 1.0" if cond["melt"][2:] == ("npt",)
                else f"nvt temp {tm} {tm} 0.1")
        prep = (f"velocity all create {tm} {vseed} mom yes rot yes dist gaussian\n"
                f"fix md all {mfix}\nrun {int(round(ps / dt))}\nunfix md\n"
                f"{fix.replace('aniso', 'iso')}\n")
    else:
        prep = f"velocity all create {2 * temp} {vseed} mom yes rot yes dist gaussian\n{fix}\n"
    pair = "\n".join(c.format(pot=pot) for c in lab.commands)
    nprod = every * n
    script = HEADER.format(dt=dt) + f"""boundary p p p
read_data {tag}.data
{pair}
thermo 100
thermo_style custom step temp pe press vol
run 0
print "ACEUQ_EREF $(pe/atoms:%.10f) $(vol/atoms:%.10f)"
reset_timestep 0
{prep}run {int(round(p['eq'] / dt))}
reset_timestep 0
compute msd all msd com yes
variable pea equal pe/atoms
variable vpa equal vol/atoms
fix avg all ave/time {every} {n} {nprod} c_thermo_temp c_thermo_press v_vpa v_pea
dump d all custom {every} {tag}.dump id type x y z
dump_modify d sort id format float %.8f first no
run {nprod}
print "ACEUQ_AVG $(f_avg[1]:%.4f) $(f_avg[2]:%.4f) $(f_avg[3]:%.6f) $(f_avg[4]:%.6f) $(c_msd[4]:%.6f)"
"""
    t0 = time.time()
    rc, text = L.run_lammps(lmp, script, work, log_name=f"{tag}.log")
    secs = time.time() - t0
    res = dict(run=run, atoms=nat, seconds=round(secs, 1), velocity_seed=vseed, lammps=L.lammps_version(text))
    for line in text.splitlines():
        if line.startswith("ACEUQ_EREF"):
            e, v = line.split()[1:3]
            res["e_start_per_atom"], res["v_start_per_atom"] = float(e), float(v)
        if line.startswith("ACEUQ_AVG"):
            t = [float(x) for x in line.split()[1:]]
            res.update(mean_T_K=t[0], mean_P_bar=t[1], mean_volume_per_atom_A3=t[2],
                       mean_pe_per_atom_eV=t[3], msd_A2=t[4], msd_over_ps=round(nprod * dt, 4))
    if rc != 0:
        res["lammps_error"] = L.lammps_error_lines(text)
    log(f"{system} {cfg} {run}{f' start {start}' if start else ''}: {secs:.1f} s" + (f", LAMMPS error: {res['lammps_error']}" if rc else ""))
    frames = []
    path = os.path.join(work, f"{tag}.dump")
    if os.path.exists(path):
        types = {i + 1: s for i, s in enumerate(lab.species)}
        try:
            dumps = read_dump(path, types)
        except (L.LabelError, IndexError, ValueError):
            dumps = []  # a dump cut short by the abort
        for d in dumps:
            if d["step"] == 0:
                continue
            f = make_frame(d, [("config_type", cfg), ("run", run)] + extra)
            f.set_info("time_ps", f"{d['step'] * dt:.3f}")
            frames.append(f)
    res["frames"] = frames
    res["v_cell_per_atom"] = abs(L._dot(fr.cell[0], L._cross(fr.cell[1], fr.cell[2]))) / nat
    return res


def several_starts(cond: dict) -> bool:
    """Whether --starts splits a condition's main run: its start structure draws random sites or
    a random strain, or it is a liquid (each start melts its own, and a run that leaves the
    teacher's domain early loses only its own later frames)."""
    return any(cond.get(k) for k in ("sub", "antisite", "vac", "strain", "melt"))


def alloy_geometry_reasons(f: L.Frame, p: dict, nat: int, v_ref: float) -> list[str]:
    """Why a sampled frame is outside the potential's domain, judged from its geometry alone."""
    why = []
    if len(f.symbols) != nat:
        return [f"{nat - len(f.symbols)} atoms lost"]
    nn = nearest_distances(f)
    dmin = min(nn)
    f.set_info("d_min", f"{dmin:.4f}")
    if dmin < p["d_floor"]:
        why.append(f"d_min {dmin:.3f} A below {p['d_floor']} A")
    far = [i for i, x in enumerate(nn) if x > p["isolated"]]
    if far:
        why.append(f"{len(far)} atoms without a neighbour within {p['isolated']} A "
                   f"(nearest {max(nn):.2f} A)")
    vol = abs(L._dot(f.cell[0], L._cross(f.cell[1], f.cell[2]))) / nat
    lo, hi = p["v_window"]
    if not lo <= vol / v_ref <= hi:
        why.append(f"volume per atom {vol:.2f} A^3 is {vol / v_ref:.2f} x the start cell's")
    return why


def alloy_label_reasons(f: L.Frame, p: dict, e_ref: float) -> list[str]:
    why = []
    epa = f.energy / len(f.symbols)
    lo, hi = p["e_window"]
    if not lo <= epa - e_ref <= hi:
        why.append(f"E/atom {epa:.3f} eV is {epa - e_ref:+.3f} eV from the start structure's "
                   f"({e_ref:.3f})")
    fmax = max(math.sqrt(sum(c * c for c in v)) for v in f.forces)
    if fmax > p["f_absurd"]:
        why.append(f"max |F| {fmax:.1f} eV/A above {p['f_absurd']}")
    return why


def drop_record(f: L.Frame | None, r: dict, why: list[str]) -> dict:
    """The summary.json entry of a dropped frame (f None: a run that wrote no frame), with the
    start index of a --calib run."""
    return dict(config_type=r["cond"]["cfg"], run=r["run"],
                time_ps=None if f is None else float(f.get_info("time_ps")),
                d_min=None if f is None or f.get_info("d_min") is None
                else float(f.get_info("d_min")), reasons=why) | (
                    {"start": r["start"]} if "start" in r else {})


def run_entry(r: dict) -> dict:
    """The summary.json entry of a sampled run: what it reported, its condition and kept frames."""
    return ({k: v for k, v in r.items() if k not in ("frames", "cond")}
            | dict(config_type=r["cond"]["cfg"], kept=len(r["frames"])))


def log_drops(system: str, dropped: list[dict]) -> None:
    for dr in dropped:
        log(f"{system}: dropped {dr['config_type']} ({dr['run']}) t={dr['time_ps']} ps: "
            f"{'; '.join(dr['reasons'])}")


def screen_runs(system: str, p: dict, runs: list[dict], lmp: str, pot: str) -> tuple[list, float]:
    """The sanity filters of --alloys on sampled runs (each with its `cond`), in place: geometry,
    then labels (one LAMMPS process for all frames), then energy and force. Returns the dropped
    frames with their reasons and the labelling time."""
    dropped = []

    def drop(f, r, why):
        dropped.append(drop_record(f, r, why))

    # 1. Geometry: lost or detached atoms, close contacts, box collapse; a LAMMPS abort.
    for r in runs:
        cand = []
        if "lammps_error" in r:
            for f in r["frames"]:
                drop(f, r, [f"run aborted by LAMMPS: {r['lammps_error']}"])
            if not r["frames"]:
                drop(None, r, [f"run aborted by LAMMPS before any frame: {r['lammps_error']}"])
            r["frames"] = []
        bad = False
        for f in r["frames"]:
            why = alloy_geometry_reasons(f, p, r["atoms"], r["v_cell_per_atom"])
            if bad and not why:
                why = ["after an earlier bad frame of the same run"]
            if why:
                bad = True
                drop(f, r, why)
            else:
                cand.append(f)
        r["frames"] = cand
    # 2. Labels (one LAMMPS process for the whole system), then energy and force sanity.
    allf = [f for r in runs for f in r["frames"]]
    t0 = time.time()
    L.label_frames(allf, p["labeller"], lmp, pot)
    t_label = time.time() - t0
    log(f"{system}: labelled {len(allf)} frames with {p['labeller']} in {t_label:.1f} s")
    for r in runs:
        keep, bad = [], False
        for f in r["frames"]:
            why = alloy_label_reasons(f, p, r["e_start_per_atom"])
            if bad and not why:
                why = ["after an earlier bad frame of the same run"]
            if why:
                bad = True
                drop(f, r, why)
            else:
                keep.append(f)
        r["frames"] = keep
    return dropped, t_label


def alloy_system(system: str, p: dict, seed: int, lmp: str, pot: str, work: str) -> tuple:
    """Sample, filter, label and split one system; returns (train, valid, test, summary)."""
    runs = []
    for cond in p["conditions"]:
        for run in ("main", "independent"):
            # A condition with random sites sampled from one start sees one arrangement of them
            # (3 solutes in hcp Be do not move at 600 K): with --starts K its main run is split
            # over K starts, each with its own sites and velocities (liquids: its own melt).
            k = p.get("starts", 1) if run == "main" and several_starts(cond) else 1
            for start in range(k):
                nframes = p["n_main"] // k + (p["n_main"] % k if start == k - 1 else 0)
                r = alloy_run(system, p, cond, run, seed, lmp, pot, work, start,
                              nframes if k > 1 else None)
                r["cond"] = cond
                runs.append(r)
    dropped, t_label = screen_runs(system, p, runs, lmp, pot)
    # 3. A condition whose main run kept no frame has nothing to train on: its independent frames
    # would test an untrained condition, so they go too.
    trained = {r["cond"]["cfg"] for r in runs if r["run"] == "main" and r["frames"]}
    for r in runs:
        if r["run"] != "main" and r["cond"]["cfg"] not in trained:
            for f in r["frames"]:
                dropped.append(drop_record(
                    f, r, ["the condition has no training frames (its main run was dropped)"]))
            r["frames"] = []
    train, valid, test = [], [], []
    per_run = []
    main_frames = {}  # config_type -> the frames of its main run(s), starts in order
    for r in runs:
        fs = r["frames"]
        if r["run"] == "main":
            main_frames.setdefault(r["cond"]["cfg"], []).extend(fs)
        else:
            test += fs
        per_run.append(run_entry(r))
    for fs in main_frames.values():
        nv = p["n_valid"] if len(fs) > p["n_valid"] else 0
        train += fs[: len(fs) - nv]
        valid += fs[len(fs) - nv:]
    log_drops(system, dropped)
    summary = dict(runs=per_run, dropped=dropped, label_seconds=round(t_label, 1),
                   md_seconds=round(sum(r["seconds"] for r in runs), 1))
    return train, valid, test, summary


@exits_on_label_error
def main_alloys(args, argv) -> int:
    """--alloys: In-P and W-Be (SNAP+ZBL samples and labels), OUT/inp/ and OUT/wbe/ (OUT: --out,
    default tests/data) with train/valid/test.xyz and summary.json; --only inp|wbe for one."""
    root = L.REPO_ROOT
    data = args.out or os.path.join(root, "tests", "data")
    cmd_args = argv if argv is not None else sys.argv[1:]
    with lammps_and_work(args) as (lmp, pot, work):
        for system in ("inp", "wbe"):
            if args.only not in (None, system):
                continue
            t_start = time.time()
            p = dict(ALLOYS[system])
            if args.frames_per_run is not None:
                p["n_main"] = args.frames_per_run
            if args.starts is not None:
                p["starts"] = args.starts
            log(f"alloys {system}, seed {args.seed}")
            # Offset the Python seed (like --hetero's +1000, --unstable's +2000).
            train, valid, test, summary = alloy_system(system, p, args.seed + 3000, lmp, pot, work)
            summary = {"mode": "alloys", "system": system, "seed": args.seed, "params": p,
                       "command": recorded_command(cmd_args)} | summary
            out = os.path.join(data, system)
            os.makedirs(out, exist_ok=True)
            summary["files"] = {}
            for name, frames in (("train", train), ("valid", valid), ("test", test)):
                path = os.path.join(out, f"{name}.xyz")
                L.write_extxyz_atomic(path, frames)
                summary["files"][os.path.relpath(path, root)] = dict(
                    frames=len(frames), atoms=sum(len(f.symbols) for f in frames),
                    bytes=os.path.getsize(path), stats=stats(frames))
                log(f"wrote {os.path.relpath(path, root)}: {len(frames)} frames, "
                    f"{os.path.getsize(path) / 1024:.0f} KiB")
            summary["total_seconds"] = round(time.time() - t_start, 1)
            with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=1, ensure_ascii=False)
            log(f"{system} done in {summary['total_seconds']:.0f} s")
        return 0


# ---------------------------------------------------------------------------------------------


# --calib: calibration sets independent of the training data. The validation frames of every set
# above come from the training runs themselves (Li: frames between the training frames of one
# trajectory; In-P, W-Be: the last frames of the main run, so one arrangement of the random
# vacancies and solutes), while the held-out test frames come from independent runs: a cutoff
# calibrated on the former promises a rate for data it was not drawn like. Each calibration set
# is drawn the way the held-out data are: Li from `li_runs` further independent runs of the
# training condition (each its own velocities and melt), In-P and W-Be from `alloy_starts`
# independent starts of every trained condition (each its own sites, velocities and melt),
# `alloy_frames` frames each. Several runs, because a tail estimated from few runs is theirs: the
# per-cluster gamma_local cutoffs are 1 - 1/N quantiles of a few hundred to a few thousand atoms
# (docs/benchmarks/cutoffs/README.md: one Li run left 10 held-out atoms above a cluster cutoff
# meant for about 1, four runs 5; four W-Be starts 5 entries with more than 3, eight starts 3).
# Al-Mg's held-out frames are the last frames of its training runs and its valid.xyz one frame
# per condition (1440 atoms, two liquid frames): too few for a 1 - 1/N tail at N = 2880, and the
# liquids, whose tails set the species cutoffs, had one frame each (three entries with 4-8 held-out
# atoms above a cutoff meant for about 1). Its calibration set: `almg_starts` further runs of every
# condition (each its own sites and velocities, the main runs' equilibration and melt), the first
# `almg_frames` frames after equilibration.
CALIB = dict(li_ps=10.0, li_every=1000, li_runs=4, alloy_starts=8, alloy_frames=1, almg_starts=4,
             almg_frames=2)


def li_calib(lmp: str, pot: str, seed: int, work: str) -> tuple[list, dict]:
    """`li_runs` further Li liquid runs (each its own velocity seed, melted and equilibrated on its
    own; the first is the one earlier sets had alone), one frame every `li_every` steps of a
    `li_ps` production: the unlabelled frames (run names `calib`, `calib2`, ...) and each run's
    seed and diffusion check."""
    p = MODES["default"]
    segs = [("prod", CALIB["li_ps"], CALIB["li_every"])]
    frames, runs = [], []
    for k in range(CALIB["li_runs"]):
        name = "calib" if k == 0 else f"calib{k + 1}"
        vseed = random.Random(f"{seed}:{name}").randrange(1, 900000)
        text, secs = run_job(lmp, li_liquid_script(p, pot, vseed, name, segs), work, f"li_{name}")
        runs.append({"run": name, "seed": vseed, "lammps": L.lammps_version(text), "md_seconds": secs,
                     "diffusion": diffusion(os.path.join(work, f"{name}_msd.txt"),
                                            os.path.join(work, f"{name}_thermo.txt"), 250)})
        frames += liquid_frames(os.path.join(work, f"{name}_prod.dump"), name)
    return frames, {"runs": runs}


def almg_calib(lmp: str, pot: str, seed: int, work: str) -> tuple[list, dict]:
    """`almg_starts` further Al-Mg runs of every condition (run names `calib`, `calib2`, ...; each
    its own generator seed, so its own solute sites and velocities), `almg_frames` frames each."""
    p = dict(MODES["default"], almg_frames=CALIB["almg_frames"])
    frames, runs = [], []
    for k in range(CALIB["almg_starts"]):
        name = "calib" if k == 0 else f"calib{k + 1}"
        rseed = random.Random(f"{seed}:almg_{name}").randrange(1, 900000)
        groups, secs = almg(p, lmp, pot, rseed, work, run=name)
        runs.append({"run": name, "seed": rseed, "md_seconds": round(secs, 1)})
        frames += [f for g in groups for f in g]
    return frames, {"runs": runs}


def alloy_calib(system: str, seed: int, lmp: str, pot: str, work: str, trained: set[str]) -> tuple:
    """`alloy_starts` runs of `alloy_frames` frames per trained condition (run name `calib`: its own
    generator, so other sites and velocities than the main and independent runs), screened and
    labelled like the other alloy runs. Returns the frames and the summary entries."""
    p = ALLOYS[system]
    runs = []
    for cond in p["conditions"]:
        if cond["cfg"] not in trained:
            continue
        for start in range(CALIB["alloy_starts"]):
            r = alloy_run(system, p, cond, "calib", seed, lmp, pot, work, start, CALIB["alloy_frames"])
            r["cond"], r["start"] = cond, start
            runs.append(r)
    dropped, t_label = screen_runs(system, p, runs, lmp, pot)
    log_drops(system, dropped)
    frames = [f for r in runs for f in r["frames"]]
    return frames, dict(runs=[run_entry(r) for r in runs], dropped=dropped, label_seconds=round(t_label, 1),
                        md_seconds=round(sum(r["seconds"] for r in runs), 1))


@exits_on_label_error
def main_calib(args, argv) -> int:
    """--calib: tests/data/{li,almg,inp,wbe}/calib.xyz with a calib_summary.json beside each (--only
    for one): calibration frames from independent runs, not from the training runs."""
    root = L.REPO_ROOT
    data = args.out or os.path.join(root, "tests", "data")
    cmd_args = argv if argv is not None else sys.argv[1:]
    with lammps_and_work(args) as (lmp, pot, work):
        for system in ("li", "almg", "inp", "wbe"):
            if args.only not in (None, system):
                continue
            t_start = time.time()
            summary = {"mode": "calib", "system": system, "seed": args.seed, "params": CALIB,
                       "command": recorded_command(cmd_args)}
            if system in ("li", "almg"):
                # Runs of the training conditions (their own velocities and sites), labelled after.
                name, runs, labeller = {"li": ("Li", li_calib, "li-snap"),
                                        "almg": ("Al-Mg", almg_calib, "almg-meam")}[system]
                log(f"{name} calibration runs, seed {args.seed}")
                frames, info = runs(lmp, pot, args.seed, work)
                t0 = time.time()
                L.label_frames(frames, labeller, lmp, pot)
                info["label_seconds"] = round(time.time() - t0, 1)
                summary |= info
            else:
                # The conditions of the training set beside it (--out DIR with its own sets),
                # else of the committed one.
                train = os.path.join(data, system, "train.xyz")
                if not os.path.exists(train):
                    train = os.path.join(root, "tests", "data", system, "train.xyz")
                if not os.path.exists(train):
                    raise L.LabelError(f"{train} not found: --calib draws frames of the trained "
                                       "conditions; generate the set with --alloys first")
                trained = {f.get_info("config_type") for f in L.read_extxyz(train)}
                log(f"{system} calibration runs, seed {args.seed}, {len(trained)} trained conditions")
                # The seed offset of --alloys: the run name `calib` keeps the generators apart.
                frames, info = alloy_calib(system, args.seed + 3000, lmp, pot, work, trained)
                summary |= info
            out = os.path.join(data, system)
            os.makedirs(out, exist_ok=True)
            path = os.path.join(out, "calib.xyz")
            L.write_extxyz_atomic(path, frames)
            summary["files"] = {os.path.relpath(path, root): dict(
                frames=len(frames), atoms=sum(len(f.symbols) for f in frames),
                bytes=os.path.getsize(path), stats=stats(frames))}
            summary["total_seconds"] = round(time.time() - t_start, 1)
            with open(os.path.join(out, "calib_summary.json"), "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=1, ensure_ascii=False)
            log(f"wrote {os.path.relpath(path, root)}: {len(frames)} frames, "
                f"{os.path.getsize(path) / 1024:.0f} KiB ({summary['total_seconds']:.0f} s)")
        return 0


def stats(frames: list[L.Frame]) -> dict:
    by = {}
    for f in frames:
        by.setdefault(f.get_info("config_type") or "?", []).append(f)
    res = {}
    for k, fs in by.items():
        epa = [f.energy / len(f.symbols) for f in fs]
        fm = [math.sqrt(sum(c * c for c in v)) for f in fs for v in f.forces]
        nat = [len(f.symbols) for f in fs]
        res[k] = dict(frames=len(fs), atoms=[min(nat), max(nat)], e_per_atom=[min(epa), max(epa)],
                      fmax=max(fm), fmean=sum(fm) / len(fm))
    return res


def train_volume_per_atom(path: str) -> float:
    """Mean volume per atom of the frames of `path` (the 600 K liquid box of the main run)."""
    vols = []
    for fr in L.read_extxyz(path):
        a, b, c = fr.cell
        vols.append(abs(L._dot(a, L._cross(b, c))) / len(fr.symbols))
    return sum(vols) / len(vols)


@exits_on_label_error
def main_hetero(args, argv) -> int:
    """--hetero: the multi-phase Li set, MEAM MD in one LAMMPS job, labelled with li-snap."""
    root = L.REPO_ROOT
    out = args.out or os.path.join(root, "tests", "data", "li_hetero")
    t_start = time.time()
    cmd_args = argv if argv is not None else sys.argv[1:]
    summary = {"mode": "hetero", "seed": args.seed, "params": HETERO,
               "command": recorded_command(cmd_args)}
    with lammps_and_work(args) as (lmp, pot, work):
        v_liq = train_volume_per_atom(os.path.join(root, "tests", "data", "li", "train.xyz"))
        summary["liquid_volume_per_atom_A3"] = v_liq
        log(f"multi-phase Li MEAM MD, seed {args.seed}, liquid volume {v_liq:.3f} A^3/atom")
        # Another seed than the default mode's novel subsets, so no frame repeats li/novel.xyz.
        frames, t_md = li_novel(HETERO, lmp, pot, args.seed + 1000, work, v_liq)
        summary["md_seconds"] = t_md
        t0 = time.time()
        L.label_frames(frames, "li-snap", lmp, pot)
        summary["label_seconds"] = time.time() - t0
        log(f"labelled {len(frames)} frames with li-snap in {summary['label_seconds']:.1f} s")
        path = os.path.join(out, "phases.xyz")
        L.write_extxyz_atomic(path, frames)
        summary["files"] = {os.path.relpath(path, root): dict(
            frames=len(frames), atoms=sum(len(f.symbols) for f in frames),
            bytes=os.path.getsize(path), stats=stats(frames))}
        log(f"wrote {os.path.relpath(path, root)}: {len(frames)} frames, "
            f"{os.path.getsize(path) / 1024:.0f} KiB")
        summary["total_seconds"] = time.time() - t_start
        with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1, ensure_ascii=False)
        log(f"done in {summary['total_seconds']:.0f} s")
        return 0


def recorded_command(cmd_args) -> str:
    """The command line as stored in a summary: scratch folders (--keep DIR) are machine-local and
    do not change the data, so they are not recorded."""
    out, skip = ["scripts/gen_data.py"], False
    for a in cmd_args:
        if skip:
            skip = False
            continue
        if a == "--keep":
            skip = True
            continue
        if a.startswith("--keep="):
            continue
        out.append(a)
    return " ".join(out)


@exits_on_label_error
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Generate the aceuq reference data (see module docstring).")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small and short (CI)")
    g.add_argument("--full", action="store_true", help="long sparse segment (600-frame pool)")
    g.add_argument("--hetero", action="store_true",
                   help="only the multi-phase Li set (tests/data/li_hetero/phases.xyz)")
    g.add_argument("--unstable", action="store_true",
                   help="only the sets beyond the training data (li/ and almg/unstable.xyz)")
    g.add_argument("--alloys", action="store_true",
                   help="only the two-element SNAP+ZBL sets (inp/ and wbe/ train/valid/test.xyz)")
    g.add_argument("--calib", action="store_true",
                   help="only the calibration sets li/, almg/, inp/ and wbe/calib.xyz (independent "
                        "runs)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--out", help="data folder (default: tests/data, or runs/data-quick|-full)")
    ap.add_argument("--pool", help="pool file (default: runs/data[-quick|-full]/li_pool.xyz)")
    ap.add_argument("--lmp")
    ap.add_argument("--potentials")
    ap.add_argument("--keep", metavar="DIR", help="keep LAMMPS work files in DIR")
    ap.add_argument("--only", choices=["li", "almg", "inp", "wbe"],
                    help="generate only one system (li|almg; inp|wbe with --alloys; any with "
                         "--calib)")
    ap.add_argument("--frames-per-run", type=int, metavar="N",
                    help="--alloys: frames of each main run (default 8; the last 2 are valid, the "
                         "others train), for larger sets written with --out")
    ap.add_argument("--starts", type=int, metavar="K",
                    help="--alloys: split the main run of every condition with random sites "
                         "(substitutions, antisites, vacancies, strain) and of every liquid over K "
                         "starts, each with its own sites or melt (default 1), for larger sets "
                         "written with --out")
    args = ap.parse_args(argv)
    if args.starts is not None:
        if not args.alloys or not args.out:
            ap.error("--starts needs --alloys and --out DIR (tests/data holds the committed sets)")
        n_main = args.frames_per_run or ALLOYS["inp"]["n_main"]
        if args.starts < 1 or n_main // args.starts < 1:
            ap.error(f"--starts must be between 1 and the frames per run ({n_main}), got {args.starts}")
    if args.frames_per_run is not None:
        if not args.alloys:
            ap.error("--frames-per-run needs --alloys")
        if args.frames_per_run < 3:
            ap.error(f"--frames-per-run must be at least 3 (2 go to valid), got {args.frames_per_run}")
        if not args.out:
            ap.error("--frames-per-run writes a larger set: give --out DIR (tests/data holds the "
                     "committed default sets)")
    if args.only in ("inp", "wbe") and not (args.alloys or args.calib):
        ap.error("--only inp|wbe needs --alloys or --calib")
    if args.alloys and args.only in ("li", "almg"):
        ap.error("--alloys generates inp and wbe only")
    if args.calib:
        return main_calib(args, argv)
    if args.alloys:
        return main_alloys(args, argv)
    if args.hetero:
        return main_hetero(args, argv)
    if args.unstable:
        return main_unstable(args, argv)
    mode = "quick" if args.quick else "full" if args.full else "default"
    p = MODES[mode]
    root = L.REPO_ROOT
    suffix = "" if mode == "default" else f"-{mode}"
    out = args.out or (os.path.join(root, "tests", "data") if mode == "default"
                       else os.path.join(root, "runs", f"data{suffix}"))
    pool_path = args.pool or os.path.join(root, "runs", f"data{suffix}", "li_pool.xyz")
    t_start = time.time()
    cmd_args = argv if argv is not None else sys.argv[1:]
    summary = {"mode": mode, "seed": args.seed, "params": p,
               "command": recorded_command(cmd_args)}
    with lammps_and_work(args) as (lmp, pot, work):
        outputs = {}
        if args.only in (None, "li"):
            log(f"Li liquid MD ({mode}), seed {args.seed}")
            pool, train, valid, test, info = li_liquid(p, lmp, pot, args.seed, work)
            summary["li_liquid"] = info
            log(f"D(600 K, main run) = {info['main']['D_A2_per_ps']:.3f} Å^2/ps = "
                f"{info['main']['D_cm2_per_s']:.2e} cm^2/s, R^2 {info['main']['fit_R2']:.4f}")
            novel, t_nov = li_novel(p, lmp, pot, args.seed, work, info["main"]["volume_per_atom_A3"])
            summary["li_novel_md_seconds"] = t_nov
            # Label everything Li in one LAMMPS process (train/valid are frames of the pool).
            allf = pool + test + novel
            t0 = time.time()
            L.label_frames(allf, "li-snap", lmp, pot)
            summary["li_label_seconds"] = time.time() - t0
            summary["li_label_frames"] = len(allf)
            log(f"labelled {len(allf)} Li frames with li-snap in {summary['li_label_seconds']:.1f} s")
            outputs[pool_path] = pool
            outputs[os.path.join(out, "li", "train.xyz")] = train
            outputs[os.path.join(out, "li", "valid.xyz")] = valid
            outputs[os.path.join(out, "li", "test.xyz")] = test
            outputs[os.path.join(out, "li", "novel.xyz")] = novel
        if args.only in (None, "almg"):
            log("Al-Mg MEAM MD")
            groups, t_almg = almg(p, lmp, pot, args.seed, work)
            summary["almg_md_seconds"] = t_almg
            train, valid, test = split_almg(groups)
            allf = train + valid + test
            t0 = time.time()
            L.label_frames(allf, "almg-meam", lmp, pot)
            summary["almg_label_seconds"] = time.time() - t0
            outputs[os.path.join(out, "almg", "train.xyz")] = train
            outputs[os.path.join(out, "almg", "valid.xyz")] = valid
            outputs[os.path.join(out, "almg", "test.xyz")] = test
        summary["files"] = {}
        for path, frames in outputs.items():
            L.write_extxyz_atomic(path, frames)
            summary["files"][os.path.relpath(path, root)] = dict(
                frames=len(frames), atoms=sum(len(f.symbols) for f in frames),
                bytes=os.path.getsize(path), stats=stats(frames))
            log(f"wrote {os.path.relpath(path, root)}: {len(frames)} frames, "
                f"{os.path.getsize(path) / 1024:.0f} KiB")
        summary["total_seconds"] = time.time() - t_start
        spath = os.path.join(os.path.dirname(pool_path), "summary.json")
        os.makedirs(os.path.dirname(spath), exist_ok=True)
        with open(spath, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1, ensure_ascii=False)
        log(f"done in {summary['total_seconds']:.0f} s; summary in {os.path.relpath(spath, root)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
