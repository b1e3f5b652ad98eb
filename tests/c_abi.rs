//! The C ABI from C: `tests/c/test_abi.c` includes only `include/aceuq.h`, is linked against the
//! same `libaceuq.a` the LAMMPS plugin uses, and exercises every entry point's error paths. It
//! also runs under valgrind (memcheck, leak check) when valgrind is installed.
//!
//! The static library is built exactly as `cmake/` builds it (`cargo rustc --release --lib
//! --no-default-features --crate-type staticlib`), which is a no-op after `make build`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds (or finds fresh) `target/release/libaceuq.a` the way cmake/ does.
fn staticlib() -> PathBuf {
    let root = common::repo("");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = Command::new(cargo)
        .args([
            "rustc",
            "--release",
            "--lib",
            "--locked",
            "--no-default-features",
            "--crate-type",
            "staticlib",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .current_dir(&root)
        .status()
        .expect("run cargo to build libaceuq.a");
    assert!(status.success(), "building libaceuq.a failed: {status}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let lib = target.join("release").join("libaceuq.a");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

/// Compiles the C test with warnings as errors, against the header alone.
fn compile(lib: &Path, out: &Path) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(&cc)
        .args([
            "-std=c11",
            "-O1",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg("-I")
        .arg(common::repo("include"))
        .arg(common::repo("tests/c/test_abi.c"))
        .arg(lib)
        // The native libraries the Rust standard library needs (as in cmake/CMakeLists.txt).
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil", "-o"])
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(
        output.status.success(),
        "compiling tests/c/test_abi.c failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The model and the broken copies of it that the C test loads.
fn inputs(dir: &Path) -> [PathBuf; 3] {
    let m = common::fit_model("tests/data/li/train.xyz", 6, &["Li"]);
    let good = common::save_model(&m, dir, "li.aceuq");
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("truncated.aceuq");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    // Flip a byte in the binary arrays at the end of the file: a checksum mismatch.
    let mut corrupt = bytes.clone();
    let at = corrupt.len() - 20;
    corrupt[at] ^= 0x5a;
    let corrupt_path = dir.join("corrupt.aceuq");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    [good, truncated, corrupt_path]
}

fn valgrind() -> Option<PathBuf> {
    let out = Command::new("valgrind").arg("--version").output().ok()?;
    out.status.success().then(|| PathBuf::from("valgrind"))
}

#[test]
fn c_test_program_passes_through_the_header_alone_and_under_valgrind() {
    let dir = common::workdir("c_abi", "test_abi");
    let lib = staticlib();
    let exe = dir.join("test_abi");
    compile(&lib, &exe);
    let [good, truncated, corrupt] = inputs(&dir);
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let args = [&good, &truncated, &corrupt, &scratch];

    let out = Command::new(&exe)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run test_abi");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "test_abi failed:\n{text}");
    assert!(text.contains(", 0 failures"), "{text}");
    common::note(text.trim());

    let Some(vg) = valgrind() else {
        common::note("SKIPPED valgrind run of test_abi: valgrind is not installed");
        return;
    };
    // Definite leaks and memory errors fail; "still reachable" (the thread pool, thread-locals
    // of the main thread) is how a process ends and is not counted.
    let out = Command::new(vg)
        .args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
        ])
        .arg(&exe)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run valgrind");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ERROR SUMMARY: 0 errors"),
        "valgrind found problems:\n{text}"
    );
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR SUMMARY") || l.contains("definitely lost"))
        .collect();
    common::note(&format!("valgrind: {}", summary.join(" | ")));
}
