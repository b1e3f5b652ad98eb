#!/usr/bin/env bash
# A two-element example end to end: fit In-P -> calibrate -> LAMMPS MD with on-the-fly
# uncertainty -> select. Run through `make example-alloy` (which builds everything and sets
# ACEUQ, ACEUQ_LMP, ACEUQ_PLUGIN_DIR).
#
# The data (tests/data/inp) are labelled by the DFT-trained In-P SNAP+ZBL that ships with LAMMPS
# (Cusentino, Wood, Thompson 2020): zincblende at 300-1200 K, strained, with vacancies and
# In-rich antisites. Each species has fewer than 3 atoms (about 1340) per basis function (958),
# so its active set lives in the space its atoms span (the fit says so).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
aceuq=${ACEUQ:-$root/target/release/aceuq}
lmp=${ACEUQ_LMP:-$root/.venv/bin/lmp}
plugin=${ACEUQ_PLUGIN_DIR:-$root/build}/aceuqplugin.so
out=${EXAMPLE_OUT:-$root/runs/example-alloy}
data=$root/tests/data/inp
steps=${STEPS:-10000}
mkdir -p "$out"
cd "$out"
rm -f candidates.xyz for_dft.xyz

echo "== 1. fit an In-P potential with uncertainty (gamma, gamma_local) on 42 frames"
"$aceuq" fit --train "$data/train.xyz" --valid "$data/valid.xyz" --species In,P \
    --active-set --clusters 4 --out inp.aceuq

echo
echo "== 2. statistical cutoffs for the run we are about to watch (64 atoms x $((steps / 20)) checks)"
"$aceuq" calibrate --model inp.aceuq --valid "$data/valid.xyz" --pool-size $((64 * steps / 20))

echo
echo "== 3. LAMMPS: heat the crystal from 600 K towards 3000 K, dump candidates, halt when unsafe"
"$aceuq" to-lammps --data "$data/test.xyz" --frame 0 --out data.lmp
"$lmp" -nocite -log log.lammps -var plugin "$plugin" -var model inp.aceuq -var data data.lmp \
    -var candidates candidates.xyz -var tfinal 3000 -var steps "$steps" -in "$here/in.heat" > lammps.out
grep -E "^fix ace/uq/watch|halting" lammps.out || true

. "$here/../watch_outcome.sh"
watch_outcome "$aceuq" inp.aceuq
echo
echo "outputs in $out: inp.aceuq, log.lammps, candidates.xyz, for_dft.xyz"
