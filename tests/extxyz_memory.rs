//! Memory bounds of the extended XYZ reader, measured with a counting global allocator.
//!
//! Everything here runs serially (one lock) because the allocator counts the whole process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufReader, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use aceuq::io::extxyz::{ExtxyzError, ReadOptions, Reader};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

fn grow(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grow(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Run `f` and return its result with the peak extra heap (bytes) it used.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// Generates extended XYZ text on the fly, so the input itself takes no memory.
struct FrameGen {
    frames_left: usize,
    atoms: usize,
    k: usize,
    chunk: Vec<u8>,
    pos: usize,
}

impl FrameGen {
    fn new(frames: usize, atoms: usize) -> Self {
        FrameGen {
            frames_left: frames,
            atoms,
            k: 0,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for FrameGen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.chunk.len() {
            if self.frames_left == 0 {
                return Ok(0);
            }
            self.frames_left -= 1;
            self.k += 1;
            // A cube of 20 Å^3 per atom: a plausible density (the reader refuses cells denser
            // than matter).
            let l = (self.atoms as f64 * 20.0).cbrt();
            let mut t = format!(
                "{}\nLattice=\"{l:.4} 0 0 0 {l:.4} 0 0 0 {l:.4}\" \
                 Properties=species:S:1:pos:R:3:forces:R:3 energy={} pbc=\"T T T\" \
                 config_type=gen step={}\n",
                self.atoms,
                -(self.k as f64) * 0.5,
                self.k
            );
            for a in 0..self.atoms {
                let x = (a * 7 + self.k) as f64 * 0.01;
                t.push_str(&format!(
                    "Al {x:.8} {:.8} {:.8} 0.1 -0.2 0.3\n",
                    x + 1.0,
                    x + 2.0
                ));
            }
            self.chunk = t.into_bytes();
            self.pos = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn extxyz_streaming_10k_frames_is_bounded() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ((count, atoms, esum), peak) = peak_during(|| {
        let input = BufReader::with_capacity(1 << 16, FrameGen::new(10_000, 16));
        let mut count = 0usize;
        let mut atoms = 0usize;
        let mut esum = 0.0;
        for frame in Reader::new(input, "gen.xyz", ReadOptions::default()) {
            let s = frame.expect("generated frames are valid");
            count += 1;
            atoms += s.len();
            esum += s.energy.expect("energy");
        }
        (count, atoms, esum)
    });
    assert_eq!(count, 10_000);
    assert_eq!(atoms, 160_000);
    assert_eq!(esum, -0.5 * (10_000.0 * 10_001.0 / 2.0));
    // About 16 MB of text went through; one frame plus buffers is a few tens of kB.
    println!("peak heap while streaming 10k frames: {peak} bytes");
    assert!(peak < 512 * 1024, "peak {peak} bytes");
}

#[test]
fn extxyz_memory_counter_sees_large_frames() {
    // Control: a single frame of 100k atoms must show up, so the bound above means something.
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (n, peak) = peak_during(|| {
        let input = BufReader::new(FrameGen::new(1, 100_000));
        Reader::new(input, "big.xyz", ReadOptions::default())
            .map(|f| f.expect("valid").len())
            .sum::<usize>()
    });
    assert_eq!(n, 100_000);
    println!("peak heap for one 100k-atom frame: {peak} bytes");
    assert!(peak > 100_000 * 48, "peak {peak} bytes");
}

#[test]
fn extxyz_lying_headers_do_not_allocate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cases = [
        "1000000000000\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 1 1 1\nH 2 2 2\n".to_string(),
        "2\nProperties=species:S:1:pos:R:3:x:R:1000000000000:y:I:1000000000000\nH 0 0 0 1 2\nH 0 0 0 1 2\n"
            .to_string(),
        format!("3\nProperties=species:S:1:pos:R:3:x:R:{}\nH 0 0 0\n", usize::MAX - 2),
    ];
    for text in &cases {
        let (result, peak) = peak_during(|| {
            Reader::new(text.as_bytes(), "lie.xyz", ReadOptions::default())
                .collect::<Result<Vec<_>, _>>()
        });
        let e = result.expect_err("a lying header is an error");
        assert!(
            matches!(e, ExtxyzError::Truncated { .. } | ExtxyzError::Parse { .. }),
            "{e}"
        );
        println!("{e}\n  peak {peak} bytes");
        assert!(peak < 256 * 1024, "peak {peak} bytes for {text:?}");
    }
}
