//! A stable-Rust mutation fuzzer for aceuq's parsers (`make fuzz`).
//!
//! cargo-fuzz needs a nightly compiler; this drives the same targets (`fuzz/targets.rs`) with
//! seeded random mutations of the committed corpus (`fuzz/corpus/<target>/`): bit flips, byte
//! and chunk edits, splices between corpus files, and number tokens replaced by boundary values
//! (0, -1, 2^32, 1e308, nan, ...) so that headers lie about sizes. Model files are also mutated
//! structurally (an array or metadata value changed and the checksums recomputed) so that the
//! mutations reach the model validation behind the CRCs.
//!
//! Failures: a panic, a property violated (see the targets), an input slower than 2 s (40 s for
//! fit configs, which generate their basis), or a
//! single allocation above 1 GiB (the input is saved to `fuzz/crashes/` and the process
//! aborts). Inputs that reach new (target, outcome) signatures are kept in memory as further
//! seeds. Failing inputs are written to `fuzz/crashes/<target>-<hash>`.
//!
//! ```text
//! cargo run --release --example fuzz -- [TARGET ...] [--seconds N] [--seed S]
//! ```

#[path = "../fuzz/targets.rs"]
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Largest single allocation a parser may make on fuzz input.
const ALLOC_CAP: usize = 1 << 30;

static ARMED: AtomicBool = AtomicBool::new(false);

/// Aborts (after saving the input) on an allocation above [`ALLOC_CAP`]: a header lying about a
/// size must not make the reader reserve memory the file cannot fill.
struct CappedAlloc;

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP && ARMED.load(Ordering::Relaxed) {
            huge_allocation(layout.size());
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_CAP && ARMED.load(Ordering::Relaxed) {
            huge_allocation(new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

/// The input being run is copied here before each execution (fixed buffer: nothing may be
/// allocated inside the allocator).
static CURRENT: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

fn huge_allocation(size: usize) -> ! {
    ARMED.store(false, Ordering::Relaxed);
    let _ = writeln!(
        std::io::stderr(),
        "FUZZ FAILURE: allocation of {size} bytes; input saved in fuzz/crashes/last-input"
    );
    std::process::abort();
}

fn save_current(data: &[u8]) {
    if let Ok(mut g) = CURRENT.lock()
        && let Some(f) = g.as_mut()
    {
        use std::io::Seek;
        let _ = f.set_len(0);
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.write_all(data);
    }
}

const INTERESTING: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "255",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "99999999999999999999",
    "-9223372036854775808",
    "1e308",
    "-1e308",
    "1e-320",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "0.0",
    "-0.0",
    "1.5",
    "",
];

const TOKENS: &[&[u8]] = &[
    b"\n",
    b" ",
    b"\"",
    b"=",
    b"\r\n",
    b"\0",
    b"\t",
    b"#",
    b"[",
    b"]",
    b"{",
    b",",
    b"Lattice=\"",
    b"Properties=species:S:1:pos:R:3",
    b":R:3",
    b":I:1",
    b":L:1",
    b":S:1",
    b"pbc=\"T T F\"",
    b"ITEM: ATOMS ",
    b"ITEM: NUMBER OF ATOMS\n",
    b"ITEM: TIMESTEP\n",
    b"#--- binary arrays: ",
    b"ACEUQ-MODEL format=2\n",
    b"nmax = [",
    b"lmax = [",
    b"\xff\xfe",
    b"\xc3\xa9",
];

/// Byte ranges of number-like tokens (digits, sign, dot, exponent).
fn number_spans(d: &[u8]) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut i = 0;
    while i < d.len() {
        if d[i].is_ascii_digit() {
            let mut s = i;
            if s > 0 && d[s - 1] == b'-' {
                s -= 1;
            }
            let mut e = i;
            while e < d.len()
                && (d[e].is_ascii_digit() || matches!(d[e], b'.' | b'e' | b'E' | b'+' | b'-'))
            {
                e += 1;
            }
            out.push((s, e));
            i = e;
        } else {
            i += 1;
        }
    }
    out
}

fn mutate_bytes(rng: &mut ChaCha8Rng, d: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let n = rng.random_range(1..=4);
    for _ in 0..n {
        let len = d.len();
        match rng.random_range(0..10) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                d[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                d[i] = rng.random();
            }
            2 if len > 0 => {
                // Delete a chunk.
                let i = rng.random_range(0..len);
                let k = rng.random_range(1..=(len - i).min(64));
                d.drain(i..i + k);
            }
            3 => {
                // Insert a token.
                let i = rng.random_range(0..=len);
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                d.splice(i..i, t.iter().copied());
            }
            4 | 5 => {
                // Replace a number with a boundary value.
                let spans = number_spans(d);
                if !spans.is_empty() {
                    let (s, e) = spans[rng.random_range(0..spans.len())];
                    let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                    d.splice(s..e, v.bytes());
                }
            }
            6 if len > 1 => {
                // Duplicate a chunk (e.g. a line) in place.
                let i = rng.random_range(0..len);
                let k = rng.random_range(1..=(len - i).min(256));
                let chunk: Vec<u8> = d[i..i + k].to_vec();
                let at = rng.random_range(0..=d.len());
                d.splice(at..at, chunk);
            }
            7 if !corpus.is_empty() => {
                // Splice: our head, another file's tail.
                let o = &corpus[rng.random_range(0..corpus.len())];
                let a = rng.random_range(0..=len);
                let b = rng.random_range(0..=o.len());
                d.truncate(a);
                d.extend_from_slice(&o[b..]);
            }
            8 if len > 0 => {
                // Truncate (interrupted writes).
                let a = rng.random_range(0..len);
                d.truncate(a);
            }
            _ => {
                // Swap two lines.
                let lines: Vec<usize> = d
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i)
                    .collect();
                if lines.len() >= 3 {
                    let a = rng.random_range(0..lines.len() - 1);
                    let (s, e) = (lines[a] + 1, lines[a + 1] + 1);
                    let line: Vec<u8> = d[s..e].to_vec();
                    d.drain(s..e);
                    let at = lines[rng.random_range(0..lines.len() - 2)].min(d.len());
                    d.splice(at..at, line);
                }
            }
        }
    }
}

/// Model files: change one array element or one metadata number and recompute the checksums,
/// so that the mutation is seen by the model validation rather than the CRC check.
fn mutate_model(rng: &mut ChaCha8Rng, d: &mut Vec<u8>) -> bool {
    use aceuq::io::container::{Array, Container};
    let Ok(mut c) = Container::from_bytes(Path::new("seed"), d) else {
        return false;
    };
    let names: Vec<String> = c.arrays.keys().cloned().collect();
    if names.is_empty() || rng.random_bool(0.3) {
        // Edit a metadata value (header text) instead; checksums cover arrays only.
        return false;
    }
    let name = &names[rng.random_range(0..names.len())];
    let (shape, arr) = c.arrays.get_mut(name).expect("listed");
    match rng.random_range(0..4) {
        0 => {
            // Shape lies about the data.
            if !shape.is_empty() {
                let k = rng.random_range(0..shape.len());
                shape[k] = [
                    0,
                    1,
                    shape[k] + 1,
                    shape[k].saturating_sub(1),
                    usize::MAX / 8,
                ][rng.random_range(0..5)];
            }
        }
        1 => {
            // Drop the array entirely.
            let n = name.clone();
            c.arrays.remove(&n);
        }
        _ => match arr {
            Array::U32(v) if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = [
                    0,
                    1,
                    u32::MAX,
                    v[i].wrapping_add(1),
                    v[i].wrapping_sub(1),
                    1 << 20,
                ][rng.random_range(0..6)];
            }
            Array::F64(v) if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = [0.0, -1.0, f64::NAN, f64::INFINITY, 1e308, -v[i], 1e-300]
                    [rng.random_range(0..7)];
            }
            _ => {}
        },
    }
    *d = c.to_bytes();
    true
}

fn hash(d: &[u8]) -> u32 {
    crc32fast::hash(d)
}

fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

struct Stats {
    execs: u64,
    outcomes: u64,
    accepted: u64,
    failures: u64,
    slowest: Duration,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn fuzz(target: &str, seconds: u64, seed: u64, root: &Path) -> Stats {
    let mut corpus = load_corpus(&root.join("fuzz/corpus").join(target));
    assert!(!corpus.is_empty(), "no corpus in fuzz/corpus/{target}");
    let crashes = root.join("fuzz/crashes");
    std::fs::create_dir_all(&crashes).expect("create fuzz/crashes");
    *CURRENT.lock().unwrap() = Some(
        std::fs::File::create(crashes.join("last-input")).expect("create fuzz/crashes/last-input"),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ hash(target.as_bytes()) as u64);
    let mut seen: HashSet<String> = HashSet::new();
    let mut st = Stats {
        execs: 0,
        outcomes: 0,
        accepted: 0,
        failures: 0,
        slowest: Duration::ZERO,
    };
    let start = Instant::now();
    let deadline = Duration::from_secs(seconds);
    let mut k = 0usize;
    while start.elapsed() < deadline {
        // The unmodified corpus first, then mutations of random (possibly grown) seeds.
        let mut d = if k < corpus.len() {
            corpus[k].clone()
        } else {
            corpus[rng.random_range(0..corpus.len())].clone()
        };
        if k >= corpus.len() {
            let structural =
                target == "model" && rng.random_bool(0.5) && mutate_model(&mut rng, &mut d);
            if !structural {
                mutate_bytes(&mut rng, &mut d, &corpus);
            }
        }
        k += 1;
        save_current(&d);
        ARMED.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(|| targets::run(target, &d));
        let dt = t0.elapsed();
        ARMED.store(false, Ordering::Relaxed);
        st.execs += 1;
        st.slowest = st.slowest.max(dt);
        let failure = match r {
            Ok(Ok(ok)) => {
                st.accepted += ok as u64;
                None
            }
            Ok(Err(msg)) => Some(format!("property violated: {msg}")),
            Err(p) => Some(format!("panic: {}", panic_message(&*p))),
        };
        let failure = failure.or_else(|| {
            (dt > slow_limit(target)).then(|| format!("slow input: {:.1} s", dt.as_secs_f64()))
        });
        if let Some(msg) = failure {
            st.failures += 1;
            let p = crashes.join(format!("{target}-{:08x}", hash(&d)));
            std::fs::write(&p, &d).expect("save failing input");
            let short: String = msg.chars().take(400).collect();
            println!("  {target}: FAILURE saved to {}: {short}", p.display());
            continue;
        }
        // Keep inputs with a new kind of outcome (frame count / error class) as seeds, so the
        // fuzzer walks deeper into the formats. Cheap stand-in for coverage feedback.
        let sig = signature(target, &d);
        if seen.insert(sig) && corpus.len() < 2000 && d.len() < 1 << 20 {
            corpus.push(d);
        }
    }
    st.outcomes = seen.len() as u64;
    st
}

/// Slowest acceptable input: parsers must be quick; a valid fit config also generates its basis,
/// which `SpeciesBasis::generate` bounds to about 20 s (larger settings are refused).
fn slow_limit(target: &str) -> Duration {
    match target {
        "fit_toml" => Duration::from_secs(40),
        _ => Duration::from_secs(2),
    }
}

/// A coarse outcome signature: which error (first words) or which success shape.
fn signature(target: &str, d: &[u8]) -> String {
    match target {
        "extxyz" => match aceuq::io::extxyz::Reader::new(d, "x", Default::default())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(v) => format!(
                "ok {} frames {:?}",
                v.len().min(3),
                v.first().map(|s| (
                    s.len().min(8),
                    s.cell.is_some(),
                    s.forces.is_some(),
                    s.arrays.len()
                ))
            ),
            Err(e) => first_words(&e.to_string()),
        },
        "model" => match aceuq::io::container::Container::from_bytes(Path::new("x"), d) {
            Err(e) => first_words(&e.to_string()),
            Ok(c) => match aceuq::Potential::from_container(Path::new("x"), &c) {
                Ok(m) => format!("model {:?}", m.uq.methods()),
                Err(e) => format!("container ok, {}", first_words(&e.to_string())),
            },
        },
        // Text formats without a cheap outcome signature: keep a small random sample.
        _ => format!("{}", hash(d) % 64),
    }
}

fn first_words(s: &str) -> String {
    // Drop digits so that "line 12" and "line 13" are the same outcome.
    s.chars().filter(|c| !c.is_ascii_digit()).take(60).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut names = vec![];
    let mut seconds = 60u64;
    let mut seed = 1u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            t if targets::TARGETS.contains(&t) => names.push(t.to_string()),
            other => {
                eprintln!(
                    "unknown argument '{other}'; targets: {}",
                    targets::TARGETS.join(" ")
                );
                std::process::exit(2);
            }
        }
    }
    if names.is_empty() {
        names = targets::TARGETS.iter().map(|s| s.to_string()).collect();
    }
    // Panics are expected to be caught and reported once each; silence the default hook.
    std::panic::set_hook(Box::new(|_| {}));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total_failures = 0;
    for t in &names {
        let st = fuzz(t, seconds, seed, root);
        println!(
            "fuzz {t}: {} executions in {seconds} s ({} accepted whole), {} distinct outcomes, {} failures, slowest input {:.1} ms",
            st.execs,
            st.accepted,
            st.outcomes,
            st.failures,
            st.slowest.as_secs_f64() * 1e3
        );
        total_failures += st.failures;
    }
    if total_failures > 0 {
        println!("{total_failures} failing inputs in fuzz/crashes/");
        std::process::exit(1);
    }
}
