//! MPI: an error on one rank ends the run on every rank, with the message, quickly (no hang);
//! an error every rank sees is reported once. Runs the real LAMMPS with the plugin on 2 ranks
//! (`processors 2 1 1`: rank 0 owns x < 20 Å, rank 1 x >= 20 Å) with the bad atom deep inside
//! rank 0's domain, so that rank 1 has nothing wrong and would wait forever in a collective if
//! rank 0's error did not end the job.

mod common;
use common::*;
use std::time::{Duration, Instant};

const SUITE: &str = "lammps_mpi_errors";

/// Well below `common::TIMEOUT`: an error must end the run in seconds, not by the watchdog.
const PROMPT: Duration = Duration::from_secs(90);

/// A 40 × 20 × 20 Å box split between two ranks along x; `atoms` adds atoms (x in Å).
fn input(atoms: &str, pair_file: &str, tail: &str) -> String {
    format!(
        "plugin load ${{plugin}}
units metal
boundary p p p
atom_style atomic
processors 2 1 1
region box block 0 40 0 20 0 20 units box
create_box 1 box
mass 1 6.94
{atoms}
create_atoms 1 single 30.0 10.0 10.0 units box
create_atoms 1 single 32.7 10.2 9.9 units box
create_atoms 1 single 11.0 12.0 10.0 units box
pair_style ace/uq
pair_coeff * * {pair_file} Li
thermo 1
{tail}
"
    )
}

fn run_case(s: &Setup, case: &str, input: &str, model: &aceuq::model::Model) -> (Run, Duration) {
    let dir = workdir(SUITE, case);
    save_model(model, &dir, "model.aceuq");
    let bytes = std::fs::read(dir.join("model.aceuq")).unwrap();
    let mut corrupt = bytes.clone();
    let n = corrupt.len();
    corrupt[n - 10] ^= 0x40;
    std::fs::write(dir.join("corrupt.aceuq"), corrupt).unwrap();
    let t0 = Instant::now();
    let r = run_lammps_in(s, &dir, input, Some(2), None);
    (r, t0.elapsed())
}

fn assert_prompt_failure(r: &Run, took: Duration, needle: &str, case: &str) {
    r.assert_clean_failure_modes(case);
    r.assert_reported(needle, case);
    assert!(
        !r.status.success(),
        "{case}: exit {} after an error\n{}",
        r.status,
        r.output
    );
    assert!(
        took < PROMPT,
        "{case}: took {took:?} to end after an error on one rank"
    );
    note(&format!(
        "{case}: 2 ranks ended in {:.1} s with exit {} and `{needle}`",
        took.as_secs_f64(),
        r.status
    ));
}

#[test]
fn an_error_on_one_rank_ends_every_rank_promptly() {
    let Some(s) = setup_mpi("an_error_on_one_rank_ends_every_rank_promptly") else {
        return;
    };
    let model = fit_model("tests/data/li/train.xyz", 4, &["Li"]);
    // Two atoms at the same place, owned by rank 0 only: the library refuses the pair (the
    // direction between them is undefined), rank 0 calls error->one, MPI_Abort ends rank 1.
    let coincident = input(
        "create_atoms 1 single 10.0 10.0 10.0 units box\n\
         create_atoms 1 single 10.0 10.0 10.0 units box",
        "model.aceuq",
        "run 0",
    );
    let (r, took) = run_case(&s, "coincident_on_rank0", &coincident, &model);
    assert_prompt_failure(&r, took, "are at the same position", "coincident_on_rank0");
    r.assert_reported("ace/uq (step 0)", "coincident_on_rank0");

    // A position made NaN between runs, with `pre no` so that LAMMPS does not rebuild its
    // neighbour lists (which would catch it first): the pair style sees it and names the atom.
    let nan = input(
        "create_atoms 1 single 10.0 10.0 10.0 units box\n\
         create_atoms 1 single 12.6 10.3 10.1 units box",
        "model.aceuq",
        "run 0\n\
         variable bad atom (1e308*10)-(1e308*10)\n\
         set atom 2 x v_bad\n\
         run 1 pre no",
    );
    let (r, took) = run_case(&s, "nan_on_rank0", &nan, &model);
    assert_prompt_failure(&r, took, "non-finite position", "nan_on_rank0");
    r.assert_reported("atom 2 has a non-finite position", "nan_on_rank0");
}

#[test]
fn an_error_on_every_rank_is_reported_once() {
    let Some(s) = setup_mpi("an_error_on_every_rank_is_reported_once") else {
        return;
    };
    let model = fit_model("tests/data/li/train.xyz", 4, &["Li"]);
    let corrupt = input(
        "create_atoms 1 single 10.0 10.0 10.0 units box",
        "corrupt.aceuq",
        "run 0",
    );
    let (r, took) = run_case(&s, "corrupt_model", &corrupt, &model);
    assert_prompt_failure(&r, took, "checksum mismatch", "corrupt_model");
    assert_eq!(
        r.count("ERROR: ace/uq: cannot load model"),
        1,
        "error->all prints once:\n{}",
        r.output
    );
}
