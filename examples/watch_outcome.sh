# Sourced by the examples' run.sh: what the watch did (from candidates.xyz), then the D-optimal
# pick of frames for DFT. Usage: watch_outcome ACEUQ MODEL
watch_outcome() {
    local aceuq=$1 model=$2
    echo
    echo "== 4. what happened"
    if [ -s candidates.xyz ]; then
        local nframes first line step val
        nframes=$(grep -c 'Lattice=' candidates.xyz)
        first=$(grep -m1 -o ' step=[0-9]*' candidates.xyz | cut -d= -f2)
        echo "candidates.xyz: $nframes frames with atoms above the lower cutoff, the first at step $first"
        if grep -q 'config_type=halt' candidates.xyz; then
            line=$(grep 'config_type=halt' candidates.xyz | tail -1)
            step=$(echo "$line" | grep -o ' step=[0-9]*' | cut -d= -f2)
            val=$(echo "$line" | grep -o 'max_value=[0-9.e+-]*' | cut -d= -f2)
            local q jurors
            q=$(echo "$line" | grep -o ' quantity=[a-z_]*' | cut -d= -f2)
            # Halting by the jurors of upper auto/vote: vote_p_frame="m:p m:p ..." (quoted when
            # there are several), and n_above_upper counts the jurors' atoms above their cutoffs.
            jurors=$(echo "$line" | grep -o 'vote_p_frame=\("[^"]*"\|[^ ]*\)' | cut -d= -f2 | tr -d '"' || true)
            if echo "$line" | grep -q ' n_above_upper=[1-9]'; then
                if [ -n "$jurors" ]; then
                    echo "the run halted at step $step: an atom is above a juror's upper cutoff" \
                        "(frame probabilities $jurors; largest $q $val)"
                else
                    echo "the run halted at step $step: an atom reached $q = $val, above the upper cutoff"
                fi
            else
                # A frame rule halted: the frame's probability of an error above e_max reached
                # p_halt (the watched quantity's, or the jurors').
                [ -n "$jurors" ] || jurors="$q:$(echo "$line" | grep -o ' p_frame=[0-9.e+-]*' | cut -d= -f2 || true)"
                echo "the run halted at step $step by a frame rule: P(some atom errs above e_max) = $jurors" \
                    "(method:probability; largest $q $val)"
            fi
        fi
        echo
        echo "== 5. pick the 5 frames that most enlarge the active sets, for DFT labelling"
        if grep -q 'config_type=candidate' candidates.xyz; then
            "$aceuq" select --model "$model" --candidates candidates.xyz --max 5 --out for_dft.xyz
        else
            # select leaves halt frames out (they may be unphysical already).
            echo "nothing to pick: the only frame dumped is the halt frame" \
                "(aceuq select --include-halted offers it)"
        fi
    else
        echo "no frame went above the lower cutoff"
    fi
}
