//! Unit tests of the extended XYZ reader and writer.

use super::parse::classify;
use super::writer::push_g;
use super::*;
use crate::structure::{InfoValue, Origin, PropData, Structure};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/extxyz")
        .join(name)
}

fn read(text: &str) -> Vec<Structure> {
    match read_str(text, "t.xyz", &ReadOptions::default()) {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn read_one(text: &str) -> Structure {
    let mut v = read(text);
    assert_eq!(v.len(), 1, "expected one frame");
    v.remove(0)
}

/// The error for `text` read as `name`, as displayed.
fn err_of(text: &str, name: &str) -> String {
    err_with(text, name, &ReadOptions::default())
}

fn err_with(text: &str, name: &str, opts: &ReadOptions) -> String {
    match read_str(text, name, opts) {
        Ok(v) => panic!("expected an error, got {} frames", v.len()),
        Err(e) => e.to_string(),
    }
}

fn assert_err_starts(text: &str, expected_prefix: &str) {
    let e = err_of(text, "t.xyz");
    assert!(
        e.starts_with(expected_prefix),
        "error\n  {e}\ndoes not start with\n  {expected_prefix}"
    );
}

fn no_origin(mut s: Structure) -> Structure {
    s.origin = Origin::default();
    s
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

// ----- ASE-written file, checked against ASE's own in-memory values --------------------------

/// Parsed `ase_expected.txt` frame.
#[derive(Default)]
struct Expected {
    natoms: usize,
    cell: Option<Vec<f64>>,
    pbc: Vec<bool>,
    energy: f64,
    virial: Option<Vec<f64>>,
    config_type: Option<String>,
    atoms: Vec<(String, Vec<f64>)>,
    gamma: Option<Vec<f64>>,
}

fn load_expected() -> Vec<Expected> {
    let text = std::fs::read_to_string(data_path("ase_expected.txt")).expect("fixture");
    let mut out: Vec<Expected> = Vec::new();
    let nums = |w: &[&str]| {
        w.iter()
            .map(|t| t.parse::<f64>().expect("number"))
            .collect::<Vec<_>>()
    };
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "frame" => out.push(Expected {
                natoms: w[1].parse().expect("n"),
                ..Default::default()
            }),
            "cell" => out.last_mut().expect("frame").cell = Some(nums(&w[1..])),
            "pbc" => {
                out.last_mut().expect("frame").pbc = w[1..].iter().map(|t| *t == "1").collect()
            }
            "energy" => out.last_mut().expect("frame").energy = w[1].parse().expect("e"),
            "virial" => out.last_mut().expect("frame").virial = Some(nums(&w[1..])),
            "config_type" => {
                out.last_mut().expect("frame").config_type = (w[1] != "-").then(|| w[1].to_string())
            }
            "atom" => out
                .last_mut()
                .expect("frame")
                .atoms
                .push((w[1].to_string(), nums(&w[2..]))),
            "gamma" => out.last_mut().expect("frame").gamma = Some(nums(&w[1..])),
            other => panic!("unknown line {other}"),
        }
    }
    out
}

#[test]
fn extxyz_reads_ase_written_file_like_ase() {
    let path = data_path("ase_written.xyz");
    let frames = read_file(&path, &ReadOptions::default()).expect("read");
    let expected = load_expected();
    assert_eq!(frames.len(), expected.len());
    for (k, (s, e)) in frames.iter().zip(&expected).enumerate() {
        assert_eq!(s.len(), e.natoms, "frame {k}");
        assert_eq!(s.origin.frame, k);
        match (&s.cell, &e.cell) {
            (Some(c), Some(ec)) => assert_eq!(c.as_flattened(), ec.as_slice(), "frame {k} cell"),
            (None, None) => {}
            _ => panic!("frame {k}: cell presence differs"),
        }
        assert_eq!(s.pbc.to_vec(), e.pbc, "frame {k} pbc");
        assert_eq!(s.energy, Some(e.energy), "frame {k} energy");
        match (&s.virial, &e.virial) {
            (Some(v), Some(ev)) => {
                for (a, b) in v.as_flattened().iter().zip(ev) {
                    assert!(close(*a, *b, 1e-12), "frame {k} virial {a} vs ASE {b}");
                }
            }
            (None, None) => {}
            _ => panic!("frame {k}: virial presence differs"),
        }
        assert_eq!(s.config_type, e.config_type, "frame {k} config_type");
        let forces = s.forces.as_ref().expect("forces");
        for (a, (sym, vals)) in e.atoms.iter().enumerate() {
            assert_eq!(&s.symbols[a], sym);
            for d in 0..3 {
                // ASE writes %16.8f.
                assert!(
                    (s.positions[a][d] - vals[d]).abs() <= 5.1e-9,
                    "frame {k} atom {a} pos"
                );
                assert!(
                    (forces[a][d] - vals[3 + d]).abs() <= 5.1e-9,
                    "frame {k} atom {a} force"
                );
            }
        }
        if let Some(g) = &e.gamma {
            match s.array("gamma") {
                Some(PropData::Real { ncols: 1, data }) => {
                    for (a, b) in data.iter().zip(g) {
                        assert!((a - b).abs() <= 5.1e-9);
                    }
                }
                other => panic!("gamma array: {other:?}"),
            }
        }
    }
    // Info typing as ASE does it.
    let s = &frames[0];
    assert_eq!(s.info.get("temperature"), Some(&InfoValue::Real(300.5)));
    assert_eq!(s.info.get("step"), Some(&InfoValue::Int(12)));
    assert_eq!(
        s.info.get("comment"),
        Some(&InfoValue::Str("rattled fcc with spaces".into()))
    );
    assert_eq!(s.info.get("converged"), Some(&InfoValue::Bool(true)));
    assert_eq!(
        s.info.get("kpts"),
        Some(&InfoValue::Reals(vec![4.0, 4.0, 2.0]))
    );
    assert!(
        !s.info.contains_key("stress"),
        "stress was turned into the virial"
    );
    assert_eq!(
        s.array("tags"),
        Some(&PropData::Int {
            ncols: 1,
            data: vec![0, 1]
        })
    );
    // Extra arrays keep file order (gamma before tags in the file).
    let names: Vec<&str> = s.arrays.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["gamma", "tags"]);
    assert_eq!(frames[2].array("tags").map(|d| d.ncols()), Some(1));
}

#[test]
fn extxyz_ase_file_round_trips() {
    let frames = read_file(data_path("ase_written.xyz"), &ReadOptions::default()).expect("read");
    // Lossless: bit-identical.
    let mut text = String::new();
    for s in &frames {
        text.push_str(&frame_to_string(s, &WriteOptions::lossless()).expect("write"));
    }
    let again = read_str(&text, "again.xyz", &ReadOptions::default()).expect("re-read");
    for (a, b) in frames.iter().zip(&again) {
        assert_eq!(no_origin(a.clone()), no_origin(b.clone()));
    }
    // Default precision: positions and forces were already at 8 decimals, so they survive;
    // gamma is written with 6 significant digits.
    let mut text = String::new();
    for s in &frames {
        write_frame(&mut string_writer(&mut text), s, &WriteOptions::default()).expect("w");
    }
    let again = read_str(&text, "again.xyz", &ReadOptions::default()).expect("re-read");
    for (a, b) in frames.iter().zip(&again) {
        assert_eq!(a.positions, b.positions);
        assert_eq!(a.forces, b.forces);
        assert_eq!(a.info, b.info);
        assert_eq!(a.virial, b.virial);
        if let (Some(PropData::Real { data: x, .. }), Some(PropData::Real { data: y, .. })) =
            (a.array("gamma"), b.array("gamma"))
        {
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() <= 5e-6 * p.abs(), "{p} vs {q}");
                assert_ne!(p, q, "gamma should have lost digits at %.6g");
            }
        }
    }
}

/// `Write` adapter appending to a `String` (write_frame only writes UTF-8).
fn string_writer(s: &mut String) -> impl Write + '_ {
    struct W<'a>(&'a mut String);
    impl Write for W<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let t = std::str::from_utf8(buf)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            self.0.push_str(t);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    W(s)
}

// ----- Geometry and periodicity -----------------------------------------------------------------

#[test]
fn extxyz_triclinic_cell_rows_are_lattice_vectors() {
    let s = read_one(
        "2\nLattice=\"3.0 0.1 0.2 -0.5 2.9 0.3 0.4 -0.6 4.1\" Properties=species:S:1:pos:R:3\n\
         Si 0 0 0\nSi 1.0 1.1 1.2\n",
    );
    assert_eq!(
        s.cell,
        Some([[3.0, 0.1, 0.2], [-0.5, 2.9, 0.3], [0.4, -0.6, 4.1]])
    );
    assert_eq!(s.pbc, [true; 3], "Lattice without pbc means periodic");
    assert_eq!(s.positions[1], [1.0, 1.1, 1.2]);
    assert_eq!(s.symbols, ["Si", "Si"]);
    assert_eq!(s.forces, None);
    assert_eq!(s.energy, None);
    let vol = 3.0 * (2.9 * 4.1 - 0.3 * -0.6) - 0.1 * (-0.5 * 4.1 - 0.3 * 0.4)
        + 0.2 * (-0.5 * -0.6 - 2.9 * 0.4);
    assert!(close(s.volume().expect("cell"), vol, 1e-14));
}

#[test]
fn extxyz_non_periodic_and_plain_xyz() {
    // No Lattice, no Properties: plain XYZ with a free-text comment.
    let s = read_one("3\nwater molecule\nO 0 0 0.1\nH 0 0.76 -0.47\nH 0 -0.76 -0.47\n");
    assert_eq!(s.cell, None);
    assert_eq!(s.pbc, [false; 3]);
    assert_eq!(s.len(), 3);
    assert_eq!(s.info.get("water"), Some(&InfoValue::Bool(true)));
    assert_eq!(s.info.get("molecule"), Some(&InfoValue::Bool(true)));
    // Explicit pbc="F F F" without a Lattice is fine.
    let s = read_one("1\npbc=\"F F F\" Properties=species:S:1:pos:R:3\nAr 0 0 0\n");
    assert_eq!((s.cell, s.pbc), (None, [false; 3]));
    // An empty comment line.
    let s = read_one("1\n\nAr 1 2 3\n");
    assert_eq!(s.positions, vec![[1.0, 2.0, 3.0]]);
    assert!(s.info.is_empty());
}

#[test]
fn extxyz_partial_pbc_and_pbc_spellings() {
    let cell = "Lattice=\"5 0 0 0 5 0 0 0 20\"";
    let s = read_one(&format!("1\n{cell} pbc=\"T T F\"\nCu 0 0 0\n"));
    assert_eq!(s.pbc, [true, true, false]);
    let s = read_one(&format!("1\n{cell} PBC=[True, False, true]\nCu 0 0 0\n"));
    assert_eq!(s.pbc, [true, false, true]);
    let s = read_one(&format!("1\n{cell} pbc=F\nCu 0 0 0\n"));
    assert_eq!(s.pbc, [false; 3]);
    assert!(s.cell.is_some(), "a cell with pbc F F F is kept");
    let s = read_one(&format!("1\n{cell} pbc=\"1 0 1\"\nCu 0 0 0\n"));
    assert_eq!(s.pbc, [true, false, true]);
    // A zero vector along a non-periodic direction is accepted (2D systems).
    let s = read_one("1\nLattice=\"5 0 0 0 5 0 0 0 0\" pbc=\"T T F\"\nC 0 0 0\n");
    assert_eq!(s.pbc, [true, true, false]);
}

// ----- Comment line ---------------------------------------------------------------------------

#[test]
fn extxyz_comment_line_values_quotes_and_types() {
    let line = r#"lattice="2 0 0 0 2 0 0 0 2" properties=species:S:1:pos:R:3 name="two words" single='a b' braces={1 2 3} brackets=[1.5, 2, 3] esc="say \"hi\" \\ ok" bare is_bulk spaced = 7 big=1e300 neg=-3 t=True f=F word=Al2O3 url=a=b empty="" nan=nan tf="T F""#;
    let s = read_one(&format!("1\n{line}\nAl 0 0 0\n"));
    assert!(s.cell.is_some(), "lattice recognised in lower case");
    let i = |k: &str| s.info.get(k).cloned();
    assert_eq!(i("name"), Some(InfoValue::Str("two words".into())));
    assert_eq!(i("single"), Some(InfoValue::Str("a b".into())));
    assert_eq!(i("braces"), Some(InfoValue::Reals(vec![1.0, 2.0, 3.0])));
    assert_eq!(i("brackets"), Some(InfoValue::Reals(vec![1.5, 2.0, 3.0])));
    assert_eq!(i("esc"), Some(InfoValue::Str(r#"say "hi" \ ok"#.into())));
    assert_eq!(i("bare"), Some(InfoValue::Bool(true)));
    assert_eq!(i("is_bulk"), Some(InfoValue::Bool(true)));
    assert_eq!(i("spaced"), Some(InfoValue::Int(7)));
    assert_eq!(i("big"), Some(InfoValue::Real(1e300)));
    assert_eq!(i("neg"), Some(InfoValue::Int(-3)));
    assert_eq!(i("t"), Some(InfoValue::Bool(true)));
    assert_eq!(i("f"), Some(InfoValue::Bool(false)));
    assert_eq!(i("word"), Some(InfoValue::Str("Al2O3".into())));
    assert_eq!(i("url"), Some(InfoValue::Str("a=b".into())));
    assert_eq!(i("empty"), Some(InfoValue::Reals(vec![])));
    assert!(matches!(i("nan"), Some(InfoValue::Real(x)) if x.is_nan()));
    assert_eq!(
        i("tf"),
        Some(InfoValue::Str("T F".into())),
        "bool lists are kept as text"
    );
    assert!(!s.info.contains_key("lattice") && !s.info.contains_key("properties"));
    // Keys are case-sensitive otherwise.
    let s = read_one("1\nEnergy=-1.0 energy=-2.0\nH 0 0 0\n");
    assert_eq!(s.energy, Some(-2.0));
    assert_eq!(s.info.get("Energy"), Some(&InfoValue::Real(-1.0)));
}

#[test]
fn extxyz_empty_values_are_written_ase_safe() {
    let mut s = read_one("1\na=\"\" b=[] z=1\nH 0 0 0\n");
    assert_eq!(s.info.get("a"), Some(&InfoValue::Reals(vec![])));
    assert_eq!(s.info.get("b"), Some(&InfoValue::Reals(vec![])));
    s.info.insert("c".into(), InfoValue::Str(String::new()));
    let t = frame_to_string(&s, &WriteOptions::default()).expect("write");
    // ASE reads `a="" b=1` as a = "b=1"; `" "` is read as an empty list by ASE and by us.
    assert!(t.contains(r#"a=" " b=" " c=" " z=1"#), "{t}");
    let back = read_one(&t);
    assert_eq!(
        back.info.get("c"),
        Some(&InfoValue::Reals(vec![])),
        "documented limitation"
    );
    assert_eq!(back.info.get("z"), Some(&InfoValue::Int(1)));
}

#[test]
fn extxyz_energy_key_and_forces_key_options() {
    let text = "1\nenergy=-1 REF_energy=-2.5 free_energy=-3 Properties=species:S:1:pos:R:3:forces:R:3:REF_forces:R:3\n\
                H 0 0 0 1 2 3 4 5 6\n";
    let s = read_one(text);
    assert_eq!(
        s.energy,
        Some(-1.0),
        "integer text is accepted as the energy"
    );
    assert_eq!(s.forces, Some(vec![[1.0, 2.0, 3.0]]));
    assert_eq!(
        s.info.get("free_energy"),
        Some(&InfoValue::Int(-3)),
        "only the configured key"
    );
    let opts = ReadOptions {
        energy_key: "REF_energy".into(),
        forces_key: "REF_forces".into(),
        ..Default::default()
    };
    let s = read_str(text, "t.xyz", &opts).expect("read").remove(0);
    assert_eq!(s.energy, Some(-2.5));
    assert_eq!(s.forces, Some(vec![[4.0, 5.0, 6.0]]));
    assert_eq!(s.info.get("energy"), Some(&InfoValue::Int(-1)));
    assert_eq!(
        s.array("forces"),
        Some(&PropData::Real {
            ncols: 3,
            data: vec![1.0, 2.0, 3.0]
        })
    );
    // Writing with matching write options and reading with the same read options round-trips.
    let wopts = WriteOptions {
        energy_key: "REF_energy".into(),
        forces_key: "REF_forces".into(),
        ..WriteOptions::default()
    };
    let t = frame_to_string(&s, &wopts).expect("write");
    assert!(t.contains("REF_energy=-2.5"), "{t}");
    let back = read_str(&t, "t.xyz", &opts).expect("read").remove(0);
    assert_eq!(no_origin(back), no_origin(s));
}

/// Element symbols in another case are read in their usual spelling, as ASE reads them; labels
/// that are no element stay as written. An atomic-number column that names another element than
/// the species is refused, naming the atom and both values (ASE would take Z silently).
#[test]
fn extxyz_species_case_and_atomic_numbers() {
    let s =
        read_one("4\nProperties=species:S:1:pos:R:3\nli 0 0 0\nLI 1 0 0\nMG 2 0 0\nLi1 3 0 0\n");
    assert_eq!(s.symbols, ["Li", "Li", "Mg", "Li1"]);
    let s = read_one("2\nProperties=species:S:1:pos:R:3:Z:I:1\nLi 0 0 0 3\nbe 1 0 0 4\n");
    assert_eq!(s.symbols, ["Li", "Be"]);
    let e = err_of(
        "2\nProperties=species:S:1:pos:R:3:Z:I:1\nLi 0 0 0 3\nLi 1 0 0 4\n",
        "t.xyz",
    );
    assert!(
        e.contains("atom 2: species Li but Z 4 (Be); the two columns disagree"),
        "{e}"
    );
    let e = err_of(
        "1\nProperties=species:S:1:pos:R:3:numbers:I:1\nW 0 0 0 200\n",
        "t.xyz",
    );
    assert!(e.contains("atom 1: species W but numbers 200;"), "{e}");
    // A re-cased species is named as written too.
    let e = err_of(
        "1\nProperties=species:S:1:pos:R:3:Z:I:1\nca 0 0 0 6\n",
        "t.xyz",
    );
    assert!(
        e.contains("atom 1: species Ca (written 'ca') but Z 6 (C);"),
        "{e}"
    );
    // A label that is no element is not compared.
    let s = read_one("1\nProperties=species:S:1:pos:R:3:Z:I:1\nA1 0 0 0 3\n");
    assert_eq!(s.symbols, ["A1"]);
}

#[test]
fn extxyz_symbols_and_positions_aliases() {
    let s = read_one("1\nProperties=positions:R:3:symbols:S:1:Z:I:1\n1 2 3 Fe 26\n");
    assert_eq!(s.symbols, ["Fe"]);
    assert_eq!(s.positions, vec![[1.0, 2.0, 3.0]]);
    assert_eq!(
        s.array("Z"),
        Some(&PropData::Int {
            ncols: 1,
            data: vec![26]
        })
    );
    // When both spellings are present the ASE-written names win, the others are kept.
    let s = read_one("1\nProperties=symbols:S:1:species:S:1:pos:R:3\nX Fe 1 2 3\n");
    assert_eq!(s.symbols, ["Fe"]);
    assert_eq!(s.array("symbols"), Some(&PropData::Str(vec!["X".into()])));
}

#[test]
fn extxyz_extra_columns_of_every_type() {
    let s = read_one(
        "2\nProperties=species:S:1:pos:R:3:vel:R:3:id:I:1:fix:L:3:label:S:1\n\
         H 0 0 0 0.1 0.2 0.3 7 T F True a1\n\
         He 1 1 1 -1e-3 2E2 inf -8 False F T b2\n",
    );
    assert_eq!(
        s.array("vel"),
        Some(&PropData::Real {
            ncols: 3,
            data: vec![0.1, 0.2, 0.3, -1e-3, 200.0, f64::INFINITY]
        })
    );
    assert_eq!(
        s.array("id"),
        Some(&PropData::Int {
            ncols: 1,
            data: vec![7, -8]
        })
    );
    assert_eq!(
        s.array("fix"),
        Some(&PropData::Bool {
            ncols: 3,
            data: vec![true, false, true, false, false, true]
        })
    );
    assert_eq!(
        s.array("label"),
        Some(&PropData::Str(vec!["a1".into(), "b2".into()]))
    );
}

// ----- Virial and stress ------------------------------------------------------------------------

#[test]
fn extxyz_stress_is_converted_to_virial() {
    // Cubic cell, volume 8 Å^3.
    let head = "1\nLattice=\"2 0 0 0 2 0 0 0 2\"";
    // Voigt xx yy zz yz xz xy.
    let s = read_one(&format!("{head} stress=\"1 2 3 4 5 6\"\nH 0 0 0\n"));
    let expect = [
        [-8.0, -48.0, -40.0],
        [-48.0, -16.0, -32.0],
        [-40.0, -32.0, -24.0],
    ];
    assert_eq!(s.virial, Some(expect));
    // The same tensor as 9 numbers.
    let s9 = read_one(&format!("{head} stress=\"1 6 5 6 2 4 5 4 3\"\nH 0 0 0\n"));
    assert_eq!(s9.virial, Some(expect));
    assert!(!s9.info.contains_key("stress"));
    // 9 numbers are column-major (ASE/Fortran order): visible for a non-symmetric tensor.
    let v = read_one(&format!("{head} virial=\"1 2 3 4 5 6 7 8 9\"\nH 0 0 0\n"));
    assert_eq!(
        v.virial,
        Some([[1.0, 4.0, 7.0], [2.0, 5.0, 8.0], [3.0, 6.0, 9.0]])
    );
    // virial wins over stress; the stress is kept in info.
    let both = read_one(&format!(
        "{head} stress=\"1 2 3 4 5 6\" virial=\"1 0 0 0 1 0 0 0 1\"\nH 0 0 0\n"
    ));
    assert_eq!(
        both.virial,
        Some([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    );
    assert_eq!(
        both.info.get("stress"),
        Some(&InfoValue::Reals(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    );
    // Round trip writes the virial (column-major) and reads the same back.
    let t = frame_to_string(&v, &WriteOptions::default()).expect("write");
    assert!(
        t.contains("virial=\"1.0 2.0 3.0 4.0 5.0 6.0 7.0 8.0 9.0\""),
        "{t}"
    );
    assert_eq!(read_one(&t).virial, v.virial);
}

#[test]
fn extxyz_stress_sign_matches_ase_pressure() {
    // A compressed crystal has positive pressure p = -tr(stress)/3 in ASE, and its virial
    // trace is then positive: tr(W) = 3 p V.
    let s =
        read_one("1\nLattice=\"3 0 0 0 3 0 0 0 3\" stress=\"-0.01 -0.01 -0.01 0 0 0\"\nH 0 0 0\n");
    let w = s.virial.expect("virial");
    let p = 0.01;
    assert!(close(w[0][0] + w[1][1] + w[2][2], 3.0 * p * 27.0, 1e-14));
}

// ----- Line endings, blank lines, empty frames, origins ------------------------------------------

#[test]
fn extxyz_crlf_and_blank_lines_and_empty_frames() {
    let text = "2\r\nLattice=\"4 0 0 0 4 0 0 0 4\" energy=-1.5 config_type=bulk\r\nAl 0 0 0\r\nAl 2 2 2\r\n\
                \r\n0\r\nconfig_type=empty\r\n1\nenergy=2\nH 1 1 1\n\n\n  \n";
    let v = read(text);
    assert_eq!(v.len(), 3);
    assert_eq!(
        v[0].config_type.as_deref(),
        Some("bulk"),
        "no stray \\r in values"
    );
    let s = read_one("1\nconfig_type=\" bulk \" a=1\nH 0 0 0\n");
    assert_eq!(
        s.config_type.as_deref(),
        Some("bulk"),
        "config_type is trimmed"
    );
    assert_eq!(read_one("1\nconfig_type=\"\"\nH 0 0 0\n").config_type, None);
    assert_eq!(v[0].positions[1], [2.0, 2.0, 2.0]);
    assert!(v[1].is_empty());
    assert_eq!(v[1].config_type.as_deref(), Some("empty"));
    assert_eq!(v[2].energy, Some(2.0));
    assert_eq!(
        v.iter()
            .map(|s| (s.origin.frame, s.origin.line))
            .collect::<Vec<_>>(),
        [(0, 1), (1, 6), (2, 8)]
    );
    assert_eq!(v[0].origin.file.as_deref(), Some("t.xyz"));
    assert_eq!(v[2].origin.to_string(), "t.xyz, frame 3 (line 8)");
    // Missing final newline on a complete frame is fine.
    assert_eq!(read("1\n\nH 0 0 0").len(), 1);
    // Empty input: no frames.
    assert!(read("").is_empty());
    assert!(read("\n\n").is_empty());
}

// ----- Errors -----------------------------------------------------------------------------------

#[test]
fn extxyz_error_column_count_mismatch() {
    let text = "2\nProperties=species:S:1:pos:R:3:forces:R:3\nH 0 0 0 1 1 1\nH 0 0 0\n";
    assert_eq!(
        err_of(text, "train.xyz"),
        "train.xyz:4: atom line has 4 columns, Properties says 7 (species:S:1:pos:R:3:forces:R:3); \
         check the Properties key and the atom count of this frame"
    );
    match read_str(text, "train.xyz", &ReadOptions::default()) {
        Err(e @ ExtxyzError::Parse { .. }) => {
            assert_eq!(e.line(), Some(4));
            assert_eq!(e.file(), Some("train.xyz"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn extxyz_error_pbc_without_lattice() {
    assert_eq!(
        err_of("1\npbc=\"T T T\"\nH 0 0 0\n", "valid.xyz"),
        "valid.xyz:2: no Lattice and pbc=\"T T T\"; a periodic frame needs Lattice=\"ax ay az bx \
         by bz cx cy cz\", or set pbc=\"F F F\" for a non-periodic one"
    );
    assert_err_starts(
        "1\npbc=\"F T F\"\nH 0 0 0\n",
        "t.xyz:2: no Lattice and pbc=\"F T F\"",
    );
}

#[test]
fn extxyz_error_non_finite_values_name_the_atom() {
    assert_eq!(
        err_of("3\n\nH 0 0 0\nH 1 NaN 0\nH 2 0 0\n", "c.xyz"),
        "c.xyz:4: atom 2 has a non-finite position (1 NaN 0); remove this frame or fix the atom"
    );
    assert_err_starts(
        "2\nProperties=species:S:1:pos:R:3:forces:R:3\nH 0 0 0 0 0 0\nH 0 0 0 inf 0 0\n",
        "t.xyz:4: atom 2 has a non-finite force (inf 0 0)",
    );
    assert_err_starts(
        "1\nenergy=nan\nH 0 0 0\n",
        "t.xyz:2: energy=nan is not finite",
    );
    assert_err_starts(
        "1\nLattice=\"1 0 0 0 1 0 0 0 inf\"\nH 0 0 0\n",
        "t.xyz:2: Lattice=\"1 0 0 0 1 0 0 0 inf\" has a non-finite number",
    );
    assert_err_starts(
        "1\nvirial=\"1 0 0 0 NaN 0 0 0 1\"\nH 0 0 0\n",
        "t.xyz:2: virial/stress has a non-finite number",
    );
}

#[test]
fn extxyz_error_count_lines() {
    assert_err_starts(
        "abc\n\nH 0 0 0\n",
        "t.xyz:1: expected the atom count of a new frame, found 'abc'",
    );
    assert_err_starts(
        "-1\n\n",
        "t.xyz:1: expected the atom count of a new frame, found '-1'",
    );
    assert_err_starts(
        "8 atoms\n\n",
        "t.xyz:1: expected the atom count of a new frame, found '8 atoms'",
    );
    // A count that is too small: the next atom line is taken for a count line.
    assert_err_starts(
        "1\n\nH 0 0 0\nH 1 1 1\n",
        "t.xyz:4: expected the atom count of a new frame, found 'H 1 1 1'",
    );
}

#[test]
fn extxyz_error_truncated_frames() {
    let text = "1\n\nH 0 0 0\n3\nenergy=1\nH 0 0 0\nH 1 1 1\n";
    let e = read_str(text, "cand.xyz", &ReadOptions::default()).expect_err("truncated");
    assert!(
        matches!(
            e,
            ExtxyzError::Truncated {
                line: 4,
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "cand.xyz:4: the frame starting here declares 3 atoms but the file ends after 2 atom \
         line(s); the file was cut off (for example by a killed run): regenerate it, or delete \
         the incomplete last frame (line 4 to the end of the file) to keep the whole frames \
         before it, for example with `head -n 3 FILE > FIXED.xyz`"
    );
    // The hint names no library option (which a command-line user cannot set).
    assert!(!e.to_string().contains("allow_truncated_tail"));
    let e = read_str("5\n\nH 0 0 0\n", "c.xyz", &ReadOptions::default()).expect_err("t");
    assert!(
        e.to_string()
            .ends_with("regenerate it (it holds no whole frame)"),
        "{e}"
    );
    // Only the count line.
    let e = read_str("1\n\nH 0 0 0\n5\n", "c.xyz", &ReadOptions::default()).expect_err("t");
    assert!(
        matches!(
            e,
            ExtxyzError::Truncated {
                line: 4,
                expected: 5,
                found: 0,
                ..
            }
        ),
        "{e:?}"
    );
    // Last line cut mid-way, without newline.
    let e = err_of("2\n\nH 0 0 0\nH 1.0 2.", "c.xyz");
    assert!(
        e.starts_with("c.xyz:4: atom line has 3 columns, Properties says 4"),
        "{e}"
    );
    assert!(
        e.ends_with(
            "(this last line has no newline: the file was probably cut off mid-write: \
             regenerate it (it holds no whole frame))"
        ),
        "{e}"
    );
    let e = err_of("1\n\nH 0 0 0\n2\n\nH 0 0 0\nH 1.0 2.", "c.xyz");
    assert!(
        e.ends_with("delete the incomplete last frame (line 4 to the end of the file) to keep the whole frames before it, for example with `head -n 3 FILE > FIXED.xyz`)"),
        "{e}"
    );
    assert!(!e.contains("allow_truncated_tail"), "{e}");
}

#[test]
fn extxyz_truncated_tail_dropped_when_allowed() {
    let seen: Arc<Mutex<Vec<Warning>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let opts = ReadOptions {
        allow_truncated_tail: true,
        on_warning: Some(Arc::new(move |w: &Warning| {
            sink.lock().expect("lock").push(w.clone())
        })),
        ..Default::default()
    };
    for (text, line) in [
        (
            "1\n\nH 0 0 0\n1\n\nH 1 1 1\n3\nenergy=1\nH 0 0 0\nH 1 1 1\n",
            7,
        ),
        ("1\n\nH 0 0 0\n1\n\nH 1 1 1\n3\n", 7),
        (
            "1\n\nH 0 0 0\n1\n\nH 1 1 1\n3\nenergy=1\nH 0 0 0\nH 1 1",
            10,
        ),
        ("1\n\nH 0 0 0\n1\n\nH 1 1 1\n3\nLattice=\"1 0", 8),
    ] {
        seen.lock().expect("lock").clear();
        let mut r = Reader::new(text.as_bytes(), "cand.xyz", opts.clone());
        let frames: Vec<Structure> = r.by_ref().collect::<Result<_, _>>().expect("tail dropped");
        assert_eq!(frames.len(), 2, "{text:?}");
        let w = r.dropped_tail().expect("recorded").clone();
        assert_eq!(w.line, line, "{text:?}: {w}");
        assert!(
            w.message
                .starts_with("dropped the incomplete last frame (frame 3)"),
            "{w}"
        );
        assert_eq!(*seen.lock().expect("lock"), vec![w]);
    }
    // A complete file reports nothing; an error in the middle is still an error.
    let mut r = Reader::new("1\n\nH 0 0 0\n".as_bytes(), "ok.xyz", opts.clone());
    assert_eq!(r.by_ref().count(), 1);
    assert!(r.dropped_tail().is_none());
    let e = err_with("1\n\nH 0 0 x\n1\n\nH 0 0 0\n", "bad.xyz", &opts);
    assert!(
        e.starts_with("bad.xyz:3: atom 1: column 4 ('pos' component 3 of 3) is 'x'"),
        "{e}"
    );
}

#[test]
fn extxyz_error_header_values() {
    let cases: &[(&str, &str)] = &[
        (
            "Lattice=\"1 0 0 0 1 0 0 0\"",
            "t.xyz:2: Lattice=\"1 0 0 0 1 0 0 0\" is not 9 numbers; give the three lattice vectors",
        ),
        (
            "Lattice=\"4 0 0 0 4 0 0 0 4\" pbc=\"T T\"",
            "t.xyz:2: pbc=\"T T\" is not three logicals",
        ),
        (
            "Lattice",
            "t.xyz:2: key 'Lattice' has no value; write Lattice=",
        ),
        (
            "Lattice=\"4 0 0 0 0 0 0 0 4\"",
            "t.xyz:2: Lattice vector b is zero but pbc=\"T T T\" makes it periodic",
        ),
        ("energy=abc", "t.xyz:2: energy=\"abc\" is not a number"),
        ("energy", "t.xyz:2: key 'energy' has no value"),
        (
            "config_type",
            "t.xyz:2: key 'config_type' has no value; write config_type=<name>",
        ),
        (
            "virial=\"1 2 3\"",
            "t.xyz:2: virial=\"1 2 3\" is not 9 numbers",
        ),
        (
            "stress=\"1 2 3 4 5\"",
            "t.xyz:2: stress=\"1 2 3 4 5\" is not 9 or 6 numbers",
        ),
        (
            "stress=\"1 2 3 4 5 6\"",
            "t.xyz:2: stress= needs a Lattice with non-zero volume",
        ),
        (
            "Lattice=\"1 0 0 0 1 0 0 0 0\" pbc=\"T T F\" stress=\"1 2 3 4 5 6\"",
            "t.xyz:2: stress= needs a Lattice with non-zero volume",
        ),
        (
            "a=1 a=2",
            "t.xyz:2: key 'a' appears twice in the comment line",
        ),
        (
            "Lattice=5 0 0 0 5 0 0 0 5",
            "t.xyz:2: the comment line has a bare word '0' more than once: a value with \
             spaces must be quoted, e.g. Lattice=\"ax",
        ),
        (
            "pbc=T T T",
            "t.xyz:2: the comment line has a bare word 'T' more than once",
        ),
        (
            "Lattice=\"4 0 0 0 4 0 0 0 4\" lattice=\"4 0 0 0 4 0 0 0 4\"",
            "t.xyz:2: key 'lattice' appears twice",
        ),
        (
            "name=\"unclosed",
            "t.xyz:2: comment line has an unclosed \" at column 6; add the closing \"",
        ),
        (
            "kpts={1 2",
            "t.xyz:2: comment line has an unclosed { at column 6; add the closing }",
        ),
        (
            "=3",
            "t.xyz:2: comment line has '=' without a key at column 1",
        ),
        (
            "Properties=species:S:1:pos:R",
            "t.xyz:2: Properties=species:S:1:pos:R is not a list of name:type:ncols triples",
        ),
        (
            "Properties=species:S:1:pos:X:3",
            "t.xyz:2: Properties=species:S:1:pos:X:3: property 'pos' has type 'X'; the types are S",
        ),
        (
            "Properties=species:S:1:pos:R:0",
            "t.xyz:2: Properties=species:S:1:pos:R:0: property 'pos' has column count '0'",
        ),
        (
            "Properties=species:S:1:pos:R:three",
            "t.xyz:2: Properties=species:S:1:pos:R:three: property 'pos' has column count 'three'",
        ),
        (
            "Properties=species:S:1:pos:R:3:pos:R:3",
            "t.xyz:2: Properties=species:S:1:pos:R:3:pos:R:3 names 'pos' twice",
        ),
        (
            "Properties=species:S:2:pos:R:3",
            "t.xyz:2: Properties=species:S:2:pos:R:3: string property 'species' has 2 columns",
        ),
        (
            "Properties=pos:R:3",
            "t.xyz:2: Properties=pos:R:3 has no species (or symbols) column",
        ),
        (
            "Properties=species:S:1",
            "t.xyz:2: Properties=species:S:1 has no pos (or positions) column; add pos:R:3",
        ),
        (
            "Properties=species:S:1:pos:I:3",
            "t.xyz:2: Properties=species:S:1:pos:I:3: 'pos' is I:3 but must be R:3",
        ),
        (
            "Properties=species:R:1:pos:R:3",
            "t.xyz:2: Properties=species:R:1:pos:R:3: 'species' is R:1 but must be S:1",
        ),
        (
            "Properties=species:S:1:pos:R:3:forces:R:1",
            "t.xyz:2: Properties=species:S:1:pos:R:3:forces:R:1: 'forces' is R:1 but must be R:3",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("1\n{line}\nH 0 0 0\n");
        let e = err_of(&text, "t.xyz");
        assert!(
            e.starts_with(expected),
            "for {line}:\n  got      {e}\n  expected {expected}"
        );
    }
}

#[test]
fn extxyz_error_atom_columns() {
    let props = "Properties=species:S:1:pos:R:3:n:I:1:m:L:1";
    let cases = [
        (
            "H 0 0 z 1 T",
            "t.xyz:3: atom 1: column 4 ('pos' component 3 of 3) is 'z', not a real number",
        ),
        (
            "H 0 0 0 1.5 T",
            "t.xyz:3: atom 1: column 5 ('n') is '1.5', not an integer",
        ),
        (
            "H 0 0 0 1 yes",
            "t.xyz:3: atom 1: column 6 ('m') is 'yes', not a logical (T, F, True or False)",
        ),
        (
            "H 0 0 0D0 1 T",
            "t.xyz:3: atom 1: column 4 ('pos' component 3 of 3) is '0D0', not a real number",
        ),
        ("", "t.xyz:3: atom line has 0 columns, Properties says 6"),
    ];
    for (atom, expected) in cases {
        let e = err_of(&format!("1\n{props}\n{atom}\n"), "t.xyz");
        assert!(e.starts_with(expected), "got      {e}\nexpected {expected}");
    }
}

#[test]
fn extxyz_error_encoding_long_lines_and_io() {
    let bytes: &[u8] = b"1\nname=\xff\xfe\nH 0 0 0\n";
    let e = Reader::new(bytes, "bin.xyz", ReadOptions::default())
        .next()
        .expect("item")
        .expect_err("utf8");
    assert!(
        e.to_string()
            .starts_with("bin.xyz:2: line is not valid UTF-8 (byte 6)"),
        "{e}"
    );
    // A gzip file says so; a UTF-8 byte-order mark before the count is skipped.
    let gz: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\n";
    let e = Reader::new(gz, "a.xyz.gz", ReadOptions::default())
        .next()
        .expect("item")
        .expect_err("gzip");
    assert!(
        e.to_string().contains(
            "a.xyz.gz:1: line is not valid UTF-8 (byte 2); this is a gzip-compressed file"
        ),
        "{e}"
    );
    let bom: &[u8] = b"\xef\xbb\xbf1\nPBC=\"F F F\"\nH 0 0 0\n";
    let s = Reader::new(bom, "bom.xyz", ReadOptions::default())
        .next()
        .expect("item")
        .expect("a BOM is skipped");
    assert_eq!(s.symbols, ["H"]);
    let opts = ReadOptions {
        max_line_bytes: 64,
        ..Default::default()
    };
    let long = format!("1\ncomment={}\nH 0 0 0\n", "x".repeat(100));
    let e = err_with(&long, "long.xyz", &opts);
    assert!(
        e.starts_with("long.xyz:2: line is longer than 64 bytes"),
        "{e}"
    );
    let e = read_file("/nonexistent/dir/train.xyz", &ReadOptions::default()).expect_err("missing");
    assert!(matches!(e, ExtxyzError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/dir/train.xyz: cannot open for reading"),
        "{e}"
    );
}

#[test]
fn extxyz_reader_stops_after_first_error() {
    let mut r = Reader::new(
        "1\n\nH 0 0 0\nx\n\nH 0 0 0\n1\n\nH 0 0 0\n".as_bytes(),
        "t",
        ReadOptions::default(),
    );
    assert!(matches!(r.next(), Some(Ok(_))));
    assert!(matches!(r.next(), Some(Err(_))));
    assert!(r.next().is_none());
}

#[test]
fn extxyz_lying_headers_fail_without_allocating() {
    // The count says 10^12 atoms: the reader allocates for what arrives and reports the cut.
    let e = read_str(
        "1000000000000\n\nH 0 0 0\n",
        "lie.xyz",
        &ReadOptions::default(),
    )
    .expect_err("lie");
    assert!(
        matches!(
            e,
            ExtxyzError::Truncated {
                expected: 1_000_000_000_000,
                found: 1,
                ..
            }
        ),
        "{e:?}"
    );
    // u64::MAX atoms.
    let e = err_of("18446744073709551615\n\nH 0 0 0\n", "lie.xyz");
    assert!(e.contains("declares 18446744073709551615 atoms"), "{e}");
    // A huge column count is checked against the atom line before anything is sized by it.
    let e = err_of(
        "1\nProperties=species:S:1:pos:R:3:x:R:1000000000000\nH 0 0 0 1\n",
        "lie.xyz",
    );
    assert!(
        e.starts_with("lie.xyz:3: atom line has 5 columns, Properties says 1000000000004"),
        "{e}"
    );
    // Column counts whose sum overflows.
    let big = usize::MAX;
    let e = err_of(
        &format!("1\nProperties=species:S:1:pos:R:3:x:R:{big}\nH 0 0 0\n"),
        "lie.xyz",
    );
    assert!(
        e.contains("declares more columns than any atom line can hold"),
        "{e}"
    );
    // The memory bound itself is measured in tests/extxyz_memory.rs.
}

// ----- Writing ----------------------------------------------------------------------------------

fn sample() -> Structure {
    let mut info = BTreeMap::new();
    info.insert("step".to_string(), InfoValue::Int(3));
    info.insert("T".to_string(), InfoValue::Real(300.0));
    info.insert("ok".to_string(), InfoValue::Bool(false));
    info.insert(
        "note".to_string(),
        InfoValue::Str("from \"md\" run".to_string()),
    );
    info.insert("k".to_string(), InfoValue::Reals(vec![1.0, 0.5]));
    Structure {
        cell: Some([[4.0, 0.0, 0.0], [0.5, 4.0, 0.0], [0.0, 0.0, 6.0]]),
        pbc: [true, true, false],
        positions: vec![[0.0, 0.0, 0.0], [1.0 / 3.0, -2.0, 1e-9]],
        symbols: vec!["Al".into(), "Cu".into()],
        energy: Some(-7.123456789012345),
        forces: Some(vec![[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]]),
        virial: Some([[1.0, 0.1, 0.2], [0.1, 2.0, 0.3], [0.2, 0.3, 3.0]]),
        config_type: Some("slab 111".into()),
        info,
        arrays: vec![
            (
                "gamma".into(),
                PropData::Real {
                    ncols: 1,
                    data: vec![1.23456789, 1234567.0],
                },
            ),
            (
                "id".into(),
                PropData::Int {
                    ncols: 1,
                    data: vec![10, 20],
                },
            ),
            (
                "move".into(),
                PropData::Bool {
                    ncols: 1,
                    data: vec![true, false],
                },
            ),
            ("tag".into(), PropData::Str(vec!["a".into(), "b".into()])),
        ],
        origin: Origin::default(),
    }
}

#[test]
fn extxyz_writes_ase_style_header_and_columns() {
    let t = frame_to_string(&sample(), &WriteOptions::default()).expect("write");
    let expected = "2\n\
Lattice=\"4.0 0.0 0.0 0.5 4.0 0.0 0.0 0.0 6.0\" Properties=species:S:1:pos:R:3:forces:R:3:gamma:R:1:id:I:1:move:L:1:tag:S:1 energy=-7.123456789012345 pbc=\"T T F\" config_type=\"slab 111\" virial=\"1.0 0.1 0.2 0.1 2.0 0.3 0.2 0.3 3.0\" T=300.0 k=\"1.0 0.5\" note=\"from \\\"md\\\" run\" ok=F step=3\n\
Al       0.00000000       0.00000000       0.00000000       0.10000000      -0.20000000       0.30000000      1.23457       10 T a\n\
Cu       0.33333333      -2.00000000       0.00000000      -0.10000000       0.20000000      -0.30000000  1.23457e+06       20 F b\n";
    assert_eq!(t, expected);
    // And it reads back as written.
    let s = read_one(&t);
    assert_eq!(s.config_type.as_deref(), Some("slab 111"));
    assert_eq!(s.info, sample().info);
    assert_eq!(
        s.energy,
        sample().energy,
        "energy is written with full precision"
    );
    assert_eq!(s.positions[1], [0.33333333, -2.0, 0.0]);
}

#[test]
fn extxyz_configurable_precision() {
    let opts = WriteOptions {
        positions: RealFormat::Fixed(3),
        forces: RealFormat::Significant(2),
        arrays: RealFormat::Fixed(1),
        ..WriteOptions::default()
    };
    let t = frame_to_string(&sample(), &opts).expect("write");
    let line = t.lines().nth(3).expect("atom 2");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cols[..8],
        [
            "Cu",
            "0.333",
            "-2.000",
            "0.000",
            "-0.1",
            "0.2",
            "-0.3",
            "1234567.0"
        ]
    );
    let t = frame_to_string(&sample(), &WriteOptions::lossless()).expect("write");
    assert_eq!(no_origin(read_one(&t)), sample());
}

#[test]
fn extxyz_g_format_matches_c() {
    // Expected strings are C printf("%.6g") / ("%.3g") outputs.
    let cases: &[(f64, usize, &str)] = &[
        (0.0, 6, "0"),
        (-0.0, 6, "-0"),
        (1.0, 6, "1"),
        (1.5, 6, "1.5"),
        (0.0001234567, 6, "0.000123457"),
        (0.00001234567, 6, "1.23457e-05"),
        (123456.0, 6, "123456"),
        (1234567.0, 6, "1.23457e+06"),
        (999999.5, 6, "1e+06"),
        (9.9999996, 6, "10"),
        (-2.5e-300, 6, "-2.5e-300"),
        (1e100, 6, "1e+100"),
        (2.345678, 3, "2.35"),
        (0.1, 1, "0.1"),
        (f64::NAN, 6, "NaN"),
        (f64::NEG_INFINITY, 6, "-inf"),
    ];
    for &(x, p, want) in cases {
        let mut s = String::new();
        push_g(x, p, &mut s);
        assert_eq!(s, want, "%.{p}g of {x:e}");
        // Reads back within the precision.
        let back: f64 = s.parse().expect("parse");
        if x.is_finite() {
            assert!((back - x).abs() <= 0.5 * 10f64.powi(1 - p as i32) * x.abs() * 1.000001);
        }
    }
}

#[test]
fn extxyz_write_errors_name_the_problem() {
    let mut s = sample();
    s.origin = Origin {
        file: Some("md.xyz".into()),
        frame: 4,
        line: 99,
    };
    let check = |s: &Structure, want: &str| {
        let e = frame_to_string(s, &WriteOptions::default()).expect_err("invalid");
        assert!(matches!(e, ExtxyzError::Write { .. }));
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot write md.xyz, frame 5 (line 99): "),
            "{msg}"
        );
        assert!(msg.contains(want), "{msg}\n  should contain {want}");
    };
    let mut t = s.clone();
    t.symbols.pop();
    check(&t, "1 symbols for 2 positions");
    let mut t = s.clone();
    t.symbols[1] = "C u".into();
    check(&t, "atom 2 has symbol 'C u'");
    let mut t = s.clone();
    t.positions[0][2] = f64::NAN;
    check(&t, "atom 1 has a non-finite position");
    let mut t = s.clone();
    t.forces = Some(vec![[0.0; 3]]);
    check(&t, "1 forces for 2 atoms");
    let mut t = s.clone();
    t.cell = None;
    check(&t, "pbc=\"T T F\" without a cell");
    let mut t = s.clone();
    t.energy = Some(f64::INFINITY);
    check(&t, "the energy is not finite");
    let mut t = s.clone();
    t.info.insert("energy".into(), InfoValue::Real(1.0));
    check(&t, "info key 'energy' would be read back");
    let mut t = s.clone();
    t.info.insert("PBC".into(), InfoValue::Bool(true));
    check(&t, "info key 'PBC' would be read back");
    let mut t = s.clone();
    t.virial = None;
    t.info
        .insert("stress".into(), InfoValue::Reals(vec![0.0; 6]));
    check(&t, "info key 'stress' would be read back");
    let mut t = s.clone();
    t.config_type = Some(" bulk".into());
    check(
        &t,
        "config_type ' bulk' is empty, has leading or trailing blanks",
    );
    let mut t = s.clone();
    t.info
        .insert("x".into(), InfoValue::Str("two\nlines".into()));
    check(&t, "info 'x' contains a line break");
    let mut t = s.clone();
    t.arrays.push((
        "bad:name".into(),
        PropData::Int {
            ncols: 1,
            data: vec![1, 2],
        },
    ));
    check(&t, "array name 'bad:name'");
    let mut t = s.clone();
    t.arrays.push((
        "forces".into(),
        PropData::Real {
            ncols: 3,
            data: vec![0.0; 6],
        },
    ));
    check(
        &t,
        "array 'forces' would be read back as the species, positions or forces",
    );
    let mut t = s.clone();
    t.arrays.push((
        "short".into(),
        PropData::Real {
            ncols: 2,
            data: vec![0.0; 3],
        },
    ));
    check(
        &t,
        "array 'short' has 3 values, expected 4 (2 atoms x 2 columns)",
    );
    let mut t = s.clone();
    t.arrays.push((
        "label".into(),
        PropData::Str(vec!["ok".into(), "not ok".into()]),
    ));
    check(&t, "array 'label' of atom 2 is 'not ok'");
    // Nothing reaches the writer on error.
    let mut out: Vec<u8> = Vec::new();
    assert!(write_frame(&mut out, &t, &WriteOptions::default()).is_err());
    assert!(out.is_empty());
}

#[test]
fn extxyz_write_file_atomic_replaces_whole_file() {
    let dir = std::env::temp_dir().join(format!("aceuq-extxyz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("out.xyz");
    let frames = vec![sample(), read_one("1\n\nH 0 0 0\n")];
    let n = write_file_atomic(&path, &frames, &WriteOptions::default()).expect("write");
    assert_eq!(n, 2);
    let back = read_file(&path, &ReadOptions::default()).expect("read");
    assert_eq!(back.len(), 2);
    assert_eq!(
        back[0].origin.file.as_deref(),
        Some(path.display().to_string().as_str())
    );
    let before = std::fs::read(&path).expect("bytes");
    // An invalid second frame: the old file stays, no temporary is left behind.
    let mut bad = sample();
    bad.positions[1][0] = f64::NAN;
    let e =
        write_file_atomic(&path, [&frames[0], &bad], &WriteOptions::default()).expect_err("bad");
    assert!(
        e.to_string().contains("atom 2 has a non-finite position"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).expect("bytes"), before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "out.xyz")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A directory that does not exist.
    let e = write_file_atomic(dir.join("no/such/x.xyz"), &frames, &WriteOptions::default())
        .expect_err("dir");
    assert!(matches!(e, ExtxyzError::Io { .. }), "{e}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

// ----- Property test: write -> read -> write ---------------------------------------------------

fn arb_word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.+-]{1,6}"
}

fn arb_str_value() -> impl Strategy<Value = String> {
    // Includes characters that need quoting and escaping; excludes texts that would read back
    // as numbers or logicals (documented format limitation).
    "[A-Za-z_ \"'={}\\[\\]\\\\,.:-]{1,12}".prop_filter("reads as a string", |s| {
        matches!(classify(s), InfoValue::Str(_))
    })
}

fn arb_info_value() -> impl Strategy<Value = InfoValue> {
    prop_oneof![
        any::<i64>().prop_map(InfoValue::Int),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(InfoValue::Real),
        any::<bool>().prop_map(InfoValue::Bool),
        arb_str_value().prop_map(InfoValue::Str),
        prop_oneof![Just(0usize), 2usize..5]
            .prop_flat_map(|n| proptest::collection::vec(-1e6f64..1e6, n))
            .prop_map(InfoValue::Reals),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,7}".prop_filter("not a reserved key", |k| {
        !matches!(
            k.to_ascii_lowercase().as_str(),
            "lattice" | "properties" | "pbc"
        ) && !["energy", "config_type", "virial", "stress"].contains(&k.as_str())
    })
}

fn arb_prop(n: usize) -> impl Strategy<Value = PropData> {
    prop_oneof![
        (1usize..4).prop_flat_map(move |c| {
            proptest::collection::vec(-1e4f64..1e4, c * n)
                .prop_map(move |data| PropData::Real { ncols: c, data })
        }),
        (1usize..3).prop_flat_map(move |c| {
            proptest::collection::vec(any::<i64>(), c * n)
                .prop_map(move |data| PropData::Int { ncols: c, data })
        }),
        (1usize..3).prop_flat_map(move |c| {
            proptest::collection::vec(any::<bool>(), c * n)
                .prop_map(move |data| PropData::Bool { ncols: c, data })
        }),
        proptest::collection::vec(arb_word(), n).prop_map(PropData::Str),
    ]
}

fn arb_structure() -> impl Strategy<Value = Structure> {
    (0usize..6).prop_flat_map(|n| {
        let cell = proptest::option::of(
            (
                proptest::array::uniform3(1.0f64..20.0),
                proptest::array::uniform3(-3.0f64..3.0),
            )
                .prop_map(|(d, o)| {
                    [
                        [d[0], o[0], o[1]],
                        [o[0] * 0.5, d[1], o[2]],
                        [o[1], o[2], d[2]],
                    ]
                }),
        );
        (
            cell,
            proptest::array::uniform3(any::<bool>()),
            proptest::collection::vec(proptest::array::uniform3(-100.0f64..100.0), n),
            proptest::collection::vec(
                proptest::sample::select(vec!["H", "He", "Al", "Cu", "O", "Xx"]),
                n,
            ),
            proptest::option::of(-1e5f64..1e5),
            proptest::option::of(proptest::collection::vec(
                proptest::array::uniform3(-50.0f64..50.0),
                n,
            )),
            proptest::option::of(proptest::array::uniform3(proptest::array::uniform3(
                -1e3f64..1e3,
            ))),
            proptest::option::of(
                "[A-Za-z0-9_\"'=.-][A-Za-z0-9 _\"'=.-]{0,8}[A-Za-z0-9_\"'=.-]|[A-Za-z0-9_.]",
            ),
            proptest::collection::btree_map(arb_key(), arb_info_value(), 0..4),
            proptest::collection::vec(("[a-z][a-z0-9_]{0,5}", arb_prop(n)), 0..3),
        )
            .prop_map(
                move |(
                    cell,
                    pbc,
                    positions,
                    symbols,
                    energy,
                    forces,
                    virial,
                    config_type,
                    info,
                    arrays,
                )| {
                    let pbc = if cell.is_some() { pbc } else { [false; 3] };
                    // The reader refuses a labelled frame of 0 atoms (structure::limits).
                    let (energy, virial) = if n == 0 {
                        (None, None)
                    } else {
                        (energy, virial)
                    };
                    let mut seen = HashSet::new();
                    let arrays = arrays
                        .into_iter()
                        .filter(|(name, _)| {
                            !["species", "pos", "forces", "symbols", "positions"]
                                .contains(&name.as_str())
                                && seen.insert(name.clone())
                        })
                        .collect();
                    Structure {
                        cell,
                        pbc,
                        positions,
                        symbols: symbols.into_iter().map(String::from).collect(),
                        energy,
                        forces,
                        virial,
                        config_type,
                        info,
                        arrays,
                        origin: Origin::default(),
                    }
                },
            )
            // The reader refuses periodic cells denser than matter (structure::limits).
            .prop_filter("a periodic cell of at least 1 Å^3 per atom", |s| {
                match (&s.cell, s.pbc.iter().any(|p| *p)) {
                    (Some(c), true) => {
                        let det = c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1])
                            - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
                            + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]);
                        det.abs() >= s.positions.len().max(1) as f64
                    }
                    _ => true,
                }
            })
    })
}

fn assert_close_structures(a: &Structure, b: &Structure, opts: &WriteOptions) {
    let tol = |f: RealFormat, x: f64| match f {
        RealFormat::Fixed(d) => 0.51 * 10f64.powi(-(d as i32)) + 1e-12 * x.abs(),
        RealFormat::Significant(p) => 0.51 * 10f64.powi(1 - p as i32) * x.abs(),
        RealFormat::Shortest => 0.0,
    };
    assert_eq!(a.cell, b.cell);
    assert_eq!(a.pbc, b.pbc);
    assert_eq!(a.symbols, b.symbols);
    assert_eq!(a.energy, b.energy);
    assert_eq!(a.virial, b.virial);
    assert_eq!(a.config_type, b.config_type);
    assert_eq!(a.info, b.info);
    assert_eq!(a.len(), b.len());
    for (p, q) in a
        .positions
        .iter()
        .flatten()
        .zip(b.positions.iter().flatten())
    {
        assert!(
            (p - q).abs() <= tol(opts.positions, *p),
            "position {p} vs {q}"
        );
    }
    assert_eq!(a.forces.is_some(), b.forces.is_some());
    if let (Some(f), Some(g)) = (&a.forces, &b.forces) {
        for (p, q) in f.iter().flatten().zip(g.iter().flatten()) {
            assert!((p - q).abs() <= tol(opts.forces, *p), "force {p} vs {q}");
        }
    }
    assert_eq!(a.arrays.len(), b.arrays.len());
    for ((na, da), (nb, db)) in a.arrays.iter().zip(&b.arrays) {
        assert_eq!(na, nb);
        match (da, db) {
            (PropData::Real { ncols: c, data: x }, PropData::Real { ncols: d, data: y }) => {
                assert_eq!(c, d);
                for (p, q) in x.iter().zip(y) {
                    assert!(
                        (p - q).abs() <= tol(opts.arrays, *p),
                        "array {na}: {p} vs {q}"
                    );
                }
            }
            _ => assert_eq!(da, db),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn extxyz_round_trip_property(s in arb_structure()) {
        let opts = WriteOptions::default();
        let t1 = frame_to_string(&s, &opts).expect("writable");
        let r1 = read_str(&t1, "p.xyz", &ReadOptions::default()).expect("readable");
        prop_assert_eq!(r1.len(), 1);
        let r1 = no_origin(r1.into_iter().next().expect("frame"));
        assert_close_structures(&s, &r1, &opts);
        // Writing what was read gives the same text, and so the same structure.
        let t2 = frame_to_string(&r1, &opts).expect("writable");
        prop_assert_eq!(&t1, &t2);
        // Lossless options reproduce the structure exactly.
        let t3 = frame_to_string(&s, &WriteOptions::lossless()).expect("writable");
        let r3 = no_origin(read_str(&t3, "p.xyz", &ReadOptions::default()).expect("readable").remove(0));
        prop_assert_eq!(&r3, &s);
    }

    #[test]
    fn extxyz_comment_line_never_panics(line in "[ -~]{0,60}") {
        // Arbitrary printable text either parses or gives a located error.
        match read_str(&format!("1\n{line}\nH 0 0 0\n"), "f.xyz", &ReadOptions::default()) {
            Ok(v) => prop_assert_eq!(v.len(), 1),
            Err(e) => prop_assert!(e.to_string().starts_with("f.xyz:"), "{}", e),
        }
    }
}
