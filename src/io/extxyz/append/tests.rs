//! Unit tests of frame appending: the text written, error messages, and what an append does to
//! a file ending with an incomplete frame (with or without our journal). The C ABI wrapper
//! (`aceuq_append_frame`), concurrent appenders, and appends that fail or are killed mid-write
//! (in a child process under a file size limit) are tested in `tests/nothing_lost.rs`.

use super::*;
use crate::io::extxyz::{ReadOptions, Reader, read_file};

fn workdir(name: &str) -> PathBuf {
    crate::testing::scratch_dir(&format!("extxyz-append-{name}"))
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
        format!(
            "cannot append to {}: cannot open it: {source} (nothing was written)",
            path.to_str().unwrap()
        )
    );
}

/// Two whole frames (3 and 5 atoms) and the file sizes after each; the cut points inside the
/// second one.
fn two_frames(dir: &Path) -> (Vec<u8>, usize, Vec<(&'static str, usize)>) {
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
        .map(|(i, _)| ends[0] + i + 1)
        .collect();
    let cuts = vec![
        ("mid_line", ends[0] + second.len() / 2 + 3),
        ("line_boundary", line_ends[3]),
        ("after_count", line_ends[0]),
        ("mid_count", ends[0] + 1),
        ("all_but_newline", ends[1] - 1),
    ];
    (bytes, ends[0], cuts)
}

/// Leaves the journal an append of `bytes[start..]` to `path` writes before it starts.
fn journal_for(path: &Path, start: usize, bytes: &[u8]) {
    let meta = std::fs::metadata(path).unwrap();
    let (dev, ino) = journal::identity(&meta);
    let entry = journal::Entry {
        dev,
        ino,
        length: start as u64,
        bytes: (bytes.len() - start) as u64,
        crc32: crc32fast::hash(&bytes[start..]),
    };
    journal::write(&journal::path_for(path), &entry).unwrap();
}

/// An append killed mid-write leaves its journal and an incomplete last frame; readers stop
/// before it, and the next append cuts exactly it off (and removes the journal).
#[test]
fn journal_lets_the_next_append_undo_exactly_our_incomplete_frame() {
    let dir = workdir("torn");
    let (bytes, start, cuts) = two_frames(&dir);
    for (case, cut) in cuts {
        let path = dir.join(format!("{case}.xyz"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        journal_for(&path, start, &bytes);
        let mut r = Reader::open(&path, ReadOptions::default()).unwrap();
        assert_eq!(r.by_ref().count(), 1, "{case}");
        let w = r.dropped_tail().expect("reported");
        assert!(w.message.contains("interrupted append"), "{case}: {w}");

        append_n(&path, 2, 4);
        assert_eq!(seqs(&path), [(0, 3), (2, 4)], "{case}");
        assert!(std::fs::read(&path).unwrap().starts_with(&bytes[..start]));
        assert!(!journal::path_for(&path).exists(), "{case}");
    }
    // Killed after the frame was written whole, before the journal was removed: kept.
    let path = dir.join("whole_frame.xyz");
    std::fs::write(&path, &bytes).unwrap();
    journal_for(&path, start, &bytes);
    assert_eq!(read_file(&path, &ReadOptions::default()).unwrap().len(), 2);
    append_n(&path, 2, 4);
    assert_eq!(seqs(&path), [(0, 3), (1, 5), (2, 4)]);
    // Full length but other bytes (a crash before the data reached the disk): cut.
    let path = dir.join("garbage.xyz");
    let mut garbage = bytes.clone();
    garbage[start + 2] ^= 1;
    std::fs::write(&path, &garbage).unwrap();
    journal_for(&path, start, &bytes);
    append_n(&path, 2, 4);
    assert_eq!(seqs(&path), [(0, 3), (2, 4)]);
    // A journal cut off while being written: the append never started; discarded.
    let path = dir.join("cut_journal.xyz");
    std::fs::write(&path, &bytes).unwrap();
    journal_for(&path, start, &bytes);
    let j = journal::path_for(&path);
    let text = std::fs::read(&j).unwrap();
    std::fs::write(&j, &text[..text.len() - 2]).unwrap();
    append_n(&path, 2, 4);
    assert_eq!(seqs(&path), [(0, 3), (1, 5), (2, 4)]);
    assert!(!j.exists());
}

/// A journal that does not match the file (the file was replaced, or shortened below the
/// recorded length) proves nothing: the file is not cut, and its incomplete frame, if any, is
/// an error.
#[test]
fn a_stale_journal_never_cuts_the_file() {
    let dir = workdir("stale");
    let (bytes, start, cuts) = two_frames(&dir);
    let cut = cuts[0].1;
    // Replaced: same path, another file.
    let path = dir.join("replaced.xyz");
    std::fs::write(&path, &bytes[..cut]).unwrap();
    journal_for(&path, start, &bytes);
    let other = dir.join("replaced.new");
    std::fs::write(&other, &bytes[..cut]).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let e = try_append_n(&path).unwrap_err();
    assert!(
        matches!(e, AppendError::IncompleteTail { line: 6, .. }),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), &bytes[..cut]);
    assert!(!journal::path_for(&path).exists(), "stale journal removed");
    // Shortened below the recorded length: left alone.
    // (The first frame without its last atom line.)
    let short = bytes[..start - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    let path = dir.join("shortened.xyz");
    std::fs::write(&path, &bytes[..short]).unwrap();
    journal_for(&path, start, &bytes);
    let e = try_append_n(&path).unwrap_err();
    assert!(
        matches!(e, AppendError::IncompleteTail { line: 1, .. }),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), &bytes[..short]);
}

fn try_append_n(path: &Path) -> Result<(), AppendError> {
    let symbols = ["Li"];
    let positions = [[0.0; 3]];
    append_frame(
        path,
        &AppendFrame {
            cell: CELL,
            pbc: [true; 3],
            symbols: &symbols,
            positions: &positions,
            ids: None,
            columns: &[],
            info: &[],
        },
    )
}

/// An incomplete last frame that no journal of ours accounts for is somebody else's data: the
/// append fails, naming the file and the line where the frame starts, and the file is left as
/// it was.
#[test]
fn an_incomplete_last_frame_without_our_journal_is_an_error() {
    let dir = workdir("foreign");
    let (bytes, _, cuts) = two_frames(&dir);
    for (case, cut) in cuts {
        let path = dir.join(format!("{case}.xyz"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        if case == "all_but_newline" {
            // Only the newline missing: the frame is whole, and the append adds the newline.
            append_n(&path, 2, 4);
            assert_eq!(seqs(&path), [(0, 3), (1, 5), (2, 4)]);
            continue;
        }
        let e = try_append_n(&path).unwrap_err();
        assert!(
            matches!(e, AppendError::IncompleteTail { line: 6, .. }),
            "{case}: {e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}:6: the last frame (from line 6",
                path.display()
            )),
            "{case}: {msg}"
        );
        assert!(
            msg.contains("`head -n 5 FILE > FIXED.xyz`"),
            "{case}: {msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..cut], "{case}");
        assert!(!journal::path_for(&path).exists(), "{case}");
        // Still refused on the next try.
        assert!(try_append_n(&path).is_err(), "{case}");
    }
}

#[test]
fn whole_or_foreign_files_are_left_alone() {
    let dir = workdir("alone");
    let whole = dir.join("whole.xyz");
    append_n(&whole, 0, 2);
    append_n(&whole, 1, 3);
    let before = std::fs::read(&whole).unwrap();
    append_n(&whole, 2, 1);
    assert!(std::fs::read(&whole).unwrap().starts_with(&before));
    assert_eq!(seqs(&whole), [(0, 2), (1, 3), (2, 1)]);

    // No XYZ at all (the first line is no atom count): refused, untouched; the frames would
    // make a file no reader takes.
    let other = dir.join("notes.xyz");
    std::fs::write(&other, "hello\nworld").unwrap();
    let e = try_append_n(&other).unwrap_err();
    assert!(matches!(e, AppendError::NotXyz { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("not an extended XYZ file (its first line is 'hello', not an atom count)"),
        "{e}"
    );
    assert!(matches!(
        check_appendable(&other),
        Err(AppendError::NotXyz { .. })
    ));
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "hello\nworld");
    // Blank lines or a byte-order mark before the count, as the reader skips them: XYZ.
    for (name, start) in [("blank.xyz", "\n\n1\n"), ("bom.xyz", "\u{feff}1\n")] {
        let f = dir.join(name);
        std::fs::write(&f, format!("{start}Lattice=oops\nLi 0 0 0")).unwrap();
        try_append_n(&f).unwrap();
    }
    // XYZ this reader does not parse (another writer's): appended to, never cut.
    let foreign = dir.join("foreign.xyz");
    std::fs::write(&foreign, "1\nLattice=oops\nLi 0 0 0").unwrap();
    try_append_n(&foreign).unwrap();
    assert!(
        std::fs::read_to_string(&foreign)
            .unwrap()
            .starts_with("1\nLattice=oops\nLi 0 0 0\n1\n")
    );

    let empty = dir.join("empty.xyz");
    std::fs::write(&empty, "").unwrap();
    append_n(&empty, 0, 2);
    assert_eq!(seqs(&empty), [(0, 2)]);
}

/// Text formatted by another writer is appended with the same guarantees: after a last line
/// without its newline (which is added), and never when it is not whole frames.
#[test]
fn text_of_whole_frames_is_appended_and_a_cut_frame_refused() {
    let dir = workdir("text");
    let path = dir.join("c.xyz");
    append_n(&path, 1, 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.pop();
    std::fs::write(&path, &bytes).unwrap();
    let frame = "1\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 seq=2 pbc=\"T T T\"\n\
                 Li 0.0 0.0 0.0\n";
    append_text(&path, frame).unwrap();
    assert_eq!(seqs(&path), [(1, 2), (2, 1)]);
    let before = std::fs::read(&path).unwrap();
    let cut = &frame[..frame.len() - 10];
    let e = append_text(&path, cut).unwrap_err();
    assert!(matches!(e, AppendError::Frame(_)), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Blank lines at the end of the file (`echo > c.xyz`, an editor's trailing line) are removed
/// before the frame, so that a reader stopping at a blank line (ASE's) sees every frame; a
/// last text line's own trailing spaces and blank lines between frames stay.
#[test]
fn blank_lines_at_the_end_are_removed_before_the_frame() {
    let dir = workdir("blank");
    let frame = "1\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 seq=2 pbc=\"T T T\"\n\
                 Li 0.0 0.0 0.0\n";
    for (case, before, kept) in [
        ("only_blank", "\n", ""),
        ("blanks_and_spaces", " \n\t\n\r\n  ", ""),
        (
            "after_a_frame",
            "1\nx=1\nLi 1 2 3  \n\n \n",
            "1\nx=1\nLi 1 2 3  \n",
        ),
        (
            "within",
            "1\nx=1\nLi 1 2 3\n\n1\nx=2\nLi 1 2 3\n\n",
            "1\nx=1\nLi 1 2 3\n\n1\nx=2\nLi 1 2 3\n",
        ),
        ("no_newline", "1\nx=1\nLi 1 2 3", "1\nx=1\nLi 1 2 3\n"),
        // A last frame of 0 atoms with a blank comment line keeps it.
        ("zero_atoms", "0\n\n\n\n", "0\n\n"),
    ] {
        let path = dir.join(format!("{case}.xyz"));
        std::fs::write(&path, before).unwrap();
        append_text(&path, frame).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{kept}{frame}"), "{case}");
    }
    // Longer than one read of the tail.
    let path = dir.join("long.xyz");
    let blanks = "\n".repeat(10_000);
    std::fs::write(&path, format!("1\nx=1\nLi 1 2 3\n{blanks}")).unwrap();
    append_text(&path, frame).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("1\nx=1\nLi 1 2 3\n{frame}")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the written frame would lose is refused before the file is touched: a column 'id'
/// beside the atom IDs, a column or info key given twice. A species label that is no element
/// (a model's `Li1`) is written.
#[test]
fn frames_that_would_lose_data_are_refused() {
    let dir = workdir("refused");
    let path = dir.join("c.xyz");
    append_n(&path, 1, 2);
    let before = std::fs::read(&path).unwrap();
    let positions = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]];
    let v = [1.0, 2.0];
    let base = AppendFrame {
        cell: CELL,
        pbc: [true; 3],
        symbols: &["Li", "Li"],
        positions: &positions,
        ids: Some(&[101, 202]),
        columns: &[("gamma", &v)],
        info: &[("step", "3")],
    };
    append_frame(&path, &base).unwrap();
    let ok = std::fs::read(&path).unwrap();
    for (case, frame, expect) in [
        (
            "id",
            AppendFrame {
                columns: &[("id", &v)],
                ..base
            },
            "a column named 'id' beside the atom IDs",
        ),
        (
            "column twice",
            AppendFrame {
                columns: &[("gamma", &v), ("gamma", &v)],
                ..base
            },
            "the column 'gamma' is given twice",
        ),
        (
            "info twice",
            AppendFrame {
                info: &[("step", "3"), ("step", "4")],
                ..base
            },
            "the info key 'step' is given twice",
        ),
    ] {
        let e = append_frame(&path, &frame).unwrap_err().to_string();
        assert!(e.contains(expect), "{case}: {e}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            ok,
            "{case}: the file changed"
        );
    }
    assert!(ok.starts_with(&before));
    append_frame(
        &path,
        &AppendFrame {
            symbols: &["Li1", "Li2"],
            ..base
        },
    )
    .unwrap();
    // Without IDs a column may be named 'id'.
    append_frame(
        &path,
        &AppendFrame {
            ids: None,
            columns: &[("id", &v)],
            ..base
        },
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
