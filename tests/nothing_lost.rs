//! Nothing lost: candidate frames are appended whole (`aceuq_append_frame`: one O_APPEND write,
//! then fsync), so
//! - frames appended concurrently never interleave, and a reader running alongside never gets a
//!   corrupt frame (at most an incomplete last one, which it drops);
//! - a writer killed with SIGKILL mid-append leaves every earlier frame readable;
//! - model files are replaced atomically (a reader sees the old or the new model, never a mix).

mod common;

use aceuq::ffi::*;
use aceuq::io::extxyz::{ReadOptions, Reader};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn last_error() -> String {
    // SAFETY: never NULL.
    unsafe { CStr::from_ptr(aceuq_last_error()) }
        .to_string_lossy()
        .into_owned()
}

struct Handle(*mut aceuq_model_t);
// SAFETY: each thread loads its own handle; the pointer is only moved, never shared.
unsafe impl Send for Handle {}
impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: from aceuq_model_load.
        unsafe { aceuq_model_free(self.0) }
    }
}

fn load(path: &Path) -> Handle {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut h = std::ptr::null_mut();
    // SAFETY: valid string and out pointer.
    let st = unsafe { aceuq_model_load(c.as_ptr(), &mut h) };
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_OK, "{}", last_error());
    Handle(h)
}

/// Appends a frame of `natoms` atoms whose positions encode (writer, seq, atom), so that a
/// reader can check every value of every frame it gets.
fn append(h: &Handle, path: &Path, writer: usize, seq: usize, natoms: usize) {
    let cell = [100.0, 0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 100.0];
    let pbc = [1, 1, 1];
    let x: Vec<f64> = (0..natoms)
        .flat_map(|a| [writer as f64, seq as f64, a as f64 * 0.001])
        .collect();
    let species = vec![0i32; natoms];
    let ids: Vec<i64> = (1..=natoms as i64).collect();
    let keys = [c"writer".as_ptr(), c"seq".as_ptr()];
    let wv = CString::new(writer.to_string()).unwrap();
    let sv = CString::new(seq.to_string()).unwrap();
    let vals = [wv.as_ptr(), sv.as_ptr()];
    let fr = aceuq_frame_t {
        natoms: natoms as i32,
        cell: cell.as_ptr(),
        pbc: pbc.as_ptr(),
        x: x.as_ptr(),
        species: species.as_ptr(),
        ids: ids.as_ptr(),
        ncols: 0,
        col_names: std::ptr::null(),
        col_values: std::ptr::null(),
        ninfo: 2,
        info_keys: keys.as_ptr(),
        info_values: vals.as_ptr(),
        nextra_species: 0,
        extra_species: std::ptr::null(),
    };
    let p = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: every array has the documented size.
    let st = unsafe { aceuq_append_frame(h.0, p.as_ptr(), &fr) };
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_OK, "{}", last_error());
}

/// Checks every value of a frame written by [`append`]; returns (writer, seq).
fn check_frame(s: &aceuq::Structure) -> (usize, usize) {
    let int = |k: &str| match s.info.get(k) {
        Some(aceuq::structure::InfoValue::Int(v)) => *v as usize,
        other => panic!("{}: info {k} is {other:?}", s.origin),
    };
    let (w, q) = (int("writer"), int("seq"));
    assert!(!s.positions.is_empty(), "{}: empty frame", s.origin);
    for (a, p) in s.positions.iter().enumerate() {
        let want = [w as f64, q as f64, a as f64 * 0.001];
        assert!(
            p.iter().zip(want).all(|(x, y)| (x - y).abs() < 1e-9),
            "{}: atom {a}: {p:?} vs {want:?}",
            s.origin
        );
    }
    (w, q)
}

fn read_all(path: &Path, tolerate_tail: bool) -> Result<(Vec<aceuq::Structure>, bool), String> {
    let opts = ReadOptions {
        allow_truncated_tail: tolerate_tail,
        ..Default::default()
    };
    let mut r = Reader::open(path, opts).map_err(|e| e.to_string())?;
    let mut frames = vec![];
    for f in &mut r {
        frames.push(f.map_err(|e| e.to_string())?);
    }
    Ok((frames, r.dropped_tail().is_some()))
}

fn model_file(dir: &Path) -> PathBuf {
    let m = common::fit_model("tests/data/li/train.xyz", 4, &["Li"]);
    common::save_model(&m, dir, "li.aceuq")
}

#[test]
fn concurrent_appends_never_interleave_and_a_live_reader_sees_whole_frames() {
    let dir = common::workdir("nothing_lost", "concurrent");
    let model = model_file(&dir);
    let out = dir.join("candidates.xyz");
    let (writers, per) = (4usize, 40usize);
    let done = AtomicBool::new(false);
    let (reads, max_seen) = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (model, out) = (&model, &out);
                sc.spawn(move || {
                    let h = load(model);
                    for q in 0..per {
                        // Sizes from 1 to 800 atoms: small and multi-page writes.
                        append(&h, out, w, q, 1 + (q * 977 + w * 131) % 800);
                    }
                })
            })
            .collect();
        let reader = sc.spawn(|| {
            // Reads while the writers are still going (the file holds fewer than all frames).
            let (mut reads, mut max_seen) = (0usize, 0usize);
            while !done.load(Ordering::Relaxed) {
                if out.exists() {
                    let (frames, _) = read_all(&out, true)
                        .unwrap_or_else(|e| panic!("live reader got an error: {e}"));
                    frames.iter().for_each(|f| {
                        check_frame(f);
                    });
                    max_seen = max_seen.max(frames.len());
                    reads += (frames.len() < writers * per) as usize;
                }
            }
            (reads, max_seen)
        });
        for h in handles {
            h.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    // Complete file: strict read, every frame of every writer exactly once.
    let (frames, dropped) = read_all(&out, false).expect("strict read of the finished file");
    assert!(!dropped);
    let mut seen = vec![vec![0; per]; writers];
    for f in &frames {
        let (w, q) = check_frame(f);
        seen[w][q] += 1;
    }
    assert!(seen.iter().flatten().all(|&c| c == 1), "{seen:?}");
    common::note(&format!(
        "{writers} writers x {per} frames: {} frames intact; a live reader parsed the growing file {reads} times (up to {max_seen} frames), never a corrupt frame",
        frames.len()
    ));
    assert!(reads > 0);
}

/// Child process body for the kill test: appends large frames forever.
#[test]
#[ignore = "run by killed_writer_leaves_every_earlier_frame_readable"]
fn child_appender() {
    let (Some(model), Some(out)) = (
        std::env::var_os("ACEUQ_TEST_MODEL"),
        std::env::var_os("ACEUQ_TEST_OUT"),
    ) else {
        return;
    };
    let h = load(Path::new(&model));
    for q in 0.. {
        append(&h, Path::new(&out), 0, q, 40_000 + q % 7);
    }
}

#[test]
fn killed_writer_leaves_every_earlier_frame_readable() {
    let dir = common::workdir("nothing_lost", "kill");
    let model = model_file(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut partial_tails = 0;
    let mut total_frames = 0;
    for round in 0..6u64 {
        let out = dir.join(format!("candidates{round}.xyz"));
        let mut child = Command::new(&exe)
            .args(["--exact", "child_appender", "--ignored", "--nocapture"])
            .env("ACEUQ_TEST_MODEL", &model)
            .env("ACEUQ_TEST_OUT", &out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it write a few frames (each ~2.5 MB), then kill it at a different moment each round.
        let t0 = Instant::now();
        while std::fs::metadata(&out).map_or(0, |m| m.len()) < 5_000_000 {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "child wrote nothing"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(3 + 7 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (frames, dropped) =
            read_all(&out, true).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(frames.len() >= 2, "round {round}: {} frames", frames.len());
        for (k, f) in frames.iter().enumerate() {
            assert_eq!(check_frame(f), (0, k), "round {round}");
        }
        partial_tails += dropped as usize;
        total_frames += frames.len();
        // The next run (this process) appends after whole frames only.
        let h = load(&model);
        append(&h, &out, 0, frames.len(), 3);
        let (again, dropped) =
            read_all(&out, false).unwrap_or_else(|e| panic!("round {round}: after resuming: {e}"));
        assert!(!dropped && again.len() == frames.len() + 1, "round {round}");
        assert_eq!(check_frame(again.last().unwrap()), (0, frames.len()));
    }
    common::note(&format!(
        "6 writers killed mid-run: {total_frames} frames all intact; {partial_tails} runs ended with a partial last frame, dropped by the reader"
    ));
}

/// A run killed mid-append leaves an incomplete last frame; the next run's first append cuts it
/// off, so that it never ends up in the middle of the file where readers would fail.
#[test]
fn next_run_cuts_an_incomplete_last_frame_before_appending() {
    let dir = common::workdir("nothing_lost", "resume");
    let model = model_file(&dir);
    let h = load(&model);
    // Three whole frames, and the file sizes after each.
    let whole = dir.join("whole.xyz");
    let mut ends = vec![];
    for (q, n) in [(0, 5), (1, 7), (2, 9)] {
        append(&h, &whole, 0, q, n);
        ends.push(std::fs::metadata(&whole).unwrap().len() as usize);
    }
    let bytes = std::fs::read(&whole).unwrap();
    let third = &bytes[ends[1]..ends[2]];
    let line_ends: Vec<usize> = third
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    // Killed mid-line, at a line boundary inside the atoms, and right after the count line.
    for (case, cut) in [
        ("mid_line", third.len() / 2 + 3),
        ("line_boundary", line_ends[4]),
        ("after_count", line_ends[0]),
    ] {
        let path = dir.join(format!("{case}.xyz"));
        std::fs::write(&path, &bytes[..ends[1] + cut]).unwrap();
        assert!(
            read_all(&path, false).is_err(),
            "{case}: strict read of a cut file"
        );
        append(&h, &path, 0, 2, 4);
        let (frames, dropped) =
            read_all(&path, false).unwrap_or_else(|e| panic!("{case}: after the next append: {e}"));
        assert!(!dropped);
        let got: Vec<(usize, usize, usize)> = frames
            .iter()
            .map(|f| {
                let (w, q) = check_frame(f);
                (w, q, f.len())
            })
            .collect();
        assert_eq!(got, [(0, 0, 5), (0, 1, 7), (0, 2, 4)], "{case}");
        let now = std::fs::read(&path).unwrap();
        assert_eq!(
            &now[..ends[1]],
            &bytes[..ends[1]],
            "{case}: whole frames untouched"
        );
    }
    // A file that is not extended XYZ is never cut.
    let other = dir.join("notes.xyz");
    std::fs::write(&other, "hello\nworld").unwrap();
    append(&h, &other, 0, 0, 2);
    assert!(std::fs::read(&other).unwrap().starts_with(b"hello\nworld"));
}

#[test]
fn model_file_is_replaced_atomically() {
    let dir = common::workdir("nothing_lost", "model");
    let a = aceuq::Potential::new(common::fit_model("tests/data/li/train.xyz", 3, &["Li"]));
    let b = aceuq::Potential::new(common::fit_model("tests/data/li/train.xyz", 6, &["Li"]));
    let path = common::save_model(&a, &dir, "m.aceuq");
    let ea = a.to_container().to_bytes();
    let eb = b.to_container().to_bytes();
    assert_ne!(ea, eb);
    let done = AtomicBool::new(false);
    let loads = std::thread::scope(|sc| {
        let reader = sc.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    bytes == ea || bytes == eb,
                    "a reader saw a mixed model file"
                );
                aceuq::Potential::load(&path).expect("every snapshot loads");
                n += 1;
            }
            n
        });
        for k in 0..60 {
            (if k % 2 == 0 { &b } else { &a }).save(&path).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["m.aceuq"], "{names:?}");
    common::note(&format!(
        "60 model saves while a reader loaded it {loads} times: always whole"
    ));
}
