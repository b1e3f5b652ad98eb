//! The C ABI exercised from Rust: results equal the library's own evaluation, every error path
//! gives a status and a message, and panics are caught.

use super::*;
use crate::model::{Model, Workspace};
use crate::testing::{random_model, random_structure, small_cfg};
use std::ffi::CString;

fn last_error() -> String {
    // SAFETY: aceuq_last_error never returns NULL.
    unsafe { CStr::from_ptr(aceuq_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn save_model(name: &str, species: &[&str]) -> (std::path::PathBuf, Model) {
    let m = random_model(species, &small_cfg(), 31);
    let dir = crate::testing::scratch_dir(&format!("ffi-{name}"));
    let p = dir.join("m.aceuq");
    Potential::new(m.clone()).save(&p).unwrap();
    (p, m)
}

fn load(p: &std::path::Path) -> *mut aceuq_model_t {
    let c = CString::new(p.to_str().unwrap()).unwrap();
    let mut h = std::ptr::null_mut();
    // SAFETY: valid string and out pointer.
    let st = unsafe { aceuq_model_load(c.as_ptr(), &mut h) };
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_OK, "{}", last_error());
    h
}

/// Positions, species, neighbour offsets, neighbour indices and owner of every atom.
type LammpsLike = (Vec<f64>, Vec<i32>, Vec<i32>, Vec<i32>, Vec<usize>);

/// Lay a periodic structure out the way LAMMPS does: owned atoms, then one ghost per
/// neighbour image, with a map from ghost to owner (for the reverse communication of forces).
fn lammps_like(s: &crate::Structure, m: &Model) -> LammpsLike {
    let nl = crate::neighbors::build(s, m.max_cutoff()).unwrap();
    let sp = m.map_species(s).unwrap();
    let n = s.len();
    let mut x: Vec<f64> = s.positions.iter().flat_map(|p| *p).collect();
    let mut species: Vec<i32> = sp.iter().map(|&v| v as i32).collect();
    let mut owner: Vec<usize> = (0..n).collect();
    let mut offsets = vec![0i32];
    let mut neigh = vec![];
    for i in 0..n {
        for k in nl.range(i) {
            let g = x.len() / 3;
            let p = s.positions[i];
            x.extend([
                p[0] + nl.rij[k][0],
                p[1] + nl.rij[k][1],
                p[2] + nl.rij[k][2],
            ]);
            species.push(sp[nl.j[k] as usize] as i32);
            owner.push(nl.j[k] as usize);
            neigh.push(g as i32);
        }
        offsets.push(neigh.len() as i32);
    }
    (x, species, offsets, neigh, owner)
}

/// The C view of a LAMMPS-like layout (see [`lammps_like`]): every local atom is a centre.
fn system(
    x: &[f64],
    species: &[i32],
    offsets: &[i32],
    neigh: &[i32],
    ilist: &[i32],
    tags: Option<&[i64]>,
) -> aceuq_system_t {
    aceuq_system_t {
        nlocal: ilist.len() as i32,
        nall: species.len() as i32,
        x: x.as_ptr(),
        species: species.as_ptr(),
        tag: tags.map_or(std::ptr::null(), |t| t.as_ptr()),
        inum: ilist.len() as i32,
        ilist: ilist.as_ptr(),
        offsets: offsets.as_ptr(),
        neigh: neigh.as_ptr(),
    }
}

#[test]
fn compute_through_the_abi_equals_predict_including_ghosts() {
    let (path, m) = save_model("compute", &["Al", "Mg"]);
    let h = load(&path);
    let s = random_structure(&["Al", "Mg"], 2, 77, true);
    let (x, species, offsets, neigh, owner) = lammps_like(&s, &m);
    let nlocal = s.len();
    let nall = species.len();
    let ilist: Vec<i32> = (0..nlocal as i32).collect();
    let tags: Vec<i64> = owner.iter().map(|&o| o as i64 + 1).collect();
    let sys = system(&x, &species, &offsets, &neigh, &ilist, Some(&tags));
    let mut energy = 0.0;
    let mut eatom = vec![0.0; nlocal];
    let mut fij = vec![0.0; 3 * neigh.len()];
    let res = aceuq_results_t {
        energy: &mut energy,
        eatom: eatom.as_mut_ptr(),
        fij: fij.as_mut_ptr(),
        n_uq: 0,
        uq_methods: std::ptr::null(),
        uq_values: std::ptr::null(),
        ens_forces: std::ptr::null_mut(),
        gamma_local_cluster: std::ptr::null_mut(),
    };
    // SAFETY: arrays sized as documented.
    let st = unsafe { aceuq_compute(h, &sys, &res) };
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_OK, "{}", last_error());
    // Scatter like the pair style, then fold ghost forces onto owners (reverse communication).
    let mut f = vec![[0.0; 3]; nall];
    for i in 0..nlocal {
        for k in offsets[i] as usize..offsets[i + 1] as usize {
            let j = neigh[k] as usize;
            for d in 0..3 {
                f[i][d] += fij[3 * k + d];
                f[j][d] -= fij[3 * k + d];
            }
        }
    }
    let mut folded = vec![[0.0; 3]; nlocal];
    for g in 0..nall {
        for d in 0..3 {
            folded[owner[g]][d] += f[g][d];
        }
    }
    let mut ws = Workspace::new(&m);
    let p = m.predict(&s, &mut ws).unwrap();
    assert!((energy - p.energy).abs() < 1e-10 * p.energy.abs());
    for i in 0..nlocal {
        assert!((eatom[i] - p.atom_energies[i]).abs() < 1e-10);
        for d in 0..3 {
            assert!((folded[i][d] - p.forces[i][d]).abs() < 1e-10, "atom {i}");
        }
    }
    // A model without uncertainty refuses a request for it, naming the fix.
    let methods = [aceuq_method_t::ACEUQ_METHOD_GAMMA as i32];
    let mut g = vec![0.0; nlocal];
    let outs = [g.as_mut_ptr()];
    let res2 = aceuq_results_t {
        n_uq: 1,
        uq_methods: methods.as_ptr(),
        uq_values: outs.as_ptr(),
        ..res
    };
    // SAFETY: as above.
    let st = unsafe { aceuq_compute(h, &sys, &res2) };
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_MISSING);
    assert!(
        last_error().contains("no 'gamma' uncertainty"),
        "{}",
        last_error()
    );
    // Non-finite position: error names the atom ID.
    let mut xbad = x.clone();
    xbad[3 * 5 + 1] = f64::NAN;
    let sys_bad = aceuq_system_t {
        x: xbad.as_ptr(),
        ..sys
    };
    // SAFETY: as above.
    let st = unsafe { aceuq_compute(h, &sys_bad, &res) };
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_DATA);
    assert!(
        last_error().contains("atom 6 has a non-finite position"),
        "{}",
        last_error()
    );
    // SAFETY: handle from aceuq_model_load.
    unsafe { aceuq_model_free(h) };
}

/// Issue 21: an atom on its own periodic image was reported as "atoms 1 and 1 are at the same
/// position", and a coordinate of 1e300 (which makes every image coincide) the same way.
#[test]
fn coincident_self_image_names_the_atom_once_and_huge_coordinates_are_refused() {
    let (path, m) = save_model("selfimage", &["Al", "Mg"]);
    let h = load(&path);
    let s = random_structure(&["Al", "Mg"], 2, 78, true);
    let (x, species, offsets, neigh, owner) = lammps_like(&s, &m);
    let nlocal = s.len();
    let ilist: Vec<i32> = (0..nlocal as i32).collect();
    let mut energy = 0.0;
    let mut fij = vec![0.0; 3 * neigh.len()];
    let res = aceuq_results_t {
        energy: &mut energy,
        eatom: std::ptr::null_mut(),
        fij: fij.as_mut_ptr(),
        n_uq: 0,
        uq_methods: std::ptr::null(),
        uq_values: std::ptr::null(),
        ens_forces: std::ptr::null_mut(),
        gamma_local_cluster: std::ptr::null_mut(),
    };
    // The first neighbour of atom 1 becomes a ghost of atom 1 itself, at its position.
    let g = neigh[0] as usize;
    let mut tags: Vec<i64> = owner.iter().map(|&o| o as i64 + 1).collect();
    tags[g] = 1;
    let mut xs = x.clone();
    xs.copy_within(0..3, 3 * g);
    let sys = system(&xs, &species, &offsets, &neigh, &ilist, Some(&tags));
    // SAFETY: arrays sized as documented.
    let st = unsafe { aceuq_compute(h, &sys, &res) };
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_DATA);
    let msg = last_error();
    assert!(
        msg.contains("atom 1 is at the same position") && msg.contains("its own periodic image"),
        "{msg}"
    );
    assert!(!msg.contains("atoms 1 and 1"), "{msg}");
    // A coordinate of 1e300: its own error naming the atom, not a coincidence.
    let tags: Vec<i64> = owner.iter().map(|&o| o as i64 + 1).collect();
    let mut xh = x.clone();
    xh[3 * 3] = 1e300;
    let sys = system(&xh, &species, &offsets, &neigh, &ilist, Some(&tags));
    // SAFETY: as above.
    let st = unsafe { aceuq_compute(h, &sys, &res) };
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_DATA);
    let msg = last_error();
    assert!(
        msg.contains("atom 4 is at") && msg.contains("beyond 1e7 Å"),
        "{msg}"
    );
    // SAFETY: handle from aceuq_model_load.
    unsafe { aceuq_model_free(h) };
}

#[test]
fn queries_and_error_paths() {
    let (path, _m) = save_model("queries", &["Li"]);
    let h = load(&path);
    let mut n = 0;
    let mut rc = 0.0;
    let name = CString::new("Li").unwrap();
    let other = CString::new("Na").unwrap();
    let mut idx = -7;
    let mut buf = [0 as c_char; 8];
    // SAFETY: valid pointers throughout; NULLs passed on purpose where tested.
    unsafe {
        assert_eq!(
            aceuq_model_nspecies(h, &mut n),
            aceuq_status_t::ACEUQ_STATUS_OK
        );
        assert_eq!(n, 1);
        assert_eq!(
            aceuq_model_cutoff(h, &mut rc),
            aceuq_status_t::ACEUQ_STATUS_OK
        );
        assert!(rc > 4.0);
        assert_eq!(
            aceuq_model_species_index(h, name.as_ptr(), &mut idx),
            aceuq_status_t::ACEUQ_STATUS_OK
        );
        assert_eq!(idx, 0);
        assert_eq!(
            aceuq_model_species_index(h, other.as_ptr(), &mut idx),
            aceuq_status_t::ACEUQ_STATUS_DATA
        );
        assert!(last_error().contains("species 'Na' is not in the model (model species: Li)"));
        assert_eq!(
            aceuq_model_species_name(h, 0, buf.as_mut_ptr(), buf.len()),
            aceuq_status_t::ACEUQ_STATUS_OK
        );
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), "Li");
        assert_eq!(
            aceuq_model_species_name(h, 0, buf.as_mut_ptr(), 2),
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            aceuq_model_species_name(h, 3, buf.as_mut_ptr(), 8),
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT
        );
        // NULL handles and outputs.
        assert_eq!(
            aceuq_model_nspecies(std::ptr::null(), &mut n),
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "model handle is NULL");
        assert_eq!(
            aceuq_model_cutoff(h, std::ptr::null_mut()),
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            aceuq_compute(h, std::ptr::null(), std::ptr::null()),
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT
        );
        let mut id = 0;
        let gl = CString::new("gamma_local").unwrap();
        assert_eq!(
            aceuq_method_t_from_name(gl.as_ptr(), &mut id),
            aceuq_status_t::ACEUQ_STATUS_OK
        );
        assert_eq!(id, aceuq_method_t::ACEUQ_METHOD_GAMMA_LOCAL as i32);
        let mut has = 9;
        assert_eq!(
            aceuq_model_has_method(h, id, &mut has),
            aceuq_status_t::ACEUQ_STATUS_OK
        );
        assert_eq!(has, 0);
        let bogus = CString::new("variance").unwrap();
        assert_eq!(
            aceuq_method_t_from_name(bogus.as_ptr(), &mut id),
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT
        );
        assert!(last_error().contains("unknown uncertainty method 'variance'"));
        aceuq_model_free(h);
        aceuq_model_free(std::ptr::null_mut());
    }
    // Loading: missing file (Io), not a model (Format), NULL arguments.
    let missing = CString::new("/nonexistent/x.aceuq").unwrap();
    let mut out = std::ptr::null_mut();
    // SAFETY: valid pointers; NULL where tested.
    unsafe {
        assert_eq!(
            aceuq_model_load(missing.as_ptr(), &mut out),
            aceuq_status_t::ACEUQ_STATUS_IO
        );
        assert!(out.is_null());
        assert!(
            last_error().contains("/nonexistent/x.aceuq"),
            "{}",
            last_error()
        );
        let txt = path.with_extension("txt");
        std::fs::write(&txt, "hello\n").unwrap();
        let c = CString::new(txt.to_str().unwrap()).unwrap();
        assert_eq!(
            aceuq_model_load(c.as_ptr(), &mut out),
            aceuq_status_t::ACEUQ_STATUS_FORMAT
        );
        assert!(last_error().contains("not an aceuq model file"));
        assert_eq!(
            aceuq_model_load(std::ptr::null(), &mut out),
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            aceuq_model_load(c.as_ptr(), std::ptr::null_mut()),
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT
        );
    }
}

#[test]
fn panics_become_internal_errors() {
    let st = guard(|| panic!("boom {}", 42));
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_INTERNAL);
    assert_eq!(
        last_error(),
        "aceuq internal error (please report): boom 42"
    );
}

/// A two-species model with a 3-member ensemble and a global active set, fitted on data from a
/// random teacher outside its function space (so that members differ).
fn save_uq_model(name: &str) -> (std::path::PathBuf, Potential) {
    let cfg = crate::uq::UqConfig {
        active_set: true,
        ensemble: 3,
        ..Default::default()
    };
    let (m, _) = crate::testing::teacher_potential(26, 300, 22, &cfg);
    let dir = crate::testing::scratch_dir(&format!("ffi-{name}"));
    let p = dir.join("m.aceuq");
    m.save(&p).unwrap();
    (p, m)
}

/// The ensemble through the ABI, laid out as LAMMPS does (ghosts, force columns folded onto
/// owners): sigma equals the library's member-force spread; the forces of an ensemble step equal
/// those of a plain step to rounding; with another method in the same call (basis vectors from
/// the lane pass) its values equal a call without the ensemble.
#[test]
fn ensemble_through_the_abi_equals_the_library() {
    let (path, m) = save_uq_model("ensemble");
    let h = load(&path);
    let s = random_structure(&["Al", "Mg"], 2, 4040, true);
    let (x, species, offsets, neigh, owner) = lammps_like(&s, &m.model);
    let (nlocal, nall) = (s.len(), species.len());
    let ilist: Vec<i32> = (0..nlocal as i32).collect();
    let sys = system(&x, &species, &offsets, &neigh, &ilist, None);
    let (mut ne, mut nc) = (0, 0);
    // SAFETY: valid handle and out pointers.
    unsafe {
        assert_eq!(
            aceuq_model_ensemble_size(h, &mut ne),
            aceuq_status_t::ACEUQ_STATUS_OK
        );
        assert_eq!(
            aceuq_model_ensemble_columns(h, &mut nc),
            aceuq_status_t::ACEUQ_STATUS_OK
        );
    }
    assert_eq!((ne, nc), (3, 2));
    let nc = nc as usize;
    // One call per request: none, ensemble, gamma, ensemble + gamma.
    let run = |methods: &[aceuq_method_t]| {
        let mut energy = 0.0;
        let mut fij = vec![0.0; 3 * neigh.len()];
        let mut vals = vec![vec![-1.0; nlocal]; methods.len()];
        let outs: Vec<*mut f64> = vals.iter_mut().map(|v| v.as_mut_ptr()).collect();
        let ids: Vec<i32> = methods.iter().map(|&m| m as i32).collect();
        let mut ens = vec![f64::NAN; 3 * nc * nall];
        let res = aceuq_results_t {
            energy: &mut energy,
            eatom: std::ptr::null_mut(),
            fij: fij.as_mut_ptr(),
            n_uq: ids.len() as i32,
            uq_methods: ids.as_ptr(),
            uq_values: outs.as_ptr(),
            ens_forces: ens.as_mut_ptr(),
            gamma_local_cluster: std::ptr::null_mut(),
        };
        // SAFETY: arrays sized as documented.
        let st = unsafe { aceuq_compute(h, &sys, &res) };
        assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_OK, "{}", last_error());
        let mut sigma = vec![f64::NAN; nlocal];
        if let Some(k) = methods
            .iter()
            .position(|&m| m == aceuq_method_t::ACEUQ_METHOD_ENSEMBLE)
        {
            // Reverse communication: ghost columns onto owners.
            for g in nlocal..nall {
                for c in 0..3 * nc {
                    ens[owner[g] * 3 * nc + c] += ens[g * 3 * nc + c];
                }
            }
            // SAFETY: as above.
            let st = unsafe {
                aceuq_ensemble_sigma(
                    h,
                    nlocal as i32,
                    species.as_ptr(),
                    nlocal as i32,
                    ilist.as_ptr(),
                    ens.as_ptr(),
                    sigma.as_mut_ptr(),
                )
            };
            assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_OK, "{}", last_error());
            vals[k] = sigma;
        }
        (energy, fij, vals)
    };
    use aceuq_method_t::{ACEUQ_METHOD_ENSEMBLE as ENS, ACEUQ_METHOD_GAMMA as GAMMA};
    let (e_plain, f_plain, _) = run(&[]);
    let (e_ens, f_ens, v_ens) = run(&[ENS]);
    let (_, _, v_gamma) = run(&[GAMMA]);
    let (e_both, f_both, v_both) = run(&[GAMMA, ENS]);
    let lib =
        m.uq.ensemble
            .as_ref()
            .unwrap()
            .sigma_structure(&m.model, &s, &mut Workspace::new(&m.model))
            .unwrap();
    for i in 0..nlocal {
        assert!(lib[i] > 0.0);
        assert!(
            (v_ens[0][i] - lib[i]).abs() <= 1e-9 * lib[i],
            "atom {i}: {} vs library {}",
            v_ens[0][i],
            lib[i]
        );
        assert_eq!(v_both[1][i], v_ens[0][i], "atom {i}");
        let g = v_gamma[0][i];
        assert!(
            (v_both[0][i] - g).abs() <= 1e-12 * g.abs().max(1.0),
            "atom {i}"
        );
    }
    let fmax = f_plain.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let dmax = f_plain
        .iter()
        .zip(&f_ens)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    eprintln!("ensemble step vs plain step: max |dfij| {dmax:.3e} (max |fij| {fmax:.3e})");
    assert!(dmax <= 1e-12 * fmax, "{dmax} vs {fmax}");
    assert_eq!(f_both, f_ens);
    assert!((e_ens - e_plain).abs() <= 1e-12 * e_plain.abs());
    assert_eq!(e_both, e_ens);
    // SAFETY: handle from aceuq_model_load.
    unsafe { aceuq_model_free(h) };
}

/// Output arrays: a method listed twice with one array is written once; arrays that overlap are
/// refused (they would become aliasing mutable slices); `energy` may point anywhere; a method
/// the model lacks is reported as missing before a later malformed entry.
#[test]
fn output_arrays_may_not_overlap_and_errors_keep_their_order() {
    let (path, m) = save_uq_model("outputs");
    let h = load(&path);
    let s = random_structure(&["Al", "Mg"], 2, 4041, true);
    let (x, species, offsets, neigh, _) = lammps_like(&s, &m.model);
    let nlocal = s.len();
    let ilist: Vec<i32> = (0..nlocal as i32).collect();
    let sys = system(&x, &species, &offsets, &neigh, &ilist, None);
    let gamma = aceuq_method_t::ACEUQ_METHOD_GAMMA as i32;
    let mut fij = vec![0.0; 3 * neigh.len()];
    let pf = fij.as_mut_ptr();
    let call = |methods: &[i32], outs: &[*mut f64], eatom: *mut f64, energy: *mut f64| {
        let res = aceuq_results_t {
            energy,
            eatom,
            fij: pf,
            n_uq: methods.len() as i32,
            uq_methods: methods.as_ptr(),
            uq_values: outs.as_ptr(),
            ens_forces: std::ptr::null_mut(),
            gamma_local_cluster: std::ptr::null_mut(),
        };
        // SAFETY: every array holds what aceuq_results_t documents (fij: 3 * nnz, the others
        // nlocal).
        unsafe { aceuq_compute(h, &sys, &res) }
    };
    let ok = aceuq_status_t::ACEUQ_STATUS_OK;
    // Reference: gamma alone.
    let mut g1 = vec![0.0; nlocal];
    assert_eq!(
        call(
            &[gamma],
            &[g1.as_mut_ptr()],
            std::ptr::null_mut(),
            std::ptr::null_mut()
        ),
        ok
    );
    assert!(g1.iter().all(|&v| v > 0.0));
    // Twice into the same array: the same values.
    let mut g2 = vec![0.0; nlocal];
    let p2 = g2.as_mut_ptr();
    assert_eq!(
        call(
            &[gamma, gamma],
            &[p2, p2],
            std::ptr::null_mut(),
            std::ptr::null_mut()
        ),
        ok
    );
    assert_eq!(g1, g2);
    // `energy` inside the per-atom energies: allowed, written after them.
    let mut eatom = vec![0.0; nlocal + 1];
    let pe = eatom.as_mut_ptr();
    // SAFETY: one past the nlocal values the call writes as eatom, still inside `eatom`.
    let pen = unsafe { pe.add(nlocal) };
    assert_eq!(call(&[], &[], pe, pen), ok, "{}", last_error());
    let sum: f64 = eatom[..nlocal].iter().sum();
    assert!((eatom[nlocal] - sum).abs() < 1e-9 * sum.abs());
    // eatom and gamma overlapping by all but one value: refused, both named.
    let mut both = vec![0.0; nlocal + 1];
    let pb = both.as_mut_ptr();
    // SAFETY: inside `both`.
    let pb1 = unsafe { pb.add(1) };
    let st = call(&[gamma], &[pb1], pb, std::ptr::null_mut());
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT);
    let e = last_error();
    assert!(
        e.contains("overlap") && e.contains("eatom") && e.contains("gamma"),
        "{e}"
    );
    // A method the model lacks comes first, before a NULL array listed after it.
    let gp = aceuq_method_t::ACEUQ_METHOD_GP as i32;
    let st = call(
        &[gp, gamma],
        &[g1.as_mut_ptr(), std::ptr::null_mut()],
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_MISSING, "{}", last_error());
    // SAFETY: handle from aceuq_model_load.
    unsafe { aceuq_model_free(h) };
}

/// Per-cluster cutoffs and clusters through the ABI: the number of clusters of each species;
/// a cluster with its own stored cutoffs gets them, one without falls back to the species-level
/// entry (flagged); bad method, species and cluster indices and NULL outputs are refused with a
/// message; `aceuq_compute` hands out the cluster of every atom, the library's, only when
/// gamma_local is requested, and checks the cluster array like the others.
#[test]
fn gamma_local_clusters_and_their_cutoffs_through_the_abi() {
    use crate::stats::cutoff::{CalibrationOptions, calibrate};
    let (mut pot, valid) = crate::testing::clustered_potential(2);
    let gl = Method::GammaLocal;
    // Species-level entries for both species (from the data), and for Al cluster 1 an entry of
    // its own with recognizable cutoffs.
    let errors = crate::uq::force_errors(&pot.model, &valid).unwrap();
    let u = pot.per_atom(&valid, gl).unwrap();
    let pairs = crate::uq::pairs_by_species(&pot.model, &valid, &errors, &u);
    for (name, (e, v)) in pot.model.species.clone().iter().zip(pairs) {
        let c = calibrate(name, gl.name(), &e, &v, &CalibrationOptions::new(1000)).unwrap();
        pot.uq.calibration.push(c);
    }
    let mut own = pot.uq.calibration[0].clone();
    (own.cluster, own.u_c, own.u_max) = (Some(1), 0.125, 7.5);
    pot.uq.calibration.push(own);
    let n_al = pot.uq.gamma_local_clusters(0).unwrap();
    let n_mg = pot.uq.gamma_local_clusters(1).unwrap();
    assert!(
        n_al >= 2 && n_mg >= 1,
        "{n_al} {n_mg} clusters ({:?})",
        pot.uq.local.as_ref().map(|l| &l.info.notes)
    );
    let dir = crate::testing::scratch_dir("ffi-clusters");
    let path = dir.join("m.aceuq");
    pot.save(&path).unwrap();
    let h = load(&path);
    let (al_lo, al_hi) = pot.stored_cutoffs(gl, 0).unwrap();
    let (mg_lo, mg_hi) = pot.stored_cutoffs(gl, 1).unwrap();
    let gli = aceuq_method_t::ACEUQ_METHOD_GAMMA_LOCAL as i32;
    let inval = aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT;
    let ok = aceuq_status_t::ACEUQ_STATUS_OK;
    let cut = |method: i32, s: i32, c: i32| {
        let (mut lo, mut hi, mut flag) = (f64::NAN, f64::NAN, -1);
        // SAFETY: valid handle and outputs.
        let st =
            unsafe { aceuq_model_uq_cluster_cutoffs(h, method, s, c, &mut lo, &mut hi, &mut flag) };
        (st, lo, hi, flag)
    };
    // SAFETY: valid handle; NULLs where tested.
    unsafe {
        let mut n = -1;
        assert_eq!(aceuq_model_gamma_local_clusters(h, 0, &mut n), ok);
        assert_eq!(n as usize, n_al);
        assert_eq!(aceuq_model_gamma_local_clusters(h, 1, &mut n), ok);
        assert_eq!(n as usize, n_mg);
        assert_eq!(aceuq_model_gamma_local_clusters(h, 2, &mut n), inval);
        assert!(
            last_error().contains("species index 2 out of range"),
            "{}",
            last_error()
        );
        assert_eq!(aceuq_model_gamma_local_clusters(h, -1, &mut n), inval);
        assert_eq!(
            aceuq_model_gamma_local_clusters(h, 0, std::ptr::null_mut()),
            inval
        );
        assert_eq!(last_error(), "out is NULL");
        // Own entry, and the species-level fallback for every other cluster.
        assert_eq!(cut(gli, 0, 1), (ok, 0.125, 7.5, 1));
        assert_eq!(cut(gli, 0, 0), (ok, al_lo, al_hi, 0));
        for c in 0..n_mg as i32 {
            assert_eq!(cut(gli, 1, c), (ok, mg_lo, mg_hi, 0));
        }
        // The per-cluster flag may be NULL.
        let (mut lo, mut hi) = (0.0, 0.0);
        assert_eq!(
            aceuq_model_uq_cluster_cutoffs(h, gli, 0, 1, &mut lo, &mut hi, std::ptr::null_mut()),
            ok
        );
        assert_eq!((lo, hi), (0.125, 7.5));
        // Bad indices and outputs.
        let (st, ..) = cut(gli, 0, n_al as i32);
        assert_eq!(st, inval);
        let e = last_error();
        assert!(
            e.contains(&format!("cluster index {n_al} out of range"))
                && e.contains(&format!("species Al has {n_al} gamma_local clusters")),
            "{e}"
        );
        assert_eq!(cut(gli, 0, -1).0, inval);
        assert!(last_error().contains("cluster index -1 out of range"));
        assert_eq!(cut(gli, 5, 0).0, inval);
        assert!(last_error().contains("species index 5 out of range"));
        assert_eq!(cut(77, 0, 0).0, inval);
        assert!(last_error().contains("method id 77 out of range"));
        assert_eq!(
            aceuq_model_uq_cluster_cutoffs(
                h,
                gli,
                0,
                0,
                std::ptr::null_mut(),
                &mut hi,
                std::ptr::null_mut()
            ),
            inval
        );
        assert_eq!(last_error(), "lower is NULL");
        // Another method has no per-cluster entries and no calibration here: missing.
        let (st, ..) = cut(aceuq_method_t::ACEUQ_METHOD_GAMMA as i32, 0, 0);
        assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_MISSING);
        assert!(last_error().contains("no calibrated cutoffs for 'gamma' of species Al"));
    }

    // The cluster of every atom from aceuq_compute equals the library's.
    let s = &valid[3];
    let (x, species, offsets, neigh, _) = lammps_like(s, &pot.model);
    let nlocal = s.len();
    let ilist: Vec<i32> = (0..nlocal as i32).collect();
    let sys = system(&x, &species, &offsets, &neigh, &ilist, None);
    let mut fij = vec![0.0; 3 * neigh.len()];
    let pf = fij.as_mut_ptr();
    let call = |methods: &[i32], outs: &[*mut f64], cluster: *mut i32| {
        let res = aceuq_results_t {
            energy: std::ptr::null_mut(),
            eatom: std::ptr::null_mut(),
            fij: pf,
            n_uq: methods.len() as i32,
            uq_methods: methods.as_ptr(),
            uq_values: outs.as_ptr(),
            ens_forces: std::ptr::null_mut(),
            gamma_local_cluster: cluster,
        };
        // SAFETY: every array holds what aceuq_results_t documents.
        unsafe { aceuq_compute(h, &sys, &res) }
    };
    let mut g = vec![0.0; nlocal];
    let mut cl = vec![-1i32; nlocal];
    assert_eq!(
        call(&[gli], &[g.as_mut_ptr()], cl.as_mut_ptr()),
        ok,
        "{}",
        last_error()
    );
    let (lib_g, lib_c) = pot.gamma_local_per_atom(std::slice::from_ref(s)).unwrap();
    let lib_c: Vec<i32> = lib_c[0].iter().map(|&c| c as i32).collect();
    assert_eq!(cl, lib_c);
    assert!(cl.contains(&0) && cl.contains(&1), "{cl:?}");
    for (a, b) in g.iter().zip(&lib_g[0]) {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
    }
    // Without the cluster array: the same values, nothing else written.
    let mut g2 = vec![0.0; nlocal];
    assert_eq!(call(&[gli], &[g2.as_mut_ptr()], std::ptr::null_mut()), ok);
    assert_eq!(g, g2);
    // The cluster array without gamma_local requested, or overlapping another output: refused,
    // nothing written.
    let mut cl2 = vec![-1i32; nlocal];
    assert_eq!(call(&[], &[], cl2.as_mut_ptr()), inval);
    assert!(
        last_error().contains("gamma_local is not among the requested methods"),
        "{}",
        last_error()
    );
    assert!(cl2.iter().all(|&c| c == -1));
    let st = call(&[gli], &[g.as_mut_ptr()], g.as_mut_ptr().cast::<i32>());
    assert_eq!(st, inval);
    let e = last_error();
    assert!(
        e.contains("overlap") && e.contains("gamma_local_cluster") && e.contains("gamma_local"),
        "{e}"
    );
    // SAFETY: handle from aceuq_model_load.
    unsafe { aceuq_model_free(h) };
    let _ = std::fs::remove_dir_all(&dir);
}

/// Calibration notes through the ABI: why an entry has no upper cutoff (the cutoffs are then
/// +inf), its caveats and the one-line summary, for species-level entries and clusters (own or
/// falling back); `snprintf`-like truncation at a character boundary with the size needed; bad
/// arguments refused with a message.
#[test]
fn calibration_notes_through_the_abi() {
    use crate::stats::cutoff::{CalibrationOptions, UpperRule, calibrate};
    use crate::stats::upper::{ConditionalUpper, ErrorScale};
    let (mut pot, valid) = crate::testing::clustered_potential(2);
    let gl = Method::GammaLocal;
    let errors = crate::uq::force_errors(&pot.model, &valid).unwrap();
    let u = pot.per_atom(&valid, gl).unwrap();
    let pairs = crate::uq::pairs_by_species(&pot.model, &valid, &errors, &u);
    let mut opts = CalibrationOptions::new(1000);
    opts.upper_rule = UpperRule::Ratio;
    for (name, (e, v)) in pot.model.species.clone().iter().zip(pairs) {
        let mut c = calibrate(name, gl.name(), &e, &v, &opts).unwrap();
        c.warnings.clear();
        pot.uq.calibration.push(c);
    }
    // Al (species 0): no upper cutoff, the reason stored by the conditional rule, and a caveat
    // with a two-byte character.
    let reason = "it saturates at 1.0000e0, where s(u) = 0.120 eV/Å is below the 0.650 eV/Å needed";
    let caveat = "only 150 validation atoms: the 1 - 1/N tails are poorly determined (Å)";
    let al = &mut pot.uq.calibration[0];
    assert_eq!(al.species, "Al");
    al.u_max = f64::INFINITY;
    al.upper_rule = UpperRule::Conditional;
    al.warnings = vec![caveat.into(), format!("no upper cutoff: {reason}")];
    al.conditional = Some(ConditionalUpper {
        scale: ErrorScale {
            a: 0.02,
            b: 0.1,
            k: 1.0,
        },
        n_fit: 150,
        n_high: 0,
        u_seen_max: 0.9,
        e_seen_max: 0.1,
        e_max: 1.0,
        p_halt: 0.5,
        s_halt: 0.65,
        u_sup: Some(1.0),
        u_max: None,
        reason: Some(reason.into()),
    });
    // Al cluster 1: an entry of its own, with an upper cutoff and a caveat of its own.
    let mut own = pot.uq.calibration[1].clone();
    (own.species, own.cluster, own.u_max) = ("Al".into(), Some(1), 7.5);
    own.warnings = vec!["uncertainties: no acceptable model".into()];
    pot.uq.calibration.push(own);
    let dir = crate::testing::scratch_dir("ffi-notes");
    let path = dir.join("m.aceuq");
    pot.save(&path).unwrap();
    let h = load(&path);
    let gli = aceuq_method_t::ACEUQ_METHOD_GAMMA_LOCAL as i32;
    let ok = aceuq_status_t::ACEUQ_STATUS_OK;
    let inval = aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT;
    let (summary, no_upper, caveats) = (
        aceuq_note_t::ACEUQ_NOTE_SUMMARY as i32,
        aceuq_note_t::ACEUQ_NOTE_NO_UPPER as i32,
        aceuq_note_t::ACEUQ_NOTE_CAVEATS as i32,
    );
    // The note into a buffer of `len` bytes: status, text, size needed.
    let note = |method: i32, s: i32, c: i32, part: i32, len: usize| {
        let mut buf = vec![b'#' as c_char; len + 4];
        let mut need = 0usize;
        // SAFETY: valid handle; buf holds len (+ 4 guard) bytes.
        let st = unsafe {
            aceuq_model_uq_calibration_note(h, method, s, c, part, buf.as_mut_ptr(), len, &mut need)
        };
        // Nothing written past len.
        assert!(buf[len..].iter().all(|&b| b == b'#' as c_char));
        let text = if st == ok && len > 0 {
            // SAFETY: NUL-terminated within len on success.
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_str()
                .expect("valid UTF-8")
                .to_string()
        } else {
            String::new()
        };
        (st, text, need)
    };
    let full = format!("no upper cutoff: {reason}; {caveat}");
    assert_eq!(
        note(gli, 0, -1, summary, 512),
        (ok, full.clone(), full.len() + 1)
    );
    assert_eq!(
        note(gli, 0, -1, no_upper, 512),
        (ok, reason.to_string(), reason.len() + 1)
    );
    assert_eq!(
        note(gli, 0, -1, caveats, 512),
        (ok, caveat.to_string(), caveat.len() + 1)
    );
    // The cutoffs say +inf for that entry, finite for the cluster with its own.
    let (mut lo, mut hi) = (0.0, 0.0);
    // SAFETY: valid handle and outputs.
    unsafe {
        assert_eq!(aceuq_model_uq_cutoffs(h, gli, 0, &mut lo, &mut hi), ok);
        assert_eq!(hi, f64::INFINITY);
        assert_eq!(
            aceuq_model_uq_cluster_cutoffs(h, gli, 0, 1, &mut lo, &mut hi, std::ptr::null_mut()),
            ok
        );
        assert_eq!(hi, 7.5);
    }
    // The frame rule: Al's error scale saturates at s(1) = 0.12 eV/Å, so millions of its atoms
    // would be needed to reach p_halt (the same number as the relation computes); Mg has no
    // fitted scale (ratio rule): missing; a species out of range: refused.
    let mut atoms = 0.0;
    // SAFETY: valid handle and output.
    unsafe {
        assert_eq!(
            aceuq_model_uq_frame_atoms_to_halt(h, gli, 0, &mut atoms),
            ok
        );
        let want = pot.uq.calibration[0]
            .conditional
            .as_ref()
            .unwrap()
            .atoms_to_halt(0.5);
        assert!(
            atoms == want && atoms > 1e6 && atoms.is_finite(),
            "{atoms} vs {want}"
        );
        assert_eq!(
            aceuq_model_uq_frame_atoms_to_halt(h, gli, 1, &mut atoms),
            aceuq_status_t::ACEUQ_STATUS_MISSING
        );
        assert_eq!(
            aceuq_model_uq_frame_atoms_to_halt(h, gli, 7, &mut atoms),
            inval
        );
    }
    // The question Al's relation answers (e_max, p_halt as calibrated); Mg has none: missing.
    let (mut e_max, mut p_halt) = (0.0, 0.0);
    let want = pot.uq.calibration[0].conditional.as_ref().unwrap();
    // SAFETY: valid handle and outputs (NULL outputs are refused, not written).
    unsafe {
        assert_eq!(
            aceuq_model_uq_error_limit(h, gli, 0, &mut e_max, &mut p_halt),
            ok
        );
        assert_eq!((e_max, p_halt), (want.e_max, want.p_halt));
        assert_eq!(
            aceuq_model_uq_error_limit(h, gli, 1, &mut e_max, &mut p_halt),
            aceuq_status_t::ACEUQ_STATUS_MISSING
        );
        assert!(
            last_error().contains("no fitted error scale"),
            "{}",
            last_error()
        );
        assert_eq!(
            aceuq_model_uq_error_limit(h, gli, 7, &mut e_max, &mut p_halt),
            inval
        );
        // Both outputs or neither: a NULL p_halt leaves e_max as it was.
        e_max = -7.0;
        assert_eq!(
            aceuq_model_uq_error_limit(h, gli, 0, &mut e_max, std::ptr::null_mut()),
            inval
        );
        assert_eq!(e_max, -7.0);
        assert!(last_error().contains("p_halt is NULL"), "{}", last_error());
        assert_eq!(
            aceuq_model_uq_error_limit(std::ptr::null(), gli, 0, &mut e_max, &mut p_halt),
            inval
        );
    }
    // Cluster 0 falls back to the species entry; cluster 1 has its own.
    assert_eq!(note(gli, 0, 0, summary, 512).1, full);
    let c1 = "uncertainties: no acceptable model";
    assert_eq!(
        note(gli, 0, 1, summary, 512),
        (ok, c1.to_string(), c1.len() + 1)
    );
    assert_eq!(note(gli, 0, 1, no_upper, 512), (ok, String::new(), 1));
    // Mg: nothing to say.
    assert_eq!(note(gli, 1, -1, summary, 512), (ok, String::new(), 1));
    // Truncation: len - 1 bytes, never half a character; the size needed tells.
    assert_eq!(
        note(gli, 0, -1, summary, 11),
        (ok, "no upper c".into(), full.len() + 1)
    );
    let at = caveat.find('Å').unwrap();
    let (st, cut, need) = note(gli, 0, -1, caveats, at + 2);
    assert_eq!((st, need), (ok, caveat.len() + 1));
    assert_eq!(
        cut,
        &caveat[..at],
        "cut before the two-byte character, not inside it"
    );
    assert_eq!(note(gli, 0, -1, caveats, at + 3).1, &caveat[..at + 2]);
    // The size alone: NULL buffer, len 0.
    let mut need = 0usize;
    // SAFETY: valid handle; nothing written to buf with len 0.
    let st = unsafe {
        aceuq_model_uq_calibration_note(h, gli, 0, -1, summary, std::ptr::null_mut(), 0, &mut need)
    };
    assert_eq!((st, need), (ok, full.len() + 1));
    // Bad arguments.
    let bad = |method: i32, s: i32, c: i32, part: i32| {
        let (st, _, need) = note(method, s, c, part, 64);
        assert_eq!(need, 0, "nothing reported on failure");
        (st, last_error())
    };
    let (st, e) = bad(gli, 0, -1, 3);
    assert!(st == inval && e.contains("note part 3 out of range"), "{e}");
    let (st, e) = bad(gli, 0, 2, summary);
    assert!(
        st == inval
            && e.contains("cluster index 2 out of range")
            && e.contains("-1 for the species"),
        "{e}"
    );
    let (st, e) = bad(gli, 0, -2, summary);
    assert!(
        st == inval && e.contains("cluster index -2 out of range"),
        "{e}"
    );
    let (st, e) = bad(gli, 7, -1, summary);
    assert!(
        st == inval && e.contains("species index 7 out of range"),
        "{e}"
    );
    let (st, e) = bad(99, 0, -1, summary);
    assert!(
        st == inval && e.contains("method id 99 out of range"),
        "{e}"
    );
    let (st, e) = bad(aceuq_method_t::ACEUQ_METHOD_GP as i32, 0, -1, summary);
    assert!(
        st == aceuq_status_t::ACEUQ_STATUS_MISSING
            && e.contains("no calibrated cutoffs for 'gp' of species Al"),
        "{e}"
    );
    // SAFETY: NULL buffer with a length, and a NULL handle: refused.
    unsafe {
        let st = aceuq_model_uq_calibration_note(
            h,
            gli,
            0,
            -1,
            summary,
            std::ptr::null_mut(),
            8,
            std::ptr::null_mut(),
        );
        assert_eq!(st, inval);
        assert!(last_error().contains("buf is NULL but len is 8"));
        let mut b = [0 as c_char; 8];
        let st = aceuq_model_uq_calibration_note(
            std::ptr::null(),
            gli,
            0,
            -1,
            summary,
            b.as_mut_ptr(),
            8,
            std::ptr::null_mut(),
        );
        assert_eq!(st, inval);
        assert_eq!(last_error(), "model handle is NULL");
        aceuq_model_free(h);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The halting rule `aceuq calibrate` chose, through the ABI: 0 and no text for a model that
/// stores none; 1 and the stored note for a vote, cut like `snprintf` with the size needed;
/// NULL outputs allowed, a NULL buffer with a length refused.
#[test]
fn halting_rule_through_the_abi() {
    let (mut pot, _) = crate::testing::clustered_potential(2);
    let dir = crate::testing::scratch_dir("ffi-halt-rule");
    let path = dir.join("none.aceuq");
    pot.save(&path).unwrap();
    let ok = aceuq_status_t::ACEUQ_STATUS_OK;
    let ask = |h: *mut aceuq_model_t, len: usize| {
        let mut buf = vec![b'#' as c_char; len + 4];
        let (mut vote, mut jury, mut need) = (-1i32, -1i32, 0usize);
        // SAFETY: valid handle; buf holds len (+ 4 guard) bytes.
        let st = unsafe {
            aceuq_model_halt_rule(h, &mut vote, &mut jury, buf.as_mut_ptr(), len, &mut need)
        };
        assert!(buf[len..].iter().all(|&b| b == b'#' as c_char));
        let text = if len > 0 {
            // SAFETY: NUL-terminated within len on success.
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        (st, vote, jury, text, need)
    };
    let h = load(&path);
    assert_eq!(ask(h, 64), (ok, 0, 0, String::new(), 1));
    // SAFETY: valid handle, freed once.
    unsafe { aceuq_model_free(h) };
    let rule = crate::stats::upper::HaltRule {
        rule: "vote".into(),
        jury: vec!["gamma".into(), "distance".into()],
        frames: 24,
        unstable: 9,
        frame_caught: 8,
        frame_false: 1,
        vote_caught: 9,
        vote_false: 1,
        e_max: 1.0,
        juror: Some("contact".into()),
        juror_caught: 8,
        juror_false: 0,
    };
    let note = rule.note();
    pot.uq.halt_rule = Some(rule.clone());
    let path = dir.join("vote.aceuq");
    pot.save(&path).unwrap();
    let h = load(&path);
    // The jury as a mask of method ids: gamma (0) and distance (3).
    let mask = 1 | 1 << 3;
    assert_eq!(ask(h, 1024), (ok, 1, mask, note.clone(), note.len() + 1));
    let (st, vote, _, cut, need) = ask(h, 20);
    assert_eq!((st, vote, need), (ok, 1, note.len() + 1));
    assert!(cut.len() <= 19 && note.starts_with(&cut), "{cut}");
    // NULL outputs are allowed; a NULL buffer with a length is not (refused before any write).
    use std::ptr::null_mut as null;
    // SAFETY: valid handle; every output NULL, len 0 or a length the call refuses.
    let all_null = |len| unsafe { aceuq_model_halt_rule(h, null(), null(), null(), len, null()) };
    assert_eq!(all_null(0), ok);
    assert_eq!(all_null(8), aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT);
    assert!(last_error().contains("buf is NULL"), "{}", last_error());
    // SAFETY: valid handle, freed once.
    unsafe { aceuq_model_free(h) };
    // One juror's own frame rule: a vote, by that juror alone (contact, id 5).
    let juror = crate::stats::upper::HaltRule {
        rule: "juror".into(),
        juror_false: 0,
        vote_false: 2,
        ..rule
    };
    let note = juror.note();
    pot.uq.halt_rule = Some(juror);
    let path = dir.join("juror.aceuq");
    pot.save(&path).unwrap();
    let h = load(&path);
    assert_eq!(ask(h, 1024), (ok, 1, 1 << 5, note.clone(), note.len() + 1));
    assert!(note.contains("halts by contact's frame rule"), "{note}");
    // SAFETY: valid handle, freed once.
    unsafe { aceuq_model_free(h) };
    let _ = std::fs::remove_dir_all(&dir);
}
