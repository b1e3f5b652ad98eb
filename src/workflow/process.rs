//! The loop's child processes and its run folder: LAMMPS and the labeller run in a process group
//! of their own (so that a timeout can stop everything they started), which also means that a
//! signal sent to `aceuq loop` alone (`kill`, a scheduler's time limit, `timeout`) does not reach
//! them. While a child runs, SIGINT, SIGTERM and SIGHUP are caught: the child's whole group is
//! stopped (SIGTERM, then SIGKILL after a grace period), and the signal is raised again with its
//! default action, so the loop ends as the signal meant and leaves nothing running that could
//! write into a resumed run. A run folder is locked while a loop works in it, so that a second
//! loop on the same folder is refused instead of labelling the same structures twice.
//!
//! A loop killed outright (SIGKILL: the OOM killer, a batch job's end) cannot stop its children.
//! So each child inherits the lock (it holds the lock file open, and a lock belongs to the open
//! file, not to the process), and so do its descendants that keep inherited files open: a
//! resumed loop is refused, naming the processes still holding it, until they end, instead of
//! sharing the run folder with them. On Linux each child is also sent SIGTERM when the loop dies
//! (mpirun passes it to its ranks); a child is the `sh -c` running the command, so a program the
//! shell started rather than replaced itself with (a labeller in a compound command, the venv's
//! `lmp` wrapper's LAMMPS) may go on, holding the lock until it ends. The lock records "pid on host", so that a loop on another
//! host of a shared file system is never taken for a dead one.

use super::{LoopError, err};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How the error of a child stopped by a signal to the loop begins ([`is_interrupted`]).
const INTERRUPTED: &str = "interrupted by signal";

/// Whether `e` says the loop was told to end (nothing more should be started).
pub(super) fn is_interrupted(e: &LoopError) -> bool {
    e.0.starts_with(INTERRUPTED)
}

/// How the error of a command stopped at its timeout begins (see [`is_timeout`]).
const TIMED_OUT: &str = "stopped at its time limit:";

/// Whether `e` is the error of a command that ran past its timeout and was stopped (a prefix,
/// so that a command's own output quoted in another error cannot look like one).
pub(super) fn is_timeout(e: &LoopError) -> bool {
    e.0.starts_with(TIMED_OUT)
}

/// The signal caught while a child ran (0: none).
static CAUGHT: AtomicI32 = AtomicI32::new(0);

/// Signals that end the loop, and stop its children first.
const ENDING: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How long a stopped child's group gets between SIGTERM and SIGKILL (mpirun passes SIGTERM
/// to its ranks).
const GRACE: Duration = Duration::from_secs(5);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    CAUGHT.store(sig, Ordering::SeqCst);
}

/// The handlers replaced while children run, and how many children run (explorations run
/// side by side in threads: the first installs, the last restores).
static INSTALLED: std::sync::Mutex<(usize, Vec<(libc::c_int, libc::sigaction)>)> =
    std::sync::Mutex::new((0, Vec::new()));

/// Catches [`ENDING`] while any is alive, then restores the previous handlers. A signal the
/// process ignored (e.g. SIGHUP under `nohup`) stays ignored.
struct CatchEnding;

impl CatchEnding {
    fn install() -> CatchEnding {
        let mut st = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        st.0 += 1;
        if st.0 > 1 {
            return CatchEnding;
        }
        CAUGHT.store(0, Ordering::SeqCst);
        for sig in ENDING {
            // SAFETY: plain sigaction calls with zero-initialised structs; the handler only
            // stores to an atomic.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction == libc::SIG_IGN
                {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                    st.1.push((sig, old));
                }
            }
        }
        CatchEnding
    }
}

impl Drop for CatchEnding {
    /// Release this child's hold. The last one restores the previous handlers and, if a signal
    /// was caught meanwhile (whichever way the children ended), raises it again: the process
    /// then ends the way the signal meant (under a handler that returns, e.g. Python's, the
    /// callers see [`INTERRUPTED`] errors instead).
    fn drop(&mut self) {
        let last = {
            let mut st = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
            st.0 -= 1;
            if st.0 == 0 {
                for (sig, old) in st.1.drain(..) {
                    // SAFETY: restores the disposition read in `install`.
                    unsafe {
                        libc::sigaction(sig, &old, std::ptr::null_mut());
                    }
                }
            }
            st.0 == 0
        };
        if last {
            let sig = CAUGHT.swap(0, Ordering::SeqCst);
            if sig != 0 {
                // SAFETY: raise(3) with the previous disposition back.
                unsafe {
                    libc::raise(sig);
                }
            }
        }
    }
}

fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process group id we created (negative pid = group).
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

/// Stop a child's whole process group: SIGTERM, then SIGKILL if anything is left after
/// [`GRACE`]; reaps the child.
fn stop_group(child: &mut std::process::Child) {
    let pgid = child.id();
    signal_group(pgid, libc::SIGTERM);
    let t = Instant::now();
    while t.elapsed() < GRACE {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever the leader did, members of its group may remain (mpirun's ranks, a labeller's
    // children): SIGKILL reaches only those still there.
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait();
}

/// Run a command in `dir` with output to `out`; stop its process group after `timeout`, or when
/// the loop itself is told to end (then the signal is raised again once the group is stopped).
/// Returns how it ended and its output.
pub(super) fn run_with_timeout(
    mut cmd: Command,
    dir: &Path,
    out: &Path,
    timeout: Duration,
) -> Result<(std::process::ExitStatus, String), LoopError> {
    use std::os::unix::process::CommandExt;
    let f = File::create(out).map_err(|e| err(format!("cannot create {}: {e}", out.display())))?;
    let f2 = f.try_clone().map_err(|e| err(e.to_string()))?;
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .process_group(0);
    // The lock of the run folder the child works in, if this process holds it.
    let lock_fd = std::fs::canonicalize(dir).ok().and_then(|d| {
        let locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        // The innermost locked run folder holding the child's folder.
        locks
            .iter()
            .filter(|(run, _)| d.starts_with(run))
            .max_by_key(|(run, _)| run.components().count())
            .map(|l| l.1)
    });
    let lock_fd = lock_fd.unwrap_or(-1);
    let loop_pid = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (fcntl, prctl, getppid, kill, getpid).
    unsafe {
        cmd.pre_exec(move || {
            // The child keeps the run folder's lock (module docs): the lock file stays open in it.
            if lock_fd >= 0 {
                libc::fcntl(lock_fd, libc::F_SETFD, 0);
            }
            // The loop's handlers (inherited by the fork) would only record a signal here; the
            // child takes them by default from now on, as it would after exec.
            for sig in ENDING {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_IGN
                {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            #[cfg(target_os = "linux")]
            {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                // The loop died between fork and prctl: do not start.
                if libc::getppid() != loop_pid {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = loop_pid;
            Ok(())
        });
    }
    let guard = CatchEnding::install();
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot start {cmd:?}: {e}")))?;
    let t = Instant::now();
    let status = loop {
        let sig = CAUGHT.load(Ordering::SeqCst);
        if sig != 0 {
            stop_group(&mut child);
            eprintln!(
                "aceuq loop: stopped {} (process group {}) on signal {sig}; run the same command \
                 again to resume",
                cmd.get_program().to_string_lossy(),
                child.id()
            );
            // The last child stopped raises the signal again (see the guard's `drop`).
            drop(guard);
            return Err(err(format!("{INTERRUPTED} {sig}")));
        }
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if t.elapsed() > timeout => {
                stop_group(&mut child);
                return Err(err(format!(
                    "{TIMED_OUT} {cmd:?} took longer than {} (see {})",
                    minutes(timeout),
                    out.display()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(err(format!("waiting for {cmd:?}: {e}"))),
        }
    };
    drop(guard);
    let text = std::fs::read_to_string(out).unwrap_or_default();
    Ok((status, text))
}

/// The lock of a run folder, held while the loop works in it (released when dropped, or by the
/// system when the process and the children that inherited it end, however they end).
pub struct RunLock {
    file: File,
}

/// The run folders this process holds locked (canonical path) and their lock's descriptor,
/// which children working in them inherit.
static LOCKS: std::sync::Mutex<Vec<(std::path::PathBuf, i32)>> = std::sync::Mutex::new(Vec::new());

impl Drop for RunLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd as _;
        let fd = self.file.as_raw_fd();
        let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|l| l.1 != fd);
    }
}

/// This machine's host name ("" if unknown), for the run folder's lock record.
fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    }
}

/// The processes (pid and command line) that hold `path` open, from `/proc` (empty where there is
/// none or it cannot be read).
fn holders(path: &Path) -> Vec<(u32, String)> {
    let Ok(target) = std::fs::canonicalize(path) else {
        return vec![];
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut out = vec![];
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
        {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd)
                .split('\0')
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            out.push((pid, cmd));
        }
    }
    out
}

/// Lock `run_dir` for this loop, or say which process holds it.
pub fn lock_run_dir(run_dir: &Path) -> Result<RunLock, LoopError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = run_dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            // "pid on host": a loop on another host of a shared file system is not known dead
            // for its pid missing here, nor one whose process we may not signal (EPERM).
            let (pid, host) = holder.split_once(" on ").unwrap_or((holder, ""));
            let gone = host == this_host()
                && pid.parse::<libc::pid_t>().is_ok_and(|pid| {
                    // SAFETY: kill(2) with signal 0 only checks that the process exists.
                    let missing = unsafe { libc::kill(pid, 0) } != 0;
                    missing && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
                });
            if gone {
                // The loop is gone (killed outright) but what it started still runs.
                let mut left: Vec<String> = holders(&path)
                    .into_iter()
                    .filter(|&(pid, _)| pid != std::process::id())
                    .map(|(pid, cmd)| format!("{pid} ({cmd})"))
                    .collect();
                if left.is_empty() {
                    left.push("unknown".into());
                }
                return Err(err(format!(
                    "run folder {} is still in use by processes the loop {pid} started, which \
                     has ended (killed?): {}; they would write into this run: wait for them to \
                     end or stop them (kill <pid>), then run the same command again",
                    run_dir.display(),
                    left.join(", ")
                )));
            }
            return Err(err(format!(
                "run folder {} is in use by another `aceuq loop`{}: wait for it to finish or stop \
                 it, or give another --run-dir",
                run_dir.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (process {holder})")
                }
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            // File systems without flock (Lustre mounted noflock, some network mounts): go on,
            // and say that nothing keeps a second loop out.
            eprintln!(
                "warning: cannot lock {} ({e}): this file system does not lock files; make sure \
                 no other `aceuq loop` works in {}",
                path.display(),
                run_dir.display()
            );
        }
    }
    // Who holds it, for the message above (the lock itself is what counts).
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{} on {}", std::process::id(), this_host());
    let _ = file.flush();
    if let Ok(run) = std::fs::canonicalize(run_dir) {
        use std::os::fd::AsRawFd as _;
        let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        locks.push((run, file.as_raw_fd()));
    }
    Ok(RunLock { file })
}

/// A time limit as a config gives it: "0.05 minutes (3 s)", "120 minutes".
fn minutes(t: Duration) -> String {
    let short = |x: f64| {
        let v = crate::stats::sig_digits(x, 4);
        if v.contains('.') && !v.contains('e') {
            v.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            v
        }
    };
    let s = t.as_secs_f64();
    if s < 60.0 {
        format!("{} minutes ({} s)", short(s / 60.0), short(s))
    } else {
        format!("{} minutes", short(s / 60.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the tests that lock run folders or start children: a child forked by one test
    /// holds copies of every open file, another test's lock included, until it runs its
    /// command, and so would keep a lock the other test just released for that moment.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock of `dir`, trying again until `limit` has passed (then the test fails).
    fn lock_within(dir: &Path, limit: Duration) -> RunLock {
        let t = Instant::now();
        loop {
            match lock_run_dir(dir) {
                Ok(l) => return l,
                Err(_) if t.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("still locked after {limit:?}: {}", e.0),
            }
        }
    }

    /// A second lock of a locked run folder is refused with the holder's process id; once the
    /// first is released, the folder can be locked again.
    #[test]
    fn a_run_folder_is_locked_by_one_loop_at_a_time() {
        let _serial = serial();
        let dir = std::env::temp_dir().join(format!("aceuq-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = lock_run_dir(&dir).unwrap();
        let e = match lock_run_dir(&dir) {
            Err(e) => e.0,
            Ok(_) => panic!("a second lock of a locked folder"),
        };
        assert!(e.contains("is in use by another `aceuq loop`"), "{e}");
        assert!(
            e.contains(&format!(
                "(process {} on {})",
                std::process::id(),
                this_host()
            )),
            "{e}"
        );
        drop(first);
        // A child forked meanwhile by another test of this binary holds a copy of the lock
        // until it runs its command: a moment.
        drop(lock_within(&dir, Duration::from_secs(5)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A child keeps the run folder locked after the loop that started it is gone: a new lock
    /// is refused, naming the process that still holds it, until that process ends.
    #[test]
    fn a_killed_loops_children_keep_its_run_folder_locked() {
        let _serial = serial();
        let dir = std::env::temp_dir().join(format!("aceuq-orphan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lock = lock_run_dir(&dir).unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("sleep 3 > /dev/null 2>&1 &");
        let (status, _) =
            run_with_timeout(cmd, &dir, &dir.join("out.txt"), Duration::from_secs(60)).unwrap();
        assert!(status.success());
        drop(lock);
        // As if the loop had been killed: the lock file names a process that no longer runs.
        let mut gone = Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        std::fs::write(dir.join(".lock"), format!("{dead} on {}", this_host())).unwrap();
        let e = match lock_run_dir(&dir) {
            Err(e) => e.0,
            Ok(_) => panic!("the folder was locked while the orphan ran"),
        };
        assert!(
            e.contains(&format!(
                "still in use by processes the loop {dead} started, which has ended"
            )) && e.contains("(sleep 3)"),
            "{e}"
        );
        // Free again once the orphan has ended.
        drop(lock_within(&dir, Duration::from_secs(20)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A command that runs past its timeout is stopped with everything it started (a child of
    /// the shell too), and the error says so.
    #[test]
    fn a_timeout_stops_the_whole_process_group() {
        let _serial = serial();
        let dir = std::env::temp_dir().join(format!("aceuq-pgroup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("sh");
        // The grandchild writes its pid, then would touch `late` after 3 s.
        cmd.arg("-c")
            .arg("(echo $$ > /dev/null; sh -c 'echo $$ > grandchild; sleep 3; touch late') & wait");
        let out = dir.join("out.txt");
        let e =
            run_with_timeout(cmd, &dir, &out, Duration::from_millis(500)).expect_err("timed out");
        assert!(is_timeout(&e), "{}", e.0);
        // Output that merely quotes such an error is none.
        assert!(!is_timeout(&err(format!(
            "labeller exited with exit code 1: {}",
            e.0
        ))));
        std::thread::sleep(Duration::from_millis(3500));
        assert!(
            !dir.join("late").exists(),
            "the grandchild survived the timeout"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn time_limits_print_as_given() {
        use std::time::Duration;
        let f = |m: f64| super::minutes(Duration::from_secs_f64(60.0 * m));
        assert_eq!(f(0.05), "0.05 minutes (3 s)");
        assert_eq!(f(120.0), "120 minutes");
        assert_eq!(f(1.5), "1.5 minutes");
    }
}
