//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every input that once failed
//! (`fuzz/regressions/<target>/`) through the fuzz targets: no panic, no violated property, and
//! no input slower than 2 s. `make fuzz` explores beyond the corpus; this keeps what it found.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn corpus_and_regressions_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = vec![];
    for target in targets::TARGETS {
        let mut n = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
                continue;
            };
            for entry in dir {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let t0 = Instant::now();
                let r = std::panic::catch_unwind(|| targets::run(target, &data));
                let dt = t0.elapsed();
                n += 1;
                match r {
                    Ok(Ok(_)) if dt < Duration::from_secs(2) => {}
                    Ok(Ok(_)) => failures.push(format!("{}: slow ({dt:?})", path.display())),
                    Ok(Err(m)) => failures.push(format!("{}: {m}", path.display())),
                    Err(_) => failures.push(format!("{}: panicked", path.display())),
                }
            }
        }
        assert!(n > 0, "no corpus for fuzz target {target}");
        eprintln!("fuzz replay {target}: {n} inputs");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
