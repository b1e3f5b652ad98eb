//! The C ABI exercised from Rust: results equal the library's own evaluation, every error path
//! gives a status and a message, and panics are caught.

use super::*;
use crate::model::tests::{random_model, random_structure, small_cfg};
use std::ffi::CString;

fn last_error() -> String {
    // SAFETY: aceuq_last_error never returns NULL.
    unsafe { CStr::from_ptr(aceuq_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn save_model(name: &str, species: &[&str]) -> (std::path::PathBuf, Model) {
    let m = random_model(species, &small_cfg(), 31);
    let dir = std::env::temp_dir().join(format!("aceuq-ffi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.aceuq");
    crate::io::modelfile::save(&m, &p).unwrap();
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
    let sys = aceuq_system_t {
        nlocal: nlocal as i32,
        nall: nall as i32,
        x: x.as_ptr(),
        species: species.as_ptr(),
        tag: tags.as_ptr(),
        inum: nlocal as i32,
        ilist: ilist.as_ptr(),
        offsets: offsets.as_ptr(),
        neigh: neigh.as_ptr(),
    };
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
