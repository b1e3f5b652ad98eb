//! Test fixtures shared by the unit tests of every layer: random models and structures, small basis
//! settings. Compiled for tests only.

use crate::basis::radial::RadialBasis;
use crate::basis::{BasisConfig, SpeciesBasis};
use crate::model::core::CorePair;
use crate::model::{FitInfo, Model};
use crate::structure::Structure;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A model with random coefficients (evaluation does not care whether it was fitted).
pub(crate) fn random_model(species: &[&str], cfg: &BasisConfig, seed: u64) -> Model {
    let ns = species.len();
    let sb = SpeciesBasis::generate(cfg, ns).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nmax = sb.layout.nmax();
    let mut radial = vec![];
    let mut core = vec![];
    for s in 0..ns {
        for z in 0..ns {
            radial.push(RadialBasis {
                rc: cfg.cutoff - 0.2 * ((s + z) as f64),
                r0: 1.4 + 0.1 * z as f64,
                nmax,
            });
            core.push(CorePair {
                z1: 3 + s as u32,
                z2: 3 + z as u32,
                r_in: 1.6,
                r_out: 2.1,
            });
        }
    }
    let bases: Vec<SpeciesBasis> = vec![sb; ns];
    let coefs = bases
        .iter()
        .map(|b| {
            (0..b.len())
                .map(|_| rng.random_range(-1.0..1.0) * 0.1)
                .collect()
        })
        .collect();
    let e0 = (0..ns).map(|s| -1.0 - s as f64).collect();
    Model::new(
        species.iter().map(|s| s.to_string()).collect(),
        cfg.clone(),
        radial,
        core,
        bases,
        coefs,
        e0,
        FitInfo::default(),
    )
    .unwrap()
}

pub(crate) fn small_cfg() -> BasisConfig {
    BasisConfig {
        cutoff: 4.8,
        nmax: vec![6, 4, 3, 2],
        lmax: vec![0, 3, 2, 2],
        ..Default::default()
    }
}

/// A basis small enough to be well determined by a few small structures.
pub(crate) fn tiny_cfg() -> BasisConfig {
    BasisConfig {
        cutoff: 4.8,
        nmax: vec![4, 3, 2, 1],
        lmax: vec![0, 2, 1, 1],
        ..Default::default()
    }
}

/// A perturbed BCC-like periodic structure with the given species pattern, in a triclinic cell.
pub(crate) fn random_structure(species: &[&str], reps: usize, seed: u64, skew: bool) -> Structure {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let a = 3.4;
    let l = a * reps as f64;
    let cell = if skew {
        [[l, 0.0, 0.0], [0.6, l, 0.0], [-0.4, 0.7, l]]
    } else {
        [[l, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, l]]
    };
    let mut s = Structure {
        cell: Some(cell),
        pbc: [true; 3],
        ..Default::default()
    };
    let mut count = 0;
    for i in 0..reps {
        for j in 0..reps {
            for k in 0..reps {
                for off in [0.0, 0.5] {
                    let f = [
                        (i as f64 + off) / reps as f64,
                        (j as f64 + off) / reps as f64,
                        (k as f64 + off) / reps as f64,
                    ];
                    let mut p = [0.0; 3];
                    for d in 0..3 {
                        p[d] = f[0] * cell[0][d]
                            + f[1] * cell[1][d]
                            + f[2] * cell[2][d]
                            + rng.random_range(-0.3..0.3);
                    }
                    s.positions.push(p);
                    s.symbols.push(species[count % species.len()].to_string());
                    count += 1;
                }
            }
        }
    }
    s
}

/// `n` small Al-Mg structures (seeds from `seed`) labelled by a random teacher model of the
/// `small_cfg` basis, and the species names.
pub(crate) fn teacher_data(n: u64, seed: u64) -> (Vec<String>, Vec<Structure>) {
    let species = ["Al", "Mg"];
    let names: Vec<String> = species.iter().map(|s| s.to_string()).collect();
    let teacher = random_model(&species, &small_cfg(), 5);
    let mut ws = crate::model::Workspace::new(&teacher);
    let mut data: Vec<Structure> = (0..n)
        .map(|i| random_structure(&species, 2, seed + i, i % 2 == 0))
        .collect();
    for s in data.iter_mut() {
        let p = teacher.predict(s, &mut ws).unwrap();
        s.energy = Some(p.energy);
        s.forces = Some(p.forces);
    }
    (names, data)
}

/// A two-species (Al, Mg) potential fitted on data of a random teacher outside its function space,
/// with clustered active sets (k-means, `k` clusters per species), and validation structures
/// with the teacher's forces (16 structures of 16 atoms).
pub(crate) fn clustered_potential(k: usize) -> (crate::Potential, Vec<Structure>) {
    let (names, data) = teacher_data(38, 900);
    let (train, valid) = data.split_at(22);
    let model = crate::model::fit::fit(&names, &tiny_cfg(), &Default::default(), train, &[], false)
        .unwrap();
    // The environments of these structures are much alike: keep every k-means cluster.
    let cfg = crate::uq::UqConfig {
        clusters: Some(crate::uq::Partition::KMeans(k)),
        activeset: crate::uq::activeset::Settings {
            min_cluster_atoms: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pot = crate::Potential::new(model);
    crate::uq::build(&pot.model, &mut pot.uq, train, valid, &cfg, false).unwrap();
    (pot, valid.to_vec())
}

/// A scratch directory for a unit test, emptied first: `<tmp>/aceuq-unit-<pid>/<name>` (`name`
/// unique per test). The test harness has no teardown, so the first call in a process removes
/// the scratch directories of earlier test processes that are no longer running (Linux: checked
/// in /proc) and untouched for a day, which keeps /tmp from filling up over many runs.
pub(crate) fn scratch_dir(name: &str) -> std::path::PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let tmp = std::env::temp_dir();
    SWEEP.call_once(|| {
        let proc = std::path::Path::new("/proc");
        if !proc.join("self").exists() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&tmp) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Ours now, and the per-process names the unit tests used before.
            let rest = [
                "aceuq-unit-",
                "aceuq-cutoff-tests-",
                "aceuq-extxyz-append-",
                "aceuq-ffi-",
            ]
            .iter()
            .find_map(|p| name.strip_prefix(p));
            let pid = rest.and_then(|r| r.split('-').next()?.parse::<u32>().ok());
            // A process in another pid namespace sharing /tmp is invisible in /proc: only
            // directories untouched for a day are taken for finished runs.
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 86_400);
            if let Some(pid) = pid
                && pid != std::process::id()
                && !proc.join(pid.to_string()).exists()
                && stale
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
    let dir = tmp
        .join(format!("aceuq-unit-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A potential fitted with `tiny_cfg` on the first `n_train` of `n` teacher frames
/// ([`teacher_data`] with `seed`), with the uncertainty of `cfg` built on them and the rest as
/// validation frames, which are returned with it.
pub(crate) fn teacher_potential(
    n: u64,
    seed: u64,
    n_train: usize,
    cfg: &crate::uq::UqConfig,
) -> (crate::Potential, Vec<Structure>) {
    let (names, data) = teacher_data(n, seed);
    let (train, valid) = data.split_at(n_train);
    let model = crate::model::fit::fit(&names, &tiny_cfg(), &Default::default(), train, &[], false)
        .unwrap();
    let mut pot = crate::Potential::new(model);
    crate::uq::build(&pot.model, &mut pot.uq, train, valid, cfg, false).unwrap();
    (pot, valid.to_vec())
}
