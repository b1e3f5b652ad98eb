//! Fuzz targets: every parser of user input, driven by bytes. Shared by the mutation fuzzer
//! (`examples/fuzz.rs`, `make fuzz`) and the corpus replay test (`tests/fuzz_corpus.rs`).
//!
//! A target returns `Err` when a property is violated (an error that does not name the file,
//! a written frame that does not read back); the callers also treat any panic as a failure.
//! Ordinary rejections of bad input are the expected outcome and return `Ok`.

#![allow(dead_code)]

use std::path::Path;

/// Target names, in the order `make fuzz` runs them.
pub const TARGETS: [&str; 8] = [
    "extxyz",
    "model",
    "fit_toml",
    "cutoff",
    "pace_ace",
    "pace_yace",
    "pace_bbasis",
    "pace_asi",
];

/// Run one input through a target.
pub fn run(target: &str, data: &[u8]) -> Result<bool, String> {
    match target {
        "extxyz" => extxyz(data),
        "model" => model(data),
        "fit_toml" => fit_toml(data),
        "cutoff" => cutoff(data),
        "pace_ace" => pace_ace(data),
        "pace_yace" => pace_yace(data),
        "pace_bbasis" => pace_bbasis(data),
        "pace_asi" => pace_asi(data),
        other => Err(format!("unknown fuzz target '{other}'")),
    }
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Extended XYZ: parsing never panics, errors name the file and line, and every frame read is
/// written and read back unchanged (positions, species, cell, energy, forces).
fn extxyz(data: &[u8]) -> Result<bool, String> {
    use aceuq::io::extxyz::{ReadOptions, Reader, WriteOptions, frame_to_string, read_str};
    let mut accepted = true;
    for tail in [false, true] {
        let opts = ReadOptions {
            allow_truncated_tail: tail,
            ..Default::default()
        };
        for frame in Reader::new(data, "fuzz.xyz", opts) {
            let s = match frame {
                Ok(s) => s,
                Err(e) => {
                    let msg = e.to_string();
                    if !msg.contains("fuzz.xyz") {
                        return Err(format!("error does not name the file: {msg}"));
                    }
                    // Reading from memory cannot fail in the OS: every error points at a line.
                    if e.line().is_none() {
                        return Err(format!("error without a line number: {msg}"));
                    }
                    accepted = false;
                    break;
                }
            };
            // Frames with values the writer refuses (e.g. NaN) cannot round-trip: fine.
            let Ok(text) = frame_to_string(&s, &WriteOptions::lossless()) else {
                continue;
            };
            let back = read_str(&text, "again.xyz", &Default::default())
                .map_err(|e| format!("a written frame does not read back: {e}\n{text}"))?;
            let [b] = back.as_slice() else {
                return Err(format!("one frame written, {} read back", back.len()));
            };
            let pos_same = s
                .positions
                .iter()
                .flatten()
                .zip(b.positions.iter().flatten())
                .all(|(x, y)| same(*x, *y));
            if s.symbols != b.symbols || s.positions.len() != b.positions.len() || !pos_same {
                return Err(format!(
                    "positions or species changed on a round trip\n{text}"
                ));
            }
            if s.cell != b.cell || s.pbc != b.pbc {
                return Err(format!("cell changed on a round trip\n{text}"));
            }
            if s.energy.map(f64::to_bits) != b.energy.map(f64::to_bits) || s.forces != b.forces {
                return Err(format!("energy or forces changed on a round trip\n{text}"));
            }
        }
    }
    Ok(accepted)
}

/// Model files: the container and the model inside it are validated without panics or huge
/// allocations; errors name the file; an accepted model evaluates without panicking and saves
/// and loads back.
fn model(data: &[u8]) -> Result<bool, String> {
    use aceuq::Potential;
    use aceuq::io::container::Container;
    let path = Path::new("fuzz.aceuq");
    let c = match Container::from_bytes(path, data) {
        Ok(c) => c,
        Err(e) => return names_file(&e.to_string(), "fuzz.aceuq"),
    };
    let p = match Potential::from_container(path, &c) {
        Ok(p) => p,
        Err(e) => return names_file(&e.to_string(), "fuzz.aceuq"),
    };
    // Evaluate on a small cluster of every species (energies may be anything; no panic).
    let m = &p.model;
    let ns = m.nspecies();
    if ns > 0 && ns <= 16 {
        let mut s = aceuq::Structure::default();
        for k in 0..4 {
            s.symbols.push(m.species[k % ns].clone());
            let f = k as f64;
            s.positions.push([1.9 * f, 0.7 * f * f, -0.4 * f]);
        }
        let mut ws = aceuq::model::Workspace::new(m);
        let _ = m.predict(&s, &mut ws);
    }
    let again = p.to_container().to_bytes();
    let c2 = Container::from_bytes(path, &again)
        .map_err(|e| format!("a re-saved model does not read back: {e}"))?;
    Potential::from_container(path, &c2)
        .map_err(|e| format!("a re-saved model does not load: {e}"))?;
    Ok(true)
}

fn names_file(msg: &str, file: &str) -> Result<bool, String> {
    if msg.contains(file) {
        Ok(false)
    } else {
        Err(format!("error does not name the file: {msg}"))
    }
}

/// `aceuq fit --config` files: parsed, validated, and (when valid) the basis is generated.
fn fit_toml(data: &[u8]) -> Result<bool, String> {
    use aceuq::cli::fit::FitFile;
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(false);
    };
    let cfg = match toml::from_str::<FitFile>(text) {
        Ok(c) => c,
        Err(e) => {
            // A rejection must say where: TOML errors carry the byte span of the fault.
            if e.span().is_none() && !text.trim().is_empty() {
                return Err(format!("TOML error without a location: {}", e.message()));
            }
            return Ok(false);
        }
    };
    if cfg.fit.validate().is_err() || cfg.basis.validate().is_err() {
        return Ok(false);
    }
    Ok(aceuq::basis::SpeciesBasis::generate(&cfg.basis, 2).is_ok())
}

/// `aceuq cutoff` input (a table or a LAMMPS dump): read with each way of choosing a column;
/// errors name the file; every value read carries its line number.
fn cutoff(data: &[u8]) -> Result<bool, String> {
    use aceuq::cli::cutoff::parse_column;
    // read_column reads the file as UTF-8 first; invalid UTF-8 is an I/O-style rejection there.
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(false);
    };
    let path = Path::new("fuzz-cutoff.txt");
    let mut accepted = false;
    for col in [None, Some("2"), Some("gamma"), Some("c_uq[1]")] {
        match parse_column(path, text, col) {
            Ok(c) => {
                if c.values.len() != c.lines.len() {
                    return Err(format!(
                        "{} values but {} line numbers",
                        c.values.len(),
                        c.lines.len()
                    ));
                }
                accepted = true;
            }
            Err(e) => {
                names_file(&e.to_string(), "fuzz-cutoff.txt")?;
            }
        }
    }
    Ok(accepted)
}

/// pacemaker `.ace` potentials (read as lossy UTF-8): parsing never panics and its errors name
/// the file; an accepted potential evaluates a 3-atom cluster (and, for cutoffs up to 8 Å, a
/// 2-atom periodic cell) to finite energies, forces and virials, or to an error.
fn pace_ace(data: &[u8]) -> Result<bool, String> {
    use aceuq::pace::PaceModel;
    let text = String::from_utf8_lossy(data);
    let m = match PaceModel::parse_ace("fuzz.ace", &text) {
        Ok(m) => m,
        Err(e) => return names_file(&e.to_string(), "fuzz.ace"),
    };
    let Some(sym) = m.elements.first().cloned() else {
        return Err("a potential without elements was accepted".into());
    };
    let cluster = aceuq::Structure {
        positions: vec![[0.0, 0.0, 0.0], [2.1, 0.3, -0.2], [0.4, 1.9, 1.1]],
        symbols: vec![sym.clone(); 3],
        ..Default::default()
    };
    let mut structures = vec![cluster];
    if m.max_cutoff() <= 8.0 {
        structures.push(aceuq::Structure {
            cell: Some([[3.1, 0.0, 0.0], [0.4, 2.9, 0.0], [0.2, -0.3, 3.3]]),
            pbc: [true; 3],
            positions: vec![[0.1, 0.2, 0.0], [1.7, 1.5, 1.6]],
            symbols: vec![sym; 2],
            ..Default::default()
        });
    }
    for s in &structures {
        // Errors (atoms inside the first look-up interval, overflowing coefficients) are fine.
        let Ok(p) = m.predict(s) else { continue };
        let finite = p.energy.is_finite()
            && p.atom_energies.iter().all(|e| e.is_finite())
            && p.forces.iter().flatten().all(|f| f.is_finite())
            && p.virial.iter().flatten().all(|v| v.is_finite());
        if !finite || p.atom_energies.len() != s.len() || p.forces.len() != s.len() {
            return Err(format!(
                "an accepted potential gave non-finite or missing results: energy {}",
                p.energy
            ));
        }
    }
    Ok(true)
}

/// pacemaker `.yace` potentials (read as lossy UTF-8): parsing never panics (nor overflows the
/// stack on deep nesting) and its errors name the file; an accepted potential evaluates a
/// cluster holding every species (up to 16) and, for cutoffs up to 8 Å, a periodic cell, to
/// finite results or an error; and it is written back (`to_yace`) to a file that reads to the
/// same energies and forces, bit for bit.
fn pace_yace(data: &[u8]) -> Result<bool, String> {
    use aceuq::pace::{PaceModel, to_yace};
    let text = String::from_utf8_lossy(data);
    let m = match PaceModel::parse_yace("fuzz.yace", &text) {
        Ok(m) => m,
        Err(e) => return names_file(&e.to_string(), "fuzz.yace"),
    };
    let ne = m.nspecies();
    if ne == 0 {
        return Err("a potential without elements was accepted".into());
    }
    let sym = |k: usize| m.elements[k % ne.min(16)].clone();
    let cluster = aceuq::Structure {
        positions: vec![
            [0.0, 0.0, 0.0],
            [2.1, 0.3, -0.2],
            [0.4, 1.9, 1.1],
            [-1.3, 0.8, 1.6],
        ],
        symbols: (0..4).map(sym).collect(),
        ..Default::default()
    };
    let mut structures = vec![cluster];
    if m.max_cutoff() <= 8.0 {
        structures.push(aceuq::Structure {
            cell: Some([[3.1, 0.0, 0.0], [0.4, 2.9, 0.0], [0.2, -0.3, 3.3]]),
            pbc: [true; 3],
            positions: vec![[0.1, 0.2, 0.0], [1.7, 1.5, 1.6]],
            symbols: (0..2).map(sym).collect(),
            ..Default::default()
        });
    }
    let again = PaceModel::parse_yace("again.yace", &to_yace(&m))
        .map_err(|e| format!("a written potential does not read back: {e}"))?;
    for s in &structures {
        // Errors (atoms inside the first look-up interval, overflowing coefficients) are fine.
        let Ok(p) = m.predict(s) else { continue };
        let finite = p.energy.is_finite()
            && p.atom_energies.iter().all(|e| e.is_finite())
            && p.forces.iter().flatten().all(|f| f.is_finite())
            && p.virial.iter().flatten().all(|v| v.is_finite());
        if !finite || p.atom_energies.len() != s.len() || p.forces.len() != s.len() {
            return Err(format!(
                "an accepted potential gave non-finite or missing results: energy {}",
                p.energy
            ));
        }
        let q = again
            .predict(s)
            .map_err(|e| format!("the written potential fails where the original did not: {e}"))?;
        if q.energy.to_bits() != p.energy.to_bits() || q.forces != p.forces {
            return Err(format!(
                "the written potential differs: energy {} vs {}",
                q.energy, p.energy
            ));
        }
    }
    Ok(true)
}

/// pacemaker B-basis `.yaml`: parsing never panics and errors name the file; an accepted
/// potential evaluates (energies through the C-tilde model and through the B functions,
/// projections and grades with an identity active set) without panicking, with finite values
/// or an error.
fn pace_bbasis(data: &[u8]) -> Result<bool, String> {
    use aceuq::pace::asi::{ActiveSet, AsiMatrix};
    use aceuq::pace::bbasis::BBasisPotential;
    let text = String::from_utf8_lossy(data);
    let pot = match BBasisPotential::parse("fuzz.yaml", &text) {
        Ok(p) => p,
        Err(e) => return names_file(&e.to_string(), "fuzz.yaml"),
    };
    let ne = pot.elements().len();
    if ne == 0 {
        return Err("a potential without elements was accepted".into());
    }
    let sym = |k: usize| pot.elements()[k % ne.min(16)].clone();
    let s = aceuq::Structure {
        positions: vec![
            [0.0, 0.0, 0.0],
            [2.1, 0.3, -0.2],
            [0.4, 1.9, 1.1],
            [-1.3, 0.8, 1.6],
        ],
        symbols: (0..4).map(sym).collect(),
        ..Default::default()
    };
    if let Ok(p) = pot.model().predict(&s) {
        let finite = p.energy.is_finite() && p.forces.iter().flatten().all(|f| f.is_finite());
        if !finite || p.atom_energies.len() != s.len() {
            return Err(format!(
                "non-finite or missing results: energy {}",
                p.energy
            ));
        }
    }
    for linear in [true, false] {
        let matrices = (0..ne)
            .map(|si| {
                let n = if linear {
                    pot.nprojections_linear(si)
                } else {
                    pot.nprojections(si)
                };
                let mut data = vec![0.0; n * n];
                for k in 0..n {
                    data[k * n + k] = 1.0;
                }
                AsiMatrix { n, data }
            })
            .collect();
        let set = ActiveSet {
            elements: pot.elements().to_vec(),
            linear,
            matrices,
        };
        if let Ok(g) = pot.extrapolation_grades(&s, &set)
            && g.len() != s.len()
        {
            return Err(format!("{} grades for {} atoms", g.len(), s.len()));
        }
    }
    Ok(true)
}

/// Active-set inverse `.asi` (numpy `.npz`): reading never panics, errors name the file, and
/// an accepted set writes and reads back unchanged.
fn pace_asi(data: &[u8]) -> Result<bool, String> {
    use aceuq::pace::asi;
    let elements = vec!["Al".to_string(), "Cu".to_string()];
    let sizes = [(2, 4), (3, 6)];
    let _ = asi::read_npz("fuzz.asi", data);
    let set = match asi::parse_asi("fuzz.asi", data, &elements, &sizes) {
        Ok(s) => s,
        Err(e) => return names_file(&e.to_string(), "fuzz.asi"),
    };
    for m in &set.matrices {
        let g = asi::gamma(m, &vec![1.0; m.n]);
        if g.is_nan() || g < 0.0 {
            return Err(format!("gamma {g} of finite matrices"));
        }
    }
    let bytes = asi::asi_bytes(&set.elements, &set.matrices)
        .map_err(|e| format!("an accepted set does not write: {e}"))?;
    let back = asi::parse_asi("again.asi", &bytes, &elements, &sizes)
        .map_err(|e| format!("a written set does not read back: {e}"))?;
    if back != set {
        return Err("a written set reads back different".into());
    }
    Ok(true)
}
