//! Nothing lost: candidate frames are appended whole (`aceuq_append_frame`: one O_APPEND write,
//! then fsync, under a lock, with a journal while it is in progress), so
//! - frames appended concurrently never interleave, and a reader running alongside never gets a
//!   corrupt frame (at most an incomplete last one, which it drops);
//! - a writer killed with SIGKILL mid-append leaves every earlier frame readable;
//! - a failed write (full disk) leaves the file unchanged, an append killed mid-frame is skipped
//!   by readers and undone by the next append, and an incomplete frame we did not write is
//!   never cut (tested on real files under a file size limit, in child processes);
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
    if let Err((st, msg)) = try_append(h, path, writer, seq, natoms) {
        panic!("{st:?}: {msg}");
    }
}

/// [`append`], returning the status and message of a failure.
fn try_append(
    h: &Handle,
    path: &Path,
    writer: usize,
    seq: usize,
    natoms: usize,
) -> Result<(), (aceuq_status_t, String)> {
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
    if st == aceuq_status_t::ACEUQ_STATUS_OK {
        Ok(())
    } else {
        Err((st, last_error()))
    }
}

/// `aceuq_check_append_file` on `path`: the check a writer makes before its run.
fn check_file(path: &Path) -> Result<(), (aceuq_status_t, String)> {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    let st = unsafe { aceuq_check_append_file(p.as_ptr()) };
    if st == aceuq_status_t::ACEUQ_STATUS_OK {
        Ok(())
    } else {
        Err((st, last_error()))
    }
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
        // Strict: an incomplete frame of the killed append is recorded in its journal, and
        // the reader stops before it.
        let (frames, dropped) =
            read_all(&out, false).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(!dropped || journal_of(&out).exists(), "round {round}");
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
        "6 writers killed mid-run: {total_frames} frames all intact; {partial_tails} runs ended with a partial last frame, skipped by a strict reader (journal)"
    ));
}

/// Sets the file size limit of this process (`RLIMIT_FSIZE`): a write past it stops at the
/// limit, and the next one fails with EFBIG (`ignore_sigxfsz`) or is killed by SIGXFSZ. This is
/// what a full disk does to a writer (a short write, then an error), on a real file.
#[cfg(target_os = "linux")]
fn limit_file_size(bytes: u64, ignore_sigxfsz: bool) {
    #[repr(C)]
    struct Rlimit {
        cur: u64,
        max: u64,
    }
    unsafe extern "C" {
        fn setrlimit(resource: std::ffi::c_int, rlim: *const Rlimit) -> std::ffi::c_int;
        fn signal(sig: std::ffi::c_int, handler: usize) -> usize;
    }
    const RLIMIT_FSIZE: std::ffi::c_int = 1;
    const SIGXFSZ: std::ffi::c_int = 25;
    const SIG_IGN: usize = 1;
    let lim = Rlimit {
        cur: bytes,
        max: bytes,
    };
    // SAFETY: a valid rlimit; SIG_IGN is a valid disposition.
    unsafe {
        assert_eq!(setrlimit(RLIMIT_FSIZE, &lim), 0, "setrlimit");
        if ignore_sigxfsz {
            signal(SIGXFSZ, SIG_IGN);
        }
    }
}

/// Child process body: under a file size limit, appends one big frame and reports the outcome
/// on stdout.
#[test]
#[ignore = "run by the size-limit tests"]
fn child_append_under_size_limit() {
    let (Some(model), Some(out), Some(limit)) = (
        std::env::var_os("ACEUQ_TEST_MODEL"),
        std::env::var_os("ACEUQ_TEST_OUT"),
        std::env::var("ACEUQ_TEST_LIMIT").ok(),
    ) else {
        return;
    };
    let h = load(Path::new(&model));
    #[cfg(target_os = "linux")]
    limit_file_size(
        limit.parse().unwrap(),
        std::env::var_os("ACEUQ_TEST_IGNORE_SIGXFSZ").is_some(),
    );
    let outcome = try_append(&h, Path::new(&out), 0, 9, 3000);
    println!("OUTCOME {outcome:?}");
}

/// Runs [`child_append_under_size_limit`] on `out` with the file size limit `limit`.
fn append_under_size_limit(
    model: &Path,
    out: &Path,
    limit: u64,
    ignore_sigxfsz: bool,
) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_append_under_size_limit",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("ACEUQ_TEST_MODEL", model)
    .env("ACEUQ_TEST_OUT", out)
    .env("ACEUQ_TEST_LIMIT", limit.to_string());
    if ignore_sigxfsz {
        cmd.env("ACEUQ_TEST_IGNORE_SIGXFSZ", "1");
    }
    cmd.output().unwrap()
}

/// Three whole frames appended to `path`; returns the file's bytes.
fn three_frames(h: &Handle, path: &Path) -> Vec<u8> {
    for (q, n) in [(0, 5), (1, 7), (2, 9)] {
        append(h, path, 0, q, n);
    }
    std::fs::read(path).unwrap()
}

fn journal_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(".aceuq-journal");
    path.with_file_name(name)
}

/// A full disk (here: a file size limit, which fails a write the same way, after a short
/// write) fails the append with an error that says the file is unchanged, and it is: not a
/// byte of the partial frame stays behind, wherever the write stopped.
#[cfg(target_os = "linux")]
#[test]
fn full_disk_append_leaves_the_file_unchanged() {
    let dir = common::workdir("nothing_lost", "full_disk");
    let model = model_file(&dir);
    let h = load(&model);
    // The frame of 3000 atoms is ~100 kB; stop its write after 0, 1, 40 and 50000 bytes.
    for extra in [0u64, 1, 40, 50_000] {
        let out = dir.join(format!("candidates_{extra}.xyz"));
        let before = three_frames(&h, &out);
        let run = append_under_size_limit(&model, &out, before.len() as u64 + extra, true);
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{extra}: {run:?}");
        let outcome = stdout
            .lines()
            .find_map(|l| l.split_once("OUTCOME ").map(|(_, o)| o))
            .unwrap_or_else(|| panic!("{extra}: no outcome in {stdout}"));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            before,
            "{extra}: the file must be as before the failed append ({outcome})"
        );
        assert!(
            outcome.starts_with("Err((ACEUQ_STATUS_IO"),
            "{extra}: {outcome}"
        );
        assert!(
            outcome.contains("the file is unchanged") && outcome.contains("free space"),
            "{extra}: {outcome}"
        );
        assert!(outcome.contains("File too large"), "{extra}: {outcome}");
        assert!(!journal_of(&out).exists(), "{extra}: journal left behind");
        let (frames, dropped) = read_all(&out, false).unwrap();
        assert_eq!(frames.len(), 3);
        assert!(!dropped);
        // And the file takes the next frame as usual.
        append(&h, &out, 0, 3, 4);
        assert_eq!(read_all(&out, false).unwrap().0.len(), 4);
    }
}

/// An append killed mid-frame (here by SIGXFSZ, at a chosen byte) leaves its journal: an aceuq
/// reader, even a strict one, stops before the incomplete frame, and the next append cuts
/// exactly that frame off (so it is never buried mid-file).
#[cfg(target_os = "linux")]
#[test]
fn append_killed_mid_frame_is_skipped_by_readers_and_undone_by_the_next_append() {
    use std::os::unix::process::ExitStatusExt;
    let dir = common::workdir("nothing_lost", "killed_mid_frame");
    let model = model_file(&dir);
    let h = load(&model);
    for extra in [1u64, 3, 40, 50_000] {
        let out = dir.join(format!("candidates_{extra}.xyz"));
        let before = three_frames(&h, &out);
        let run = append_under_size_limit(&model, &out, before.len() as u64 + extra, false);
        assert_eq!(run.status.signal(), Some(25), "{extra}: {run:?}");
        let now = std::fs::read(&out).unwrap();
        assert_eq!(now.len() as u64, before.len() as u64 + extra, "{extra}");
        assert!(now.starts_with(&before));

        let (frames, dropped) = read_all(&out, false)
            .unwrap_or_else(|e| panic!("{extra}: strict read of an interrupted append: {e}"));
        assert_eq!(frames.len(), 3, "{extra}");
        assert!(dropped, "{extra}: the skipped frame is reported");
        assert!(journal_of(&out).exists(), "{extra}: the journal stays");
        // Ours to undo: the check before a run lets it through.
        check_file(&out).unwrap_or_else(|e| panic!("{extra}: {e:?}"));

        append(&h, &out, 0, 3, 4);
        assert!(!journal_of(&out).exists(), "{extra}");
        let after = std::fs::read(&out).unwrap();
        assert!(
            after.starts_with(&before),
            "{extra}: whole frames untouched"
        );
        let (frames, dropped) = read_all(&out, false).unwrap();
        assert!(!dropped);
        let got: Vec<(usize, usize)> = frames.iter().map(check_frame).collect();
        assert_eq!(got, [(0, 0), (0, 1), (0, 2), (0, 3)], "{extra}");
    }
}

/// A file whose last frame is incomplete without a journal of ours (somebody else's data) is
/// never cut: the append fails, naming the file and line, and leaves the file as it was.
#[test]
fn a_foreign_incomplete_last_frame_is_never_cut() {
    let dir = common::workdir("nothing_lost", "foreign_tail");
    let model = model_file(&dir);
    let h = load(&model);
    let whole = dir.join("whole.xyz");
    let bytes = three_frames(&h, &whole);
    let start = bytes.len()
        - bytes
            .split(|b| *b == b'\n')
            .rev()
            .skip(1)
            .take(9 + 2)
            .map(|l| l.len() + 1)
            .sum::<usize>();
    let third = &bytes[start..];
    let line_ends: Vec<usize> = third
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| start + i + 1)
        .collect();
    assert_eq!(line_ends.len(), 11);
    // The third frame (9 atoms) starts at line 1 + (2 + 5) + (2 + 7) = 17.
    for (case, cut) in [
        ("mid_line", start + third.len() / 2 + 3),
        ("line_boundary", line_ends[4]),
        ("after_count", line_ends[0]),
        ("mid_count", start + 1),
    ] {
        let path = dir.join(format!("{case}.xyz"));
        let cut_bytes = &bytes[..cut];
        std::fs::write(&path, cut_bytes).unwrap();
        assert!(read_all(&path, false).is_err(), "{case}: strict read");
        // The check a writer makes before its run says the same, ahead of any frame.
        let (st, early) = check_file(&path).expect_err(case);
        assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_IO, "{case}: {early}");
        let (st, msg) = try_append(&h, &path, 0, 3, 4).expect_err(case);
        assert_eq!(early, msg, "{case}");
        assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_IO, "{case}: {msg}");
        let want = format!("{}:17: the last frame", path.display());
        assert!(msg.starts_with(&want), "{case}: {msg}");
        assert!(msg.contains("not cut off"), "{case}: {msg}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            cut_bytes,
            "{case}: the file must be left as it was"
        );
    }
    // Whole frames and a missing file pass the check.
    check_file(&whole).unwrap();
    check_file(&dir.join("missing.xyz")).unwrap();
    // A file that is no XYZ at all (its first line is not an atom count) is refused by the
    // check and the append alike, and left as it is: frames after it could not be read back.
    let other = dir.join("notes.xyz");
    std::fs::write(&other, "hello\nworld").unwrap();
    let (st, early) = check_file(&other).expect_err("notes");
    assert_eq!(st, aceuq_status_t::ACEUQ_STATUS_IO, "{early}");
    assert!(early.contains("not an extended XYZ file"), "{early}");
    let (_, msg) = try_append(&h, &other, 0, 0, 2).expect_err("notes");
    assert_eq!(early, msg);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "hello\nworld");
    // XYZ this reader does not parse (another writer's) passes and is appended to as it is.
    let foreign = dir.join("foreign.xyz");
    std::fs::write(&foreign, "1\nLattice=oops\nLi 0 0 0").unwrap();
    check_file(&foreign).unwrap();
    append(&h, &foreign, 0, 0, 2);
    let text = std::fs::read_to_string(&foreign).unwrap();
    assert!(text.starts_with("1\nLattice=oops\nLi 0 0 0\n2\n"), "{text}");
}

/// A complete last frame whose last line lacks its newline keeps its last atom: the appended
/// frame starts on a new line.
#[test]
fn a_last_line_without_newline_is_not_merged_with_the_frame() {
    let dir = common::workdir("nothing_lost", "no_newline");
    let model = model_file(&dir);
    let h = load(&model);
    let path = dir.join("user.xyz");
    std::fs::write(&path, "1\nuser=1\nLi 1.5 2.5 3.5").unwrap();
    append(&h, &path, 0, 0, 2);
    let (frames, dropped) = read_all(&path, false).unwrap();
    assert!(!dropped);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].positions, [[1.5, 2.5, 3.5]]);
    check_frame(&frames[1]);
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
