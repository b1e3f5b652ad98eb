//! Progress of long library calls (fits, active sets, estimators): bars and notes on stderr, shown
//! only when the caller asked for them (`show`): drawn when stderr is a terminal, and as a plain
//! line every [`LOG_EVERY`] otherwise (a batch job's log; notes: whenever asked).
//! Drawn with indicatif in builds with the `cli` feature; silent in the plugin's library, which
//! never runs these calls. The one place where the library writes to the terminal.
//!
//! Layer 1 (foundation): imports nothing of the crate.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by [`request_stop`]: the next stop point of any long call unwinds with [`Stopped`].
static STOP: AtomicBool = AtomicBool::new(false);

/// The unwind payload of a long call stopped at a progress step (see [`request_stop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

/// Ask the long calls running in this process to stop: the next stop point of each (a
/// [`Bar::inc`], [`Bar::set_message`] or [`note`], hidden or shown, or a [`checkpoint`]: fits
/// call one per structure, and every neighbour list build is one) unwinds
/// with the payload [`Stopped`] (`std::panic::resume_unwind`: no panic message), which the caller
/// catches with `std::panic::catch_unwind`. For an embedding host (the Python package, on
/// Ctrl-C). The flag is per process and stays set until [`clear_stop`]. Outputs are written
/// atomically, so a stopped call leaves a file it had not finished untouched.
pub fn request_stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// Undo [`request_stop`] (once the stopped call has unwound).
pub fn clear_stop() {
    STOP.store(false, Ordering::Relaxed);
}

/// Unwind with [`Stopped`] if a stop was requested: for the start of a long step of work, where
/// the next progress step would come only after it (see [`request_stop`]).
#[inline]
pub fn checkpoint() {
    if STOP.load(Ordering::Relaxed) {
        std::panic::resume_unwind(Box::new(Stopped));
    }
}

/// How often a bar whose stderr is not a terminal prints its state as a line.
#[cfg(feature = "cli")]
pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A progress bar (or spinner when the length is unknown); a no-op when hidden.
#[derive(Clone, Debug)]
pub struct Bar {
    #[cfg(feature = "cli")]
    inner: indicatif::ProgressBar,
    /// Where stderr is not a terminal: the plain lines' state (the bar itself is hidden and
    /// only counts).
    #[cfg(feature = "cli")]
    log: Option<std::sync::Arc<LogLines>>,
}

/// A bar printed as a line every [`LOG_EVERY`]: what it counts, and when it last printed.
#[cfg(feature = "cli")]
#[derive(Debug)]
struct LogLines {
    unit: String,
    start: std::time::Instant,
    /// Seconds since `start` of the last line (0: none yet).
    last: std::sync::atomic::AtomicU64,
}

impl Bar {
    /// A bar that draws nothing.
    pub fn hidden() -> Bar {
        Bar {
            #[cfg(feature = "cli")]
            inner: indicatif::ProgressBar::hidden(),
            #[cfg(feature = "cli")]
            log: None,
        }
    }

    /// `bar` if stderr is a terminal; else a hidden bar that prints a line now and then with
    /// its message, position and `unit`.
    #[cfg(feature = "cli")]
    fn shown(bar: indicatif::ProgressBar, unit: &str) -> Bar {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            return Bar {
                inner: bar,
                log: None,
            };
        }
        let inner = indicatif::ProgressBar::hidden();
        if let Some(n) = bar.length() {
            inner.set_length(n);
        }
        inner.set_message(bar.message());
        Bar {
            inner,
            log: Some(std::sync::Arc::new(LogLines {
                unit: unit.to_string(),
                start: std::time::Instant::now(),
                last: std::sync::atomic::AtomicU64::new(0),
            })),
        }
    }

    /// Print the state as a line when [`LOG_EVERY`] has passed since the last (log mode only).
    #[cfg(feature = "cli")]
    fn log_line(&self, done: bool) {
        use std::sync::atomic::Ordering;
        let Some(l) = &self.log else { return };
        let now = l.start.elapsed().as_secs();
        let last = l.last.load(Ordering::Relaxed);
        let due = now >= last.saturating_add(LOG_EVERY.as_secs());
        // A final line only after earlier ones (a short call stays silent).
        if last == u64::MAX || !(due || (done && last > 0)) {
            return;
        }
        // After the final line, never again (a bar finished twice).
        let next = if done { u64::MAX } else { now.max(1) };
        if l.last
            .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let pos = self.inner.position();
        let of = self
            .inner
            .length()
            .map_or(String::new(), |n| format!("/{n}"));
        let msg = self.inner.message();
        eprintln!(
            "{}{pos}{of} {} after {now} s{}",
            if msg.trim().is_empty() {
                String::new()
            } else {
                format!("{}: ", msg.trim())
            },
            l.unit,
            if done { ", done" } else { "" }
        );
    }

    /// A bar over `len` structures labelled `msg` (fits).
    pub fn structures(len: u64, msg: &str, show: bool) -> Bar {
        #[cfg(feature = "cli")]
        {
            if !show {
                return Bar::hidden();
            }
            let bar = indicatif::ProgressBar::new(len);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>10} [{bar:40}] {pos}/{len} structures, {elapsed} (eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(msg.to_string());
            Bar::shown(bar, "structures")
        }
        #[cfg(not(feature = "cli"))]
        {
            let _ = (len, msg, show);
            Bar::hidden()
        }
    }

    /// A bar over `len` steps of `unit` labelled `msg` (e.g. the solves of a ridge scan).
    pub fn steps(len: u64, unit: &str, msg: &str, show: bool) -> Bar {
        #[cfg(feature = "cli")]
        {
            if !show {
                return Bar::hidden();
            }
            let bar = indicatif::ProgressBar::new(len);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit}, {{elapsed}}"
                ))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(msg.to_string());
            Bar::shown(bar, unit)
        }
        #[cfg(not(feature = "cli"))]
        {
            let _ = (len, unit, msg, show);
            Bar::hidden()
        }
    }

    /// A bar over `len` atoms, or a spinner counting atoms when the total is not known (active
    /// sets built from a stream of files).
    pub fn atoms(len: Option<u64>, show: bool) -> Bar {
        #[cfg(feature = "cli")]
        {
            if !show {
                return Bar::hidden();
            }
            let inner = match len {
                Some(n) => {
                    let b = indicatif::ProgressBar::new(n);
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{msg:>24} [{bar:40}] {pos}/{len} atoms, {elapsed} (eta {eta})",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b
                }
                None => {
                    let b = indicatif::ProgressBar::new_spinner();
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{spinner} {msg} {pos} atoms, {elapsed}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b
                }
            };
            Bar::shown(inner, "atoms")
        }
        #[cfg(not(feature = "cli"))]
        {
            let _ = (len, show);
            Bar::hidden()
        }
    }

    /// Advance by `n` (a stop point: see [`request_stop`]).
    #[inline]
    pub fn inc(&self, n: u64) {
        checkpoint();
        #[cfg(feature = "cli")]
        {
            self.inner.inc(n);
            if self.log.is_some() {
                self.log_line(false);
            }
        }
        #[cfg(not(feature = "cli"))]
        let _ = n;
    }

    /// Replace the label (a stop point: see [`request_stop`]).
    pub fn set_message(&self, msg: impl Into<Cow<'static, str>>) {
        checkpoint();
        #[cfg(feature = "cli")]
        self.inner.set_message(msg);
        #[cfg(not(feature = "cli"))]
        let _ = msg.into();
    }

    /// Stop and leave the bar on screen.
    pub fn finish(&self) {
        #[cfg(feature = "cli")]
        {
            self.inner.finish();
            self.log_line(true);
        }
    }

    /// Stop and erase the bar.
    pub fn finish_and_clear(&self) {
        #[cfg(feature = "cli")]
        {
            self.inner.finish_and_clear();
            self.log_line(true);
        }
    }
}

/// A line for the person running a long call (e.g. what a builder chose), when `show` (a stop
/// point, shown or not: see [`request_stop`]).
pub fn note(show: bool, msg: &str) {
    checkpoint();
    if show {
        eprintln!("{msg}");
    }
}

/// A warning about a result that is still usable (e.g. a fit that needed a stronger ridge).
pub fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

/// The current time in UTC as "YYYY-MM-DD HH:MM UTC" (for provenance records).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    utc_string(secs)
}

/// Unix seconds as "YYYY-MM-DD HH:MM UTC" (proleptic Gregorian calendar).
pub fn utc_string(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (the era-based algorithm for the Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_string_matches_known_dates() {
        assert_eq!(super::utc_string(0), "1970-01-01 00:00 UTC");
        // 2000-02-29 12:34 UTC and 2026-12-02 17:31 UTC.
        assert_eq!(super::utc_string(951_827_640), "2000-02-29 12:34 UTC");
        assert_eq!(super::utc_string(1_796_232_660), "2026-12-02 17:31 UTC");
    }
}
