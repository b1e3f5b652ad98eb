#!/usr/bin/python3 -s
"""Generate the DFT-labelled Li data set tests/data/li_dft/: SNAP MD samples, GPAW labels.

Samples come from molecular dynamics with the DFT-fitted quadratic SNAP of Zuo et al. (J. Phys.
Chem. A 124, 731 (2020); `Li_Zuo_JPCA2020.quadratic.snapcoeff/.snapparam`, shipped with LAMMPS),
one serial LAMMPS process per run; the labels (free energy, forces, virial) come from
scripts/label_gpaw.py at the settings of the DFT loop example (examples/li-dft-loop/settings.toml:
PBE, plane waves 300 eV, k-point density 2.0 per 1/Å, Fermi-Dirac 0.1 eV), so this set and that
example share one level of theory. The MD is the SNAP's, not DFT's: the frames are what the SNAP
visits, labelled afterwards.

Conditions (one `config_type` each; `CONDITIONS` below), small cells so that GPAW stays cheap:
  bcc_cold_75K          16 atoms (2x2x2 cubic cells, a = 3.44 Å), NVT 75 K (the loop's start)
  bcc_300K, bcc_600K    16 atoms, NPT 0 bar (iso: a cubic box; aniso lets this small cell
                        shear into another structure), at the SNAP's own density (a0 = 3.469 Å at
                        0 K; PBE's is ~3.43 Å). 600 K is above Li's melting point (454 K): a
                        superheated crystal, which the perfect 16-atom cell keeps (flat MSD)
  bcc_vacancy_400K      15 atoms (one random atom of the 16 removed), NVT 400 K, a = 3.44 Å
                        (at 500 K this cell melts)
  bcc_compressed_300K   16 atoms, the a = 3.44 Å cell scaled to 94 % of its volume, NVT
  surface_100_300K      (100) slab of 16 atoms (2x2 cells, 4 layers), 10 Å of vacuum, NVT in the
                        padded periodic box, written with pbc="T T F"
  liquid_700K           16 atoms melted 2 ps at 1500 K (NVT at 1.1x the a = 3.44 Å volume), NPT
                        0 bar (iso) at 700 K, the box then set to the mean length of the NPT run's
                        second half, NVT 700 K. The box is stretched to 0.85 : 1 : 1.2 before
                        the melt: a cubic 16-atom liquid recrystallises below ~1000 K
  liquid54_700K         the same recipe for 54 atoms (3x3x3 cells, cubic)
Each condition has a main run and an independent run (its own velocities, and vacancy site),
each seeded from "<seed>:<config_type>:<run>". Per run: draw velocities (2T for crystals; the
melt temperature for liquids), equilibrate, then a frame every `every` ps (>= 0.5 ps, longer than
the velocity decorrelation time of these runs; `msd_end_A2` in summary.json shows whether a
liquid stayed liquid). Main-run frames in time order: the last n_valid
-> valid.xyz, the others -> train.xyz; the independent run's frames -> test.xyz. Frames carry
config_type, run (main/independent), time_ps (from the run's start, melt and equilibration
included), d_min (smallest interatomic distance, Å, periodic images included), vacancies where
it applies, and the labeller's keys (energy = Mermin free energy, energy_zero_width, forces,
virial for periodic frames, dft_kpts, dft_code). A frame with two atoms closer than 1.6 Å is
not labelled (reported in summary.json; none expected).

Labelling: one call of label_gpaw.py on every sampled frame, under `nice -n 19` with
OMP_NUM_THREADS=1, its per-structure cache in --cache (default /tmp/aceuq-li-dft-cache, outside
the repository), so a killed run resumes where it stopped: the MD is deterministic for a seed,
hence the same geometries and cache keys. If some frames fail (SCF not converged, timeout), they
are dropped and named in summary.json (`failed`), and the others are written.

summary.json: the command, seed, settings, code versions (GPAW, ASE, LAMMPS), host CPU, per
condition the counts, atoms, k-points, MD averages over the sampled window (T, P, volume/atom,
SNAP E/atom, MSD), per-frame DFT seconds and SCF iterations, and the SNAP-vs-DFT force RMSE
(the SNAP forces are dumped with the positions, never written to the .xyz files); timings
(MD, DFT sum, wall). DFT seconds are those recorded in the cache when the frame was computed
(so a resumed run reports the original times; `frames_cached` says how many came from the
cache).

Usage:
    /usr/bin/python3 -s scripts/gen_dft_li.py [--quick] [--seed 2024] [--out DIR] [--cache DIR]
        [--settings S.toml] [--lmp PATH] [--potentials DIR] [--keep DIR] [--md-only]
        [--only CONFIG_TYPE,...]

  default   tests/data/li_dft/: 64 frames of 16 (15) atoms and 2 of 54 atoms, 38 min of GPAW
            on one (shared) core of the project machine (a 54-atom frame ~300 s)
  --quick   3 frames of bcc_cold_75K (1 train, 1 valid, 1 test), ~1-2 min; default --out
            runs/li_dft_quick
  --md-only run the MD and write the unlabelled frames (all.in.xyz) to --out, no GPAW

Needs the LAMMPS of `make venv` (.venv/bin/lmp, or --lmp, $ACEUQ_LMP) and GPAW for Debian's
Python (`make gpaw`); run with /usr/bin/python3 -s. Python 3.11 standard library plus ASE.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LABELLER = os.path.join(HERE, "label_gpaw.py")
DEFAULT_SETTINGS = os.path.join(ROOT, "examples", "li-dft-loop", "settings.toml")
DEFAULT_CACHE = "/tmp/aceuq-li-dft-cache"

A = 3.44  # Å, BCC lattice constant of the start cells (as examples/li-dft-loop)
DT = 0.001  # ps (1 fs)
MASS = 6.94
SNAP = "Li_Zuo_JPCA2020.quadratic"  # the sampler, in LAMMPS's potentials folder
D_FLOOR = 1.6  # Å: frames with a closer pair are not labelled

# kind: "bulk" | "slab" | "liquid"; cells: n x n x n cubic BCC cells; ens: nvt | npt (aniso,
# 0 bar); vel: temperature of the initial velocities; eq: ps before the first frame; every: ps
# between frames; main: frames of the main run (the last n_valid are valid); test: frames of the
# independent run.
CONDITIONS = [
    dict(name="bcc_cold_75K", kind="bulk", cells=2, T=75, ens="nvt", vel=150, eq=1.0,
         every=0.5, main=6, n_valid=1, test=2),
    dict(name="bcc_300K", kind="bulk", cells=2, T=300, ens="npt", vel=600, eq=2.0,
         every=0.5, main=7, n_valid=1, test=2),
    dict(name="bcc_600K", kind="bulk", cells=2, T=600, ens="npt", vel=1200, eq=2.0,
         every=0.5, main=7, n_valid=1, test=2),
    dict(name="bcc_vacancy_400K", kind="bulk", cells=2, T=400, ens="nvt", vel=800, eq=2.0,
         every=0.5, main=7, n_valid=1, test=2, vacancies=1),
    dict(name="bcc_compressed_300K", kind="bulk", cells=2, T=300, ens="nvt", vel=600, eq=1.0,
         every=0.5, main=6, n_valid=1, test=2, volume_factor=0.94),
    dict(name="surface_100_300K", kind="slab", cells=2, T=300, ens="nvt", vel=600, eq=1.0,
         every=0.5, main=7, n_valid=1, test=2, layers=4, vacuum=10.0),
    dict(name="liquid_700K", kind="liquid", cells=2, T=700, melt_T=1500, melt=2.0, npt=3.0,
         eq=1.0, every=0.5, main=9, n_valid=1, test=3, shape=(0.85, 1.0, 1.2)),
    dict(name="liquid54_700K", kind="liquid", cells=3, T=700, melt_T=1500, melt=2.0, npt=3.0,
         eq=1.0, every=0.5, main=1, n_valid=0, test=1),
]
QUICK = [dict(CONDITIONS[0], main=2, test=1)]


def log(msg: str) -> None:
    print(f"[gen_dft_li {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def seed_of(text: str) -> int:
    """A LAMMPS velocity seed (1 ... 2^30) from a string, stable across Python runs."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % (2**30 - 1) + 1


def steps(ps: float) -> int:
    return int(round(ps / DT))


# ---------------------------------------------------------------------------------------------
# LAMMPS


def lammps_input(c: dict, pot: str, vseed: int, vac_ids: list[int], dump: str, thermo: str) -> str:
    n = c["cells"]
    a = A * c.get("volume_factor", 1.0) ** (1.0 / 3.0)
    if c["kind"] == "liquid":
        a = A * 1.1 ** (1.0 / 3.0)
    s = f"""units metal
atom_style atomic
atom_modify map array
boundary p p p
lattice bcc {a:.10f}
region cell block 0 {n} 0 {n} 0 {n}
create_box 1 cell
create_atoms 1 box
mass 1 {MASS}
pair_style snap
pair_coeff * * {pot}/{SNAP}.snapcoeff {pot}/{SNAP}.snapparam Li
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
timestep {DT}
thermo 500
thermo_style custom step temp pe press vol
"""
    if c.get("shape"):
        sx, sy, sz = c["shape"]
        s += f"change_box all x scale {sx} y scale {sy} z scale {sz} remap\n"
    if c["kind"] == "slab":
        # keep the lowest `layers` (100) layers, pad z to layers' thickness + vacuum, centre
        thick = (c["layers"] - 1) * a / 2.0
        s += f"""region keep block INF INF INF INF -0.01 {thick + 0.01:.6f} units box
group keep region keep
group gone subtract all keep
delete_atoms group gone
change_box all z final 0 {thick + c['vacuum']:.6f} units box
displace_atoms all move 0 0 {c['vacuum'] / 2.0:.6f} units box
"""
    if vac_ids:
        s += f"group vac id {' '.join(str(i) for i in vac_ids)}\ndelete_atoms group vac\n"
    s += "variable vol equal vol\n"
    if c["kind"] == "liquid":
        half = steps(c["npt"] / 2.0)
        s += f"""velocity all create {c['melt_T']} {vseed} mom yes rot yes dist gaussian
fix md all nvt temp {c['melt_T']} {c['melt_T']} 0.1
run {steps(c['melt'])}
unfix md
fix md all npt temp {c['T']} {c['T']} 0.1 iso 0 0 1.0
run {half}
reset_timestep 0
variable L equal lx
fix avl all ave/time 10 {half // 10} {half} v_L
run {half}
variable sc equal f_avl/lx
print "GEN_DFT_LI mean L $(f_avl:%.8f)"
change_box all x scale ${{sc}} y scale ${{sc}} z scale ${{sc}} remap
unfix avl
unfix md
fix md all nvt temp {c['T']} {c['T']} 0.1
run {steps(c['eq'])}
"""
    else:
        fix = (f"fix md all nvt temp {c['T']} {c['T']} 0.1" if c["ens"] == "nvt" else
               f"fix md all npt temp {c['T']} {c['T']} 0.1 iso 0 0 1.0")
        s += f"""velocity all create {c['vel']} {vseed} mom yes rot yes dist gaussian
{fix}
run {steps(c['eq'])}
"""
    every = steps(c["every"])
    nframes = c["_nframes"]
    s += f"""reset_timestep 0
compute msd all msd com yes
compute pea all pe/atom
fix th all ave/time 10 1 10 c_thermo_temp c_thermo_press v_vol c_thermo_pe c_msd[4] file {thermo}
dump d all custom {every} {dump} id x y z fx fy fz c_pea
dump_modify d sort id format float %.8f
run {every * nframes}
"""
    return s


def run_lammps(lmp: str, script: str, work: str, name: str) -> tuple[str, float]:
    path = os.path.join(work, name + ".in")
    with open(path, "w") as f:
        f.write(script)
    t0 = time.time()
    p = subprocess.run([lmp, "-in", path, "-log", os.path.join(work, name + ".log"), "-screen",
                        "none", "-nocite"], cwd=work, capture_output=True, text=True)
    dt = time.time() - t0
    if p.returncode != 0:
        text = ""
        try:
            with open(os.path.join(work, name + ".log")) as f:
                text = f.read()
        except OSError:
            pass
        err = [ln for ln in (text + p.stdout + p.stderr).splitlines() if "ERROR" in ln]
        raise RuntimeError(f"LAMMPS run {name} failed (exit {p.returncode}): "
                           f"{' | '.join(err[:3]) or p.stderr[-500:]}")
    with open(os.path.join(work, name + ".log")) as f:
        return f.read(), dt


def read_dump(path: str) -> list[dict]:
    """`custom id x y z fx fy fz c_pea` dumps of orthogonal boxes, sorted by id."""
    with open(path) as f:
        lines = f.read().splitlines()
    out, i = [], 0
    while i < len(lines):
        assert lines[i] == "ITEM: TIMESTEP", (path, i, lines[i])
        step = int(lines[i + 1])
        nat = int(lines[i + 3])
        assert lines[i + 4].startswith("ITEM: BOX BOUNDS pp pp pp"), lines[i + 4]
        lo, hi = zip(*([float(x) for x in lines[i + 5 + k].split()[:2]] for k in range(3)))
        assert lines[i + 8].split()[2:] == ["id", "x", "y", "z", "fx", "fy", "fz", "c_pea"]
        pos, forces, pe = [], [], 0.0
        for k in range(nat):
            t = lines[i + 9 + k].split()
            pos.append([float(t[1 + d]) - lo[d] for d in range(3)])
            forces.append([float(t[4 + d]) for d in range(3)])
            pe += float(t[7])
        out.append(dict(step=step, cell=[hi[d] - lo[d] for d in range(3)], positions=pos,
                        snap_forces=forces, snap_energy=pe))
        i += 9 + nat
    return out


def thermo_averages(path: str, nat: int) -> dict:
    rows = []
    with open(path) as f:
        for ln in f:
            if ln.startswith("#"):
                continue
            rows.append([float(x) for x in ln.split()])
    rows = rows[1:]  # the first row is the sampling window's start

    def mean(k):
        return sum(r[k] for r in rows) / len(rows)
    return dict(T_K=round(mean(1), 1), P_bar=round(mean(2), 0),
                volume_per_atom_A3=round(mean(3) / nat, 4),
                snap_E_per_atom_eV=round(mean(4) / nat, 5),
                msd_end_A2=round(rows[-1][5], 4),
                window_ps=round((rows[-1][0] - rows[0][0]) * DT, 3))


def d_min(atoms) -> float:
    d = atoms.get_all_distances(mic=True)
    n = len(atoms)
    best = min(d[i][j] for i in range(n) for j in range(i + 1, n))
    # also an atom and its own images (cells shorter than 2 d would hide a closer pair)
    for k in range(3):
        if atoms.pbc[k]:
            best = min(best, float(sum(x * x for x in atoms.cell[k]) ** 0.5))
    return float(best)


def sample(c: dict, run: str, seed: int, lmp: str, pot: str, work: str) -> tuple[list, dict]:
    """One MD run; returns (frames, run record). Frames are ASE Atoms with .info set."""
    from ase import Atoms

    tag = f"{seed}:{c['name']}:{run}"
    vseed = seed_of(tag)
    nbulk = 2 * c["cells"] ** 3
    if c["kind"] == "slab":
        nbulk = 2 * c["cells"] ** 2 * c["layers"] // 2
    vac_ids = []
    if c.get("vacancies"):
        vac_ids = sorted(random.Random(tag).sample(range(1, nbulk + 1), c["vacancies"]))
    name = f"{c['name']}_{run}"
    c = dict(c, _nframes=c["main"] if run == "main" else c["test"])
    dump = os.path.join(work, name + ".dump")
    thermo = os.path.join(work, name + ".thermo")
    text, dt = run_lammps(lmp, lammps_input(c, pot, vseed, vac_ids, dump, thermo), work, name)
    raw = [d for d in read_dump(dump) if d["step"] > 0]
    nat = len(raw[0]["positions"])
    rec = dict(config_type=c["name"], run=run, atoms=nat, velocity_seed=vseed,
               md_seconds=round(dt, 2))
    if vac_ids:
        rec["removed_ids"] = vac_ids
    m = re.search(r"GEN_DFT_LI mean L ([0-9.]+)\n", text)
    if m:
        rec["liquid_box_A"] = float(m.group(1))
    rec.update(thermo_averages(thermo, nat))
    # time of the first sampling step, from the start of the run
    t0 = (steps(c.get("melt", 0.0)) + steps(c.get("npt", 0.0)) + steps(c["eq"])) * DT
    frames = []
    pbc = (True, True, c["kind"] != "slab")
    for d in raw:
        at = Atoms(["Li"] * nat, positions=d["positions"], cell=d["cell"], pbc=pbc)
        at.info["config_type"] = c["name"]
        at.info["run"] = run
        at.info["time_ps"] = round(t0 + d["step"] * DT, 4)
        if vac_ids:
            at.info["vacancies"] = len(vac_ids)
        at.info["d_min"] = round(d_min(at), 4)
        frames.append((at, d))
    log(f"MD {name}: {len(frames)} frames of {nat} atoms, {dt:.1f} s "
        f"(T {rec['T_K']} K, P {rec['P_bar']:.0f} bar, {rec['volume_per_atom_A3']} A^3/atom, "
        f"MSD {rec['msd_end_A2']} A^2 over {rec['window_ps']} ps)")
    return frames, rec


# ---------------------------------------------------------------------------------------------
# labelling


PROGRESS = re.compile(r"frame (\d+)/(\d+): (\d+) atoms, k (\S+), E (\S+) eV, ([\d.]+) s \((\w+)\)")


def label(frames_in: str, out: str, settings: str, cache: str) -> tuple[int, dict, list]:
    """label_gpaw.py on frames_in; returns (exit code, {index: (seconds, source, kpts)},
    [(index, reason) of failed frames])."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = ["nice", "-n", "19", sys.executable, "-s", LABELLER, "--settings", settings, "--cache",
           cache, frames_in, out]
    log("labelling: " + " ".join(shlex.quote(x) for x in cmd))
    info = {}
    with tempfile.TemporaryFile("w+") as errf:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, env=env)
        for ln in p.stdout:
            sys.stdout.write("  " + ln)
            sys.stdout.flush()
            m = PROGRESS.match(ln)
            if m:
                info[int(m.group(1)) - 1] = (float(m.group(6)), m.group(7), m.group(4))
        rc = p.wait()
        errf.seek(0)
        err = errf.read()
    if err:
        sys.stdout.write(err)
    failed = [(int(m.group(1)), m.group(2)) for m in
              re.finditer(r"label_gpaw: frame (\d+) \(0-based\) of \S+ failed: (.*)", err)]
    if rc != 0 and not failed:
        raise RuntimeError(f"label_gpaw.py exited {rc}: {err.strip()[-800:]}")
    return rc, info, failed


def split_xyz_text(path: str) -> list[str]:
    """The frames of an extended XYZ file as text blocks, in order."""
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = int(lines[i])
        out.append("".join(lines[i:i + n + 2]))
        i += n + 2
    return out


def scf_iterations(log_path: str) -> int | None:
    try:
        with open(log_path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.findall(r"Converged after (\d+) iterations", text)
    return int(m[-1]) if m else None


def write_atomic(path: str, text: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def versions(lmp: str) -> dict:
    v = {"python": platform.python_version()}
    try:  # before importing gpaw: its MPI set-up leaks into child processes' environment
        head = subprocess.run([lmp, "-h"], capture_output=True, text=True).stdout
        m = re.search(r"Simulator - (.*)", head)
        v["lammps"] = m.group(1).strip() if m else "?"
    except OSError:
        pass
    try:
        import ase
        v["ase"] = ase.__version__
        import gpaw
        v["gpaw"] = gpaw.__version__
    except ImportError as e:
        v["import_error"] = str(e)
    return v


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rms(xs: list[float]) -> float:
    return math.sqrt(sum(x * x for x in xs) / len(xs)) if xs else float("nan")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="SNAP-sampled, GPAW-labelled Li data set "
                                "(see the module docstring).")
    p.add_argument("--quick", action="store_true", help="3 frames of cold BCC (a check)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--out", help="output folder (default tests/data/li_dft, --quick "
                   "runs/li_dft_quick)")
    p.add_argument("--cache", default=DEFAULT_CACHE, help=f"label_gpaw.py cache (default "
                   f"{DEFAULT_CACHE})")
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help="GPAW settings (default "
                   "examples/li-dft-loop/settings.toml)")
    p.add_argument("--lmp", default=os.environ.get("ACEUQ_LMP") or os.path.join(ROOT, ".venv",
                   "bin", "lmp"))
    p.add_argument("--potentials", default=os.environ.get("ACEUQ_POTENTIALS"))
    p.add_argument("--keep", help="keep the MD work files in this folder")
    p.add_argument("--only", help="comma-separated config_types (a subset, for checks)")
    p.add_argument("--md-only", action="store_true", help="run the MD, write all.in.xyz, stop")
    a = p.parse_args(argv)
    t_start = time.time()

    out = a.out or os.path.join(ROOT, "runs/li_dft_quick" if a.quick else "tests/data/li_dft")
    os.makedirs(out, exist_ok=True)
    pot = a.potentials
    if not pot:
        found = sorted(glob.glob(os.path.join(ROOT, ".venv", "lib", "python3*", "site-packages",
                                              "lammps", "share", "lammps", "potentials")))
        if not found:
            print("gen_dft_li: no LAMMPS potentials folder; give --potentials", file=sys.stderr)
            return 2
        pot = found[0]
    if not os.path.exists(os.path.join(pot, SNAP + ".snapcoeff")):
        print(f"gen_dft_li: {pot} has no {SNAP}.snapcoeff", file=sys.stderr)
        return 2
    sys.path.insert(0, HERE)
    import label_gpaw  # noqa: E402 - for its settings loader and cache keys

    settings = label_gpaw.load_settings(a.settings, {})
    conds = QUICK if a.quick else CONDITIONS
    if a.only:
        want = a.only.split(",")
        unknown = set(want) - {c["name"] for c in conds}
        if unknown:
            print(f"gen_dft_li: unknown --only {sorted(unknown)}", file=sys.stderr)
            return 2
        conds = [c for c in conds if c["name"] in want]

    if a.keep:
        work = os.path.abspath(a.keep)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="gen_dft_li-")
    try:
        from ase.io import write

        # 1. MD
        entries = []  # (atoms, split, snap dict)
        runs = []
        for c in conds:
            for run in ("main", "independent"):
                frames, rec = sample(c, run, a.seed, a.lmp, pot, work)
                runs.append(rec)
                for k, (at, d) in enumerate(frames):
                    if run == "independent":
                        split = "test"
                    else:
                        split = "valid" if k >= len(frames) - c["n_valid"] else "train"
                    entries.append((at, split, d))
        md_seconds = sum(r["md_seconds"] for r in runs)
        too_close = [(at, s, d) for at, s, d in entries if at.info["d_min"] < D_FLOOR]
        entries = [(at, s, d) for at, s, d in entries if at.info["d_min"] >= D_FLOOR]
        all_in = os.path.join(work, "all.in.xyz")
        write(all_in, [e[0] for e in entries], format="extxyz")
        if a.md_only:
            shutil.copy(all_in, os.path.join(out, "all.in.xyz"))
            log(f"--md-only: {len(entries)} frames in {os.path.join(out, 'all.in.xyz')}")
            return 0

        # 2. GPAW labels (resumable through the cache)
        labelled = os.path.join(work, "all.dft.xyz")
        t_dft = time.time()
        rc, info, failed = label(all_in, labelled, a.settings, a.cache)
        failed_doc = []
        if rc != 0:
            bad = {i for i, _ in failed}
            for i, why in failed:
                at = entries[i][0]
                failed_doc.append(dict(config_type=at.info["config_type"], run=at.info["run"],
                                       time_ps=at.info["time_ps"], reason=why))
            keep = [i for i in range(len(entries)) if i not in bad]
            entries = [entries[i] for i in keep]
            info = {j: info[i] for j, i in enumerate(keep) if i in info}
            write(all_in, [e[0] for e in entries], format="extxyz")
            log(f"{len(bad)} frame(s) failed; labelling the other {len(entries)} (from the cache)")
            if not entries:
                print("gen_dft_li: every frame failed; nothing written", file=sys.stderr)
                return 1
            rc, _, failed2 = label(all_in, labelled, a.settings, a.cache)
            if rc != 0:
                raise RuntimeError(f"relabelling from the cache failed again: {failed2}")
        dft_wall = time.time() - t_dft
        blocks = split_xyz_text(labelled)
        assert len(blocks) == len(entries), (len(blocks), len(entries))

        # 3. split, per-frame records, SNAP-vs-DFT comparison
        from ase.io import read

        dft = read(labelled, index=":", format="extxyz")
        # cache keys from the geometry label_gpaw.py read (the written, rounded one)
        seen = read(all_in, index=":", format="extxyz")
        texts = {"train": [], "valid": [], "test": []}
        per_frame = []
        per_cond: dict[str, dict] = {}
        for j, ((at, split, d), block, lab) in enumerate(zip(entries, blocks, dft)):
            texts[split].append(block)
            f_dft = lab.get_forces()
            e_dft = lab.get_potential_energy()  # the file's energy= (Mermin free energy)
            dF = [f_dft[i][k] - d["snap_forces"][i][k] for i in range(len(at)) for k in range(3)]
            secs, source, kpts = info.get(j, (None, None, None))
            key = label_gpaw.structure_key(seen[j], settings)
            it = scf_iterations(os.path.join(a.cache, key + ".log"))
            per_frame.append(dict(config_type=at.info["config_type"], split=split,
                                  time_ps=at.info["time_ps"], atoms=len(at), kpts=kpts,
                                  dft_seconds=secs, source=source, scf_iterations=it,
                                  E_dft_per_atom=round(e_dft / len(at), 6),
                                  E_snap_per_atom=round(d["snap_energy"] / len(at), 6),
                                  force_rmse_snap_vs_dft=round(rms(dF), 4),
                                  max_abs_F_dft=round(max(sum(x * x for x in f) ** 0.5
                                                          for f in f_dft), 4),
                                  d_min=at.info["d_min"]))
            pc = per_cond.setdefault(at.info["config_type"], dict(
                atoms=len(at), train=0, valid=0, test=0, dft_seconds=0.0, _dF=[], _dE=[]))
            pc[split] += 1
            pc["dft_seconds"] += secs or 0.0
            pc["_dF"] += dF
            pc["_dE"].append((e_dft - d["snap_energy"]) / len(at))
        for ct, pc in per_cond.items():
            dF, dE = pc.pop("_dF"), pc.pop("_dE")
            mean = sum(dE) / len(dE)
            pc["dft_seconds"] = round(pc["dft_seconds"], 1)
            pc["force_rmse_snap_vs_dft_eV_A"] = round(rms(dF), 4)
            pc["E_dft_minus_snap_per_atom_eV"] = round(mean, 5)
            pc["E_dft_minus_snap_spread_meV_atom"] = round(1000 * rms([x - mean for x in dE]), 2)
        for split, parts in texts.items():
            write_atomic(os.path.join(out, f"{split}.xyz"), "".join(parts))

        secs = [f["dft_seconds"] for f in per_frame if f["dft_seconds"] is not None]
        summary = dict(
            command="/usr/bin/python3 -s scripts/gen_dft_li.py " + " ".join(
                shlex.quote(x) for x in argv),
            seed=a.seed,
            quick=a.quick,
            settings_file=os.path.relpath(os.path.abspath(a.settings), ROOT),
            settings=settings,
            versions=versions(a.lmp),
            host=dict(cpu=cpu_model(), cores=os.cpu_count(),
                      note="GPAW under nice -n 19, OMP_NUM_THREADS=1, one process; the cores "
                      "were shared with other jobs"),
            sampler="LAMMPS pair_style snap, Li_Zuo_JPCA2020.quadratic (Zuo et al., J. Phys. "
                    "Chem. A 124, 731 (2020)); 1 fs, Nose-Hoover (Tdamp 0.1 ps, Pdamp 1 ps)",
            conditions=[{k: v for k, v in c.items() if not k.startswith("_")} for c in conds],
            counts={s: len(t) for s, t in texts.items()},
            per_condition=per_cond,
            runs=runs,
            frames=per_frame,
            not_labelled_too_close=[dict(config_type=at.info["config_type"], run=at.info["run"],
                                         time_ps=at.info["time_ps"], d_min=at.info["d_min"])
                                    for at, _, _ in too_close],
            failed=failed_doc,
            timings=dict(md_seconds=round(md_seconds, 1),
                         dft_seconds_sum=round(sum(secs), 1),
                         dft_seconds_per_frame_16=round(
                             sum(f["dft_seconds"] for f in per_frame if f["atoms"] <= 16
                                 and f["dft_seconds"] is not None)
                             / max(1, sum(1 for f in per_frame if f["atoms"] <= 16)), 1),
                         frames_cached=sum(1 for f in per_frame if f["source"] == "cached"),
                         labelling_wall_seconds_this_run=round(dft_wall, 1),
                         total_wall_seconds_this_run=round(time.time() - t_start, 1)),
        )
        write_atomic(os.path.join(out, "summary.json"), json.dumps(summary, indent=1) + "\n")
        log(f"wrote {out}: train {len(texts['train'])}, valid {len(texts['valid'])}, test "
            f"{len(texts['test'])} frames; DFT {sum(secs):.0f} s summed over frames, wall "
            f"{time.time() - t_start:.0f} s")
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
