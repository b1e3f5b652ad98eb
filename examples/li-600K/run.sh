#!/usr/bin/env bash
# The Li example end to end: fit -> calibrate -> LAMMPS MD with on-the-fly uncertainty -> select.
# Run through `make example` (which builds everything and sets ACEUQ, ACEUQ_LMP, ACEUQ_PLUGIN_DIR).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
aceuq=${ACEUQ:-$root/target/release/aceuq}
lmp=${ACEUQ_LMP:-$root/.venv/bin/lmp}
plugin=${ACEUQ_PLUGIN_DIR:-$root/build}/aceuqplugin.so
out=${EXAMPLE_OUT:-$root/runs/example}
data=$root/tests/data/li
mkdir -p "$out"
cd "$out"
rm -f candidates.xyz for_dft.xyz candidates_snap.xyz frames.csv label.log

echo "== 1. fit a linear ACE potential with uncertainty on 50 frames of liquid Li at 600 K"
"$aceuq" fit --train "$data/train.xyz" --valid "$data/valid.xyz" --species Li \
    --active-set --clusters 4 --contact --out li.aceuq

echo
echo "== 2. statistical cutoffs for the run we are about to watch (250 atoms x 1000 checks)"
echo "   on frames of four independent runs (calib.xyz), plus labelled structures beyond the training"
echo "   liquid (unstable.xyz: what the labelled candidates of a first run would be)"
"$aceuq" calibrate --model li.aceuq --valid "$data/calib.xyz" --high "$data/unstable.xyz" \
    --pool-size 250000

echo
echo "== 3. LAMMPS: heat the liquid from 600 K towards 4000 K, dump candidates, halt when unstable"
"$aceuq" to-lammps --data "$data/test.xyz" --frame 0 --out data.lmp
"$lmp" -nocite -log log.lammps -var plugin "$plugin" -var model li.aceuq -var data data.lmp \
    -var candidates candidates.xyz -var tfinal 4000 -var steps 40000 -in "$here/in.heat" > lammps.out
grep -E "^fix ace/uq/watch|halting" lammps.out || true

. "$here/../watch_outcome.sh"
watch_outcome "$aceuq" li.aceuq

if [ -s candidates.xyz ]; then
    echo
    echo "== 6. check against the reference: the SNAP that labelled the training data, on the dumped frames"
    if python3 "$root/scripts/label.py" --labeller li-snap --lmp "$lmp" candidates.xyz \
        candidates_snap.xyz > label.log 2>&1; then
        "$aceuq" check-cutoffs --model li.aceuq --data candidates_snap.xyz --frames frames.csv > /dev/null
        # Largest true force error of each dumped frame (the gamma rows: one per frame).
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            $col["method"] == "gamma" {
                e = $col["max_force_error"] + 0; n++
                if (e > 1) above++
                if (e > worst) worst = e
                if ($col["config_type"] == "halt") halt = e
            }
            END {
                printf "largest true force error on the %d dumped frames: %.2f eV/A; %d above 1 eV/A\n", n, worst, above
                if (halt != "") printf "on the frame the watch halted at: %.2f eV/A\n", halt
            }' frames.csv
    else
        echo "skipped: labelling with the reference SNAP failed (a LAMMPS without ML-SNAP or its"
        echo "potentials folder?), see $out/label.log"
    fi
fi
echo
echo "outputs in $out: li.aceuq, log.lammps and, when written, candidates.xyz, for_dft.xyz," \
    "candidates_snap.xyz"
