fn main() {
    restore_default_sigpipe();
    std::process::exit(aceuq::cli::main());
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`aceuq info ... | head`) fails and
/// `println!` panics with a backtrace. A command-line tool should end quietly there, as `cat`
/// does: restore the default action (terminate) for this process only (not in the Python
/// package, which calls the library's `cli::main_from`).
#[cfg(unix)]
fn restore_default_sigpipe() {
    unsafe extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13; // Linux, macOS and the BSDs
    const SIG_DFL: usize = 0;
    // SAFETY: called once at start-up, before any thread exists; sets a standard disposition.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}
