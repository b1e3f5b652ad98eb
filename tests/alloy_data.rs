//! The committed two-element data sets (`tests/data/inp`, `tests/data/wbe`, written by
//! `scripts/gen_data.py --alloys`, the calibration set `calib.xyz` and the second held-out set
//! `starts_seed7.xyz` by `--calib`) parse, are fully labelled, hold both species in every split,
//! and validate, calibrate and test only on conditions that are also trained on.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> Vec<aceuq::Structure> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    aceuq::io::extxyz::read_file(&path, &Default::default())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn check(system: &str, species: [&str; 2]) {
    let mut train_types = BTreeSet::new();
    for split in ["train", "valid", "test", "calib", "starts_seed7"] {
        let rel = format!("tests/data/{system}/{split}.xyz");
        let frames = read(&rel);
        assert!(!frames.is_empty(), "{rel}: no frames");
        let mut seen = BTreeSet::new();
        for (i, f) in frames.iter().enumerate() {
            let n = f.positions.len();
            assert!((50..=130).contains(&n), "{rel} frame {i}: {n} atoms");
            assert!(
                f.energy.is_some_and(f64::is_finite),
                "{rel} frame {i}: no energy"
            );
            assert_eq!(
                f.forces.as_ref().map(Vec::len),
                Some(n),
                "{rel} frame {i}: forces"
            );
            assert!(f.virial.is_some(), "{rel} frame {i}: no virial");
            assert_eq!(f.pbc, [true; 3], "{rel} frame {i}: not periodic");
            for s in &f.symbols {
                assert!(
                    species.contains(&s.as_str()),
                    "{rel} frame {i}: species {s}"
                );
                seen.insert(s.clone());
            }
            let ct = f
                .config_type
                .clone()
                .unwrap_or_else(|| panic!("{rel} frame {i}: config_type"));
            if split == "train" {
                train_types.insert(ct);
            } else {
                assert!(
                    train_types.contains(&ct),
                    "{rel} frame {i}: {ct} is not in train"
                );
            }
        }
        assert_eq!(seen.len(), 2, "{rel}: species {seen:?}");
    }
}

/// The second held-out set is drawn like `calib.xyz` but shares no frame with it.
fn starts_are_new(system: &str) {
    let calib = read(&format!("tests/data/{system}/calib.xyz"));
    for (i, f) in read(&format!("tests/data/{system}/starts_seed7.xyz"))
        .iter()
        .enumerate()
    {
        assert!(
            !calib.iter().any(|c| c.positions == f.positions),
            "{system} starts_seed7.xyz frame {i} is also in calib.xyz"
        );
    }
}

#[test]
fn inp_data_sets_are_complete() {
    check("inp", ["In", "P"]);
    starts_are_new("inp");
}

#[test]
fn wbe_data_sets_are_complete() {
    check("wbe", ["W", "Be"]);
    starts_are_new("wbe");
}
