//! The C ABI of aceuq, called by the LAMMPS plugin (`cpp/`) and declared in the generated,
//! committed header `include/aceuq.h` (regenerate with `make header`).
//!
//! Scaffolding: for now this holds only [`aceuq_version`], enough to prove that the static
//! library links into the plugin and is callable from LAMMPS. The real API (opaque handles,
//! status enum, last-error message, panic catching) is added on top of it.

use std::ffi::c_char;

/// NUL-terminated crate version, built at compile time so that the pointer handed to C is
/// `'static` and nothing is allocated or freed across the boundary.
static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Version of the aceuq library as a NUL-terminated string, e.g. `"0.1.0"`.
///
/// The pointer refers to static storage: it is valid for the life of the process and must
/// not be freed. This function cannot fail and cannot panic (it only returns a pointer to a
/// constant), so it needs no error status.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_is_nul_terminated_crate_version() {
        // SAFETY: aceuq_version returns a pointer to a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(aceuq_version()) };
        assert_eq!(
            v.to_str().expect("version is UTF-8"),
            env!("CARGO_PKG_VERSION")
        );
    }
}
