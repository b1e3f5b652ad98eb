"""ASE molecular dynamics that stops on aceuq's statistical cutoff: the Python twin of
`make example` (examples/li-600K), without LAMMPS.

1. fit a linear ACE potential with global active sets (gamma) and the closest-approach measure
   (contact) on 50 frames of liquid Li at 600 K,
2. calibrate the cutoffs for the run below (N = atoms x checks) on frames of independent runs,
   with labelled structures beyond the training liquid (they choose the halting rule),
3. heat the liquid with Langevin dynamics from 600 K towards 4000 K; an aceuq.Watch appends frames
   with atoms above the lower cutoff to candidates.xyz and stops the run by the calibrated
   halting rule (here contact's frame rule),
4. choose the most informative candidates for DFT (D-optimality) -> for_dft.xyz.

    .venv/bin/python examples/python/md_watch.py [--out runs/python-md] [--steps 6000]
"""

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from ase import units
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

import aceuq

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "li"

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
p.add_argument("--out", default=str(ROOT / "runs" / "python-md"), help="output folder")
p.add_argument("--steps", type=int, default=6000, help="MD steps (1 fs) at most")
p.add_argument("--every", type=int, default=10, help="check the uncertainty every N steps")
p.add_argument("--t-final", type=float, default=4000.0, help="end of the temperature ramp (K)")
args = p.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
model_path, candidates = out / "li.aceuq", out / "candidates.xyz"
candidates.unlink(missing_ok=True)

print("== 1. fit", flush=True)
aceuq.fit(
    DATA / "train.xyz", model_path, valid=DATA / "valid.xyz", species="Li", active_set=True,
    contact=True,
)

atoms = read(DATA / "test.xyz", index=0)
checks = args.steps // args.every
print(f"== 2. calibrate for {len(atoms)} atoms x {checks} checks", flush=True)
model = aceuq.calibrate(
    model_path, DATA / "calib.xyz", high=DATA / "unstable.xyz", pool_size=len(atoms) * checks
)

print("== 3. Langevin MD, heating; watched every", args.every, "steps", flush=True)
atoms.calc = aceuq.AceUQCalculator(model, uq=["gamma", "contact"])
with warnings.catch_warnings():  # renamed in newer ASE; this name works in every ASE >= 3.22
    warnings.simplefilter("ignore", DeprecationWarning)
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(7))
dyn = Langevin(
    atoms, 1.0 * units.fs, temperature_K=600, friction=0.02, fixcm=False,
    rng=np.random.default_rng(8),
)


def ramp():
    dyn.set_temperature(temperature_K=600 + (args.t_final - 600) * dyn.nsteps / args.steps)


watch = aceuq.Watch(atoms, "gamma", dump=candidates, dyn=dyn)
dyn.attach(ramp, interval=args.every)
dyn.attach(watch, interval=args.every)
t0 = time.time()
try:
    dyn.run(args.steps)
    print(f"ran all {args.steps} steps without extrapolation (max gamma {watch.max_value:.3f})")
except aceuq.Extrapolation as e:
    why = (
        f"atom index {e.atom} (id {e.atom + 1}) gamma {e.value:.3f} > {e.upper:.3f}"
        if math.isfinite(e.upper)
        else "by the calibrated halting rule (the watch's message above)"
    )
    print(f"stopped at step {e.step}, T = {atoms.get_temperature():.0f} K: {why}")
print(f"{watch.checks} checks, {watch.frames_dumped} frames written, {time.time() - t0:.1f} s")

print("== 4. select for DFT", flush=True)
chosen = aceuq.select(model, candidates, max=5, out=out / "for_dft.xyz") if watch.frames_dumped else []
print(f"{len(chosen)} structures in {out / 'for_dft.xyz'}" if chosen else "no candidates")
sys.exit(0)
