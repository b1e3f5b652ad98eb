//! The committed C header `include/aceuq.h` must match what cbindgen generates from
//! `src/ffi/` with `cbindgen.toml`. A stale header would let the C++ plugin compile against
//! declarations that no longer match the Rust symbols.
//!
//! `ACEUQ_BLESS_HEADER=1 cargo test --test c_header` (what `make header` runs) writes the
//! header instead of comparing.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cannot read cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen could not generate the header from src/: {e}"));
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("cbindgen writes UTF-8")
}

#[test]
fn committed_header_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/aceuq.h");
    let generated = generate();
    assert!(
        generated.contains("aceuq_version"),
        "generated header lacks aceuq_version; is src/ffi/ still exported?\n{generated}"
    );

    if std::env::var_os("ACEUQ_BLESS_HEADER").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("include/ has a parent"))
            .expect("create include/");
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
        return;
    }

    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nGenerate it with `make header`.",
            path.display()
        )
    });
    if committed != generated {
        let first_diff = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_string(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "{} is stale ({first_diff}): it no longer matches src/ffi/.\n\
             Regenerate it with `make header` and commit it.\n\
             --- generated ---\n{generated}",
            path.display()
        );
    }
}
