//! Unit tests of frame appending: the text written, error messages, and the torn-tail repair.
//! The C ABI wrapper (`aceuq_append_frame`) and concurrent or killed appenders are tested in
//! `tests/nothing_lost.rs`.

use super::*;
use crate::io::extxyz::{ReadOptions, read_file};

fn workdir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("aceuq-extxyz-append-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const CELL: [[f64; 3]; 3] = [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]];

/// Appends a frame of `n` atoms tagged with `seq`.
fn append_n(path: &Path, seq: usize, n: usize) {
    let symbols = vec!["Li"; n];
    let positions: Vec<[f64; 3]> = (0..n).map(|a| [seq as f64, a as f64 * 0.5, 1.0]).collect();
    let seq = seq.to_string();
    let frame = AppendFrame {
        cell: CELL,
        pbc: [true; 3],
        symbols: &symbols,
        positions: &positions,
        ids: None,
        columns: &[],
        info: &[("seq", &seq)],
    };
    append_frame(path, &frame).unwrap();
}

fn seqs(path: &Path) -> Vec<(i64, usize)> {
    read_file(path, &ReadOptions::default())
        .unwrap()
        .iter()
        .map(|s| match s.info.get("seq") {
            Some(InfoValue::Int(q)) => (*q, s.len()),
            other => panic!("seq is {other:?}"),
        })
        .collect()
}

#[test]
fn appends_the_frame_as_formatted_from_its_structure() {
    let dir = workdir("text");
    let path = dir.join("c.xyz");
    let symbols = ["Li", "H"];
    let positions = [[0.0, 0.5, 1.0], [1.5, 2.0, 2.5]];
    let ids = [7, 9];
    let gamma = [0.25, 3.0];
    let frame = AppendFrame {
        cell: CELL,
        pbc: [true, true, false],
        symbols: &symbols,
        positions: &positions,
        ids: Some(&ids),
        columns: &[("gamma", &gamma)],
        info: &[
            ("step", "120"),
            ("max_gamma", "3.5"),
            ("method", "gamma local"),
            ("config_type", "md"),
        ],
    };
    let s = frame.to_structure();
    assert_eq!(s.symbols, ["Li", "H"]);
    assert_eq!(s.config_type.as_deref(), Some("md"));
    assert_eq!(s.info.get("step"), Some(&InfoValue::Int(120)));
    assert_eq!(s.info.get("max_gamma"), Some(&InfoValue::Real(3.5)));
    assert_eq!(
        s.info.get("method"),
        Some(&InfoValue::Str("gamma local".into()))
    );
    assert!(!s.info.contains_key("config_type"));
    let names: Vec<&str> = s.arrays.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["id", "gamma"]);

    let text = frame_to_string(&s, &Default::default()).unwrap();
    append_frame(&path, &frame).unwrap();
    append_frame(&path, &frame).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text.repeat(2));
    let back = read_file(&path, &ReadOptions::default()).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[1].positions, positions);
    assert_eq!(back[1].pbc, [true, true, false]);
}

#[test]
fn errors_say_what_and_where() {
    let dir = workdir("errors");
    let symbols = ["Li"];
    let positions = [[f64::NAN, 0.0, 0.0]];
    let frame = AppendFrame {
        cell: CELL,
        pbc: [true; 3],
        symbols: &symbols,
        positions: &positions,
        ids: None,
        columns: &[],
        info: &[],
    };
    let path = dir.join("bad.xyz");
    let e = append_frame(&path, &frame).unwrap_err();
    assert!(matches!(e, AppendError::Frame(ExtxyzError::Write { .. })));
    assert_eq!(
        e.to_string(),
        frame_to_string(&frame.to_structure(), &Default::default())
            .unwrap_err()
            .to_string()
    );
    assert!(!path.exists(), "nothing is written for an invalid frame");

    let ok = [[0.0; 3]];
    let frame = AppendFrame {
        positions: &ok,
        ..frame
    };
    let path = dir.join("missing").join("c.xyz");
    let e = append_frame(&path, &frame).unwrap_err();
    let AppendError::Io { source, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        e.to_string(),
        format!("cannot append to {}: {source}", path.to_str().unwrap())
    );
}

/// A writer killed mid-append leaves an incomplete last frame; the first append of a process
/// cuts it off, and leaves the whole frames before it untouched.
#[test]
fn first_append_cuts_an_incomplete_last_frame() {
    let dir = workdir("torn");
    let whole = dir.join("whole.xyz");
    let mut ends = vec![];
    for (q, n) in [(0, 3), (1, 5)] {
        append_n(&whole, q, n);
        ends.push(std::fs::metadata(&whole).unwrap().len() as usize);
    }
    let bytes = std::fs::read(&whole).unwrap();
    let second = &bytes[ends[0]..ends[1]];
    let line_ends: Vec<usize> = second
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    for (case, cut) in [
        ("mid_line", second.len() / 2 + 3),
        ("line_boundary", line_ends[3]),
        ("after_count", line_ends[0]),
        ("mid_count", 1),
    ] {
        let path = dir.join(format!("{case}.xyz"));
        std::fs::write(&path, &bytes[..ends[0] + cut]).unwrap();
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        drop_incomplete_tail(&path, &f).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..ends[0]], "{case}");

        // Through append_frame, on a fresh path: cut, then appended.
        let path = dir.join(format!("{case}_append.xyz"));
        std::fs::write(&path, &bytes[..ends[0] + cut]).unwrap();
        append_n(&path, 2, 4);
        assert_eq!(seqs(&path), [(0, 3), (2, 4)], "{case}");
    }
}

#[test]
fn whole_or_foreign_files_are_left_alone() {
    let dir = workdir("alone");
    let whole = dir.join("whole.xyz");
    append_n(&whole, 0, 2);
    append_n(&whole, 1, 3);
    let before = std::fs::read(&whole).unwrap();
    let f = std::fs::File::open(&whole).unwrap();
    drop_incomplete_tail(&whole, &f).unwrap();
    assert_eq!(std::fs::read(&whole).unwrap(), before);

    let other = dir.join("notes.xyz");
    std::fs::write(&other, "hello\nworld").unwrap();
    let f = std::fs::File::open(&other).unwrap();
    drop_incomplete_tail(&other, &f).unwrap();
    assert_eq!(std::fs::read(&other).unwrap(), b"hello\nworld");

    let empty = dir.join("empty.xyz");
    std::fs::write(&empty, "").unwrap();
    let f = std::fs::File::open(&empty).unwrap();
    drop_incomplete_tail(&empty, &f).unwrap();
    assert_eq!(std::fs::read(&empty).unwrap(), b"");
}
