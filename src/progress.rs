//! Progress of long library calls (fits, active sets, estimators): bars and notes on stderr, shown
//! only when the caller asked for them (`show`) and stderr is a terminal (notes: whenever asked).
//! Drawn with indicatif in builds with the `cli` feature; silent in the plugin's library, which
//! never runs these calls. The one place where the library writes to the terminal.
//!
//! Layer 1 (foundation): imports nothing of the crate.

use std::borrow::Cow;

/// A progress bar (or spinner when the length is unknown); a no-op when hidden.
#[derive(Clone, Debug)]
pub struct Bar {
    #[cfg(feature = "cli")]
    inner: indicatif::ProgressBar,
}

impl Bar {
    /// A bar that draws nothing.
    pub fn hidden() -> Bar {
        Bar {
            #[cfg(feature = "cli")]
            inner: indicatif::ProgressBar::hidden(),
        }
    }

    /// A bar over `len` structures labelled `msg` (fits).
    pub fn structures(len: u64, msg: &str, show: bool) -> Bar {
        #[cfg(feature = "cli")]
        {
            if !visible(show) {
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
            Bar { inner: bar }
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
            if !visible(show) {
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
            Bar { inner: bar }
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
            if !visible(show) {
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
            Bar { inner }
        }
        #[cfg(not(feature = "cli"))]
        {
            let _ = (len, show);
            Bar::hidden()
        }
    }

    /// Advance by `n`.
    #[inline]
    pub fn inc(&self, n: u64) {
        #[cfg(feature = "cli")]
        self.inner.inc(n);
        #[cfg(not(feature = "cli"))]
        let _ = n;
    }

    /// Replace the label.
    pub fn set_message(&self, msg: impl Into<Cow<'static, str>>) {
        #[cfg(feature = "cli")]
        self.inner.set_message(msg);
        #[cfg(not(feature = "cli"))]
        let _ = msg.into();
    }

    /// Stop and leave the bar on screen.
    pub fn finish(&self) {
        #[cfg(feature = "cli")]
        self.inner.finish();
    }

    /// Stop and erase the bar.
    pub fn finish_and_clear(&self) {
        #[cfg(feature = "cli")]
        self.inner.finish_and_clear();
    }
}

#[cfg(feature = "cli")]
fn visible(show: bool) -> bool {
    use std::io::IsTerminal;
    show && std::io::stderr().is_terminal()
}

/// A line for the person running a long call (e.g. what a builder chose), when `show`.
pub fn note(show: bool, msg: &str) {
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
