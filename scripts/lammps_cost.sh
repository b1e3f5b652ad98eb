#!/usr/bin/env bash
# Cost of a potential in LAMMPS, in µs per atom-step: one process, OMP_NUM_THREADS=1, the first
# frame of DATA (or frame $FRAME, counted from 0: it must hold every element) replicated 2x2x2, velocities at 600 K, NVE with 1 fs steps, 20 warm-up steps then
# 200 timed steps (LAMMPS's loop time). Used for the cost columns of docs/benchmarks/alloys.md.
#
#   scripts/lammps_cost.sh POTENTIAL DATA.xyz ELEMENT...
#
# POTENTIAL is an aceuq model (*.aceuq, through the plugin's pair_style ace/uq) or a LAMMPS file
# of pair_style/pair_coeff commands (e.g. a *.mod written by scripts/snap_fit.py, or a potential
# definition such as InP_JCPA2020.snap), run from its own folder so it finds its coefficient
# files. ELEMENT... are the LAMMPS types in order (the order `aceuq to-lammps` writes them). Time
# several potentials back to back in one session, twice each, and keep the best: the host is
# shared and noisy.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 POTENTIAL DATA.xyz ELEMENT..." >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
pot=$1 data=$2
shift 2
aceuq=${ACEUQ:-$root/target/release/aceuq}
lmp=${ACEUQ_LMP:-$root/.venv/bin/lmp}
plugin=${ACEUQ_PLUGIN_DIR:-$root/build}/aceuqplugin.so
for f in "$pot" "$data" "$aceuq" "$lmp"; do
  [ -e "$f" ] || { echo "$0: $f does not exist (make build makes aceuq, the plugin and the venv)" >&2; exit 2; }
done
pot=$(cd "$(dirname "$pot")" && pwd)/$(basename "$pot")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$aceuq" to-lammps --data "$data" --frame "${FRAME:-0}" --out "$work/data.lmp" > "$work/to-lammps.log" 2>&1 ||
  { cat "$work/to-lammps.log" >&2; exit 1; }
case "$pot" in
  *.aceuq) pair="plugin load $plugin
pair_style ace/uq
pair_coeff * * $pot $*"
    rundir=$work ;;
  *) pair=$(grep -v '^#' "$pot")
    rundir=$(dirname "$pot") ;;
esac
cat > "$work/in.cost" <<EOT
units metal
boundary p p p
atom_style atomic
read_data $work/data.lmp
replicate 2 2 2
$pair
velocity all create 600 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.001
thermo 50
run 20
run 200
EOT
if ! (cd "$rundir" && OMP_NUM_THREADS=1 "$lmp" -nocite -log none -in "$work/in.cost" > "$work/out" 2>&1); then
  echo "$0: LAMMPS failed:" >&2
  grep -E "ERROR" "$work/out" >&2 || tail -5 "$work/out" >&2
  exit 1
fi
grep "Loop time" "$work/out" | tail -1 |
  awk -v p="$(basename "$pot")" '{printf "%s: %.1f us/atom-step (%d atoms, %d steps)\n", p, $4 / $9 / $12 * 1e6, $12, $9}'
