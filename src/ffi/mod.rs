//! The C ABI of aceuq, called by the LAMMPS plugin (`cpp/`) and declared in the generated,
//! committed header `include/aceuq.h` (regenerate with `make header`).
//!
//! Conventions:
//! - Opaque handle [`aceuq_model_t`]; created by [`aceuq_model_load`], freed by
//!   [`aceuq_model_free`]. A handle is used by one thread at a time (it owns scratch memory).
//! - Every fallible function returns an [`aceuq_status_t`]; on failure the message is available
//!   from [`aceuq_last_error`] on the same thread until the next call.
//! - Every entry point checks its pointers and catches Rust panics, which become
//!   `ACEUQ_STATUS_INTERNAL` with a message: nothing unwinds into C or C++.
//! - Arrays are flat: positions `[n][3]` row-major, per-atom arrays indexed by the local atom index.
//!
//! Top layer: owns the C ABI only (pointer checks, status codes, last-error message, panics
//! caught). The step itself is `engine`'s, the file formats `io`'s; nothing imports `ffi`.

#![allow(non_camel_case_types)]
// C names: `aceuq_status_t` and `aceuq_method_t` are exported as `aceuq_status_t` and `aceuq_method_t`
// (cbindgen.toml), their variants as `ACEUQ_STATUS_OK`, `ACEUQ_METHOD_GAMMA`, ...

use crate::engine::pace::PaceEngine;
use crate::engine::{Atoms, Engine, Outputs};
use crate::error::{Error, ErrorKind};
use crate::potential::Potential;
use crate::uq::Method;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// NUL-terminated crate version, built at compile time so that the pointer handed to C is
/// `'static` and nothing is allocated or freed across the boundary.
static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Version of the aceuq library as a NUL-terminated string, e.g. `"0.1.0"`.
///
/// The pointer refers to static storage: it is valid for the life of the process and must
/// not be freed. This function cannot fail.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The vector-kernel family this process computes with, as a NUL-terminated string: "avx512",
/// "avx2+fma" or "portable" (what the CPU has, narrowed by the environment variable
/// `ACEUQ_SIMD=avx2|portable`, read once per process).
///
/// The pointer refers to static storage: it is valid for the life of the process and must not
/// be freed. This function cannot fail.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_simd_kernels() -> *const c_char {
    crate::simd::kernels_cstr().as_ptr().cast()
}

/// Result of every fallible call. Anything but `ACEUQ_STATUS_OK` comes with a message from
/// [`aceuq_last_error`].
#[repr(i32)]
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aceuq_status_t {
    /// Success.
    ACEUQ_STATUS_OK = 0,
    /// A NULL pointer, a negative size or an out-of-range index was passed.
    ACEUQ_STATUS_INVALID_ARGUMENT = 1,
    /// A file could not be read or written.
    ACEUQ_STATUS_IO = 2,
    /// A file is not a valid model (wrong format, truncated, corrupt).
    ACEUQ_STATUS_FORMAT = 3,
    /// The input data are unusable (non-finite positions, unknown species, ...).
    ACEUQ_STATUS_DATA = 4,
    /// The model lacks what was asked for (e.g. an uncertainty method it was not fitted with).
    ACEUQ_STATUS_MISSING = 5,
    /// A bug: a Rust panic was caught. Please report the message.
    ACEUQ_STATUS_INTERNAL = 6,
}

/// Per-atom uncertainty methods, as integers for the C side.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aceuq_method_t {
    ACEUQ_METHOD_GAMMA = 0,
    ACEUQ_METHOD_GAMMA_LOCAL = 1,
    ACEUQ_METHOD_ENSEMBLE = 2,
    ACEUQ_METHOD_DISTANCE = 3,
    ACEUQ_METHOD_GP = 4,
    ACEUQ_METHOD_CONTACT = 5,
}

// The C enum's values are the methods' ids (positions in Method::ALL).
const _: () = {
    use aceuq_method_t::*;
    assert!(ACEUQ_METHOD_GAMMA as usize == Method::Gamma as usize);
    assert!(ACEUQ_METHOD_GAMMA_LOCAL as usize == Method::GammaLocal as usize);
    assert!(ACEUQ_METHOD_ENSEMBLE as usize == Method::Ensemble as usize);
    assert!(ACEUQ_METHOD_DISTANCE as usize == Method::Distance as usize);
    assert!(ACEUQ_METHOD_GP as usize == Method::Gp as usize);
    assert!(ACEUQ_METHOD_CONTACT as usize == Method::Contact as usize);
};

impl aceuq_method_t {
    /// The method of an id (the enum's value = the method's position in [`Method::ALL`]).
    fn from_i32(v: i32) -> Option<Method> {
        Method::from_id(i64::from(v))
    }
}

/// Number of uncertainty methods the library knows (ids `0 .. count`, as in [`aceuq_method_t`]).
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_method_count() -> i32 {
    Method::ALL.len() as i32
}

/// 1 if the caller's struct sizes (`sizeof` of [`aceuq_system_t`], [`aceuq_results_t`] and
/// [`aceuq_frame_t`] in the header it was compiled with) equal the library's, else 0: a plugin
/// built against another version of `include/aceuq.h` would read and write the wrong fields.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_struct_sizes_match(system: usize, results: usize, frame: usize) -> i32 {
    i32::from(
        system == std::mem::size_of::<aceuq_system_t>()
            && results == std::mem::size_of::<aceuq_results_t>()
            && frame == std::mem::size_of::<aceuq_frame_t>(),
    )
}

/// Name of method `id` (`"gamma"`, `"gamma_local"`, ...), as used in LAMMPS inputs and files; NULL
/// for an unknown id. The string is static: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_method_name(id: i32) -> *const c_char {
    aceuq_method_t::from_i32(id).map_or(std::ptr::null(), |m| m.name_nul().as_ptr().cast())
}

/// Symbol of the chemical element with atomic number `z` (1 = H to 94 = Pu), NULL outside that
/// range. The string is static: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_element_symbol(z: i32) -> *const c_char {
    u32::try_from(z)
        .ok()
        .and_then(crate::elements::element)
        .map_or(std::ptr::null(), |e| e.0.as_ptr())
}

/// Standard atomic mass (g/mol) of the element with atomic number `z`
/// ([`aceuq_element_symbol`]'s range), NaN outside it.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_element_mass(z: i32) -> f64 {
    u32::try_from(z)
        .ok()
        .and_then(crate::elements::element)
        .map_or(f64::NAN, |e| e.1)
}

/// The `aceuq fit` option that builds method `id`'s estimator (e.g. `"--clusters K"`), for error
/// messages; NULL for an unknown id. The string is static: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_method_fit_option(id: i32) -> *const c_char {
    aceuq_method_t::from_i32(id).map_or(std::ptr::null(), |m| m.fit_option_nul().as_ptr().cast())
}

/// Opaque model handle: the potential and the scratch memory of its MD steps.
pub struct aceuq_model_t {
    kind: Kind,
}

/// An aceuq model, or a pacemaker potential (with at most the `gamma` grade of an `.asi`).
enum Kind {
    Native(Box<Engine>),
    Pace(Box<PaceEngine>),
}

impl aceuq_model_t {
    /// The aceuq potential, or an `ACEUQ_STATUS_MISSING` error for a pacemaker potential (it
    /// has none of aceuq's estimators beyond the `gamma` grade of an `.asi`).
    fn pot(&self) -> Result<&Potential, Failure> {
        match &self.kind {
            Kind::Native(e) => Ok(e.potential()),
            Kind::Pace(_) => Err(no_uq()),
        }
    }

    /// The stored calibration entry of `method` for species `species` (and `gamma_local`
    /// cluster `cluster`): an aceuq model's, or the cutoffs file loaded with a pacemaker
    /// potential.
    fn stored_calibration(
        &self,
        method: Method,
        species: usize,
        cluster: Option<usize>,
    ) -> Result<Option<&crate::stats::cutoff::Calibration>, Failure> {
        match &self.kind {
            Kind::Native(e) => Ok(e.potential().stored_calibration(method, species, cluster)),
            Kind::Pace(p) => Ok(p.stored_calibration(method, species, cluster)),
        }
    }

    fn engine(&self) -> Result<&Engine, Failure> {
        match &self.kind {
            Kind::Native(e) => Ok(e),
            Kind::Pace(_) => Err(no_uq()),
        }
    }

    /// The uncertainties this model can give.
    fn methods(&self) -> Vec<Method> {
        match &self.kind {
            Kind::Native(e) => e.potential().uq.methods(),
            Kind::Pace(p) => p.methods(),
        }
    }

    fn species(&self) -> &[String] {
        match &self.kind {
            Kind::Native(e) => &e.potential().model.species,
            Kind::Pace(p) => &p.model().elements,
        }
    }

    fn max_cutoff(&self) -> f64 {
        match &self.kind {
            Kind::Native(e) => e.potential().model.max_cutoff(),
            Kind::Pace(p) => p.model().max_cutoff(),
        }
    }
}

fn no_uq() -> Failure {
    Failure(
        aceuq_status_t::ACEUQ_STATUS_MISSING,
        "this is a pacemaker potential: aceuq gives it only the 'gamma' grade of an active-set \
         inverse (.asi), the 'gamma_local' grade of clustered active sets (.lasi) and their \
         calibrated cutoffs, not this"
            .into(),
    )
}

/// The atoms of one MPI rank, as LAMMPS holds them.
#[repr(C)]
pub struct aceuq_system_t {
    /// Owned atoms (`nlocal`) and owned + ghost atoms (`nall`).
    pub nlocal: i32,
    pub nall: i32,
    /// Positions `[nall][3]` (Å).
    pub x: *const f64,
    /// Model species index of every atom `[nall]`; `-1` = not handled by this model (its
    /// interactions are skipped both as centre and as neighbour).
    pub species: *const i32,
    /// Atom IDs `[nall]`, used only in error messages (may be NULL).
    pub tag: *const i64,
    /// Centre atoms to evaluate: `inum` local indices.
    pub inum: i32,
    pub ilist: *const i32,
    /// Neighbours of `ilist[ii]` are `neigh[offsets[ii] .. offsets[ii+1]]` (indices into `x`).
    pub offsets: *const i32,
    pub neigh: *const i32,
}

/// Where results go. Per-atom arrays are indexed by local atom index and must hold `nlocal`
/// values; only the entries of atoms in `ilist` are written. The arrays written (`eatom`, `fij`,
/// the uncertainty arrays other than the ensemble's, `ens_forces`) must not overlap; a method
/// listed twice with the same array is written once.
#[repr(C)]
pub struct aceuq_results_t {
    /// Sum of the atomic energies of the `ilist` atoms (eV). May be NULL.
    pub energy: *mut f64,
    /// Energy of each atom (eV). May be NULL.
    pub eatom: *mut f64,
    /// `dE_i/dr_ij` for every neighbour entry `[nnz][3]` (eV/Å), where `r_ij = x_j - x_i`:
    /// the force on `i` gains `+fij`, the force on `j` gains `-fij`. Required.
    pub fij: *mut f64,
    /// Number of uncertainty methods requested (0 for none).
    pub n_uq: i32,
    /// The methods requested `[n_uq]` (values of [`aceuq_method_t`]).
    pub uq_methods: *const i32,
    /// For each requested method, an array of `nlocal` values to fill. The ensemble's is not
    /// filled here: it needs the ensemble force columns on ghost atoms summed onto their owners
    /// first (see `ens_forces` and [`aceuq_ensemble_sigma`]).
    pub uq_values: *const *mut f64,
    /// When the ensemble is requested: the ensemble force columns `[nall][n_columns][3]`
    /// (eV/Å), `n_columns` from [`aceuq_model_ensemble_columns`] (`n_members - 1`), zeroed and
    /// filled for owned and ghost atoms. They are not member forces but the forces of the
    /// ensemble's spread directions, whose squared norms sum to the member spread (cheaper than
    /// member forces: one column fewer, no mean). Sum ghosts onto owners (LAMMPS reverse
    /// communication), then call [`aceuq_ensemble_sigma`]. Otherwise, or if `n_columns` is 0,
    /// may be NULL.
    pub ens_forces: *mut f64,
    /// Optional, with `ACEUQ_METHOD_GAMMA_LOCAL` requested: `nlocal` values to fill with the
    /// `gamma_local` cluster of each atom, the one that graded it (an index into its species'
    /// clusters, `0 .. aceuq_model_gamma_local_clusters`; the key of
    /// [`aceuq_model_uq_cluster_cutoffs`]). NULL = not wanted (nothing is copied). Non-NULL
    /// without gamma_local requested is `ACEUQ_STATUS_INVALID_ARGUMENT`.
    pub gamma_local_cluster: *mut i32,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::new("no error").expect("no NUL"));
}

/// Returned by [`aceuq_last_error`] when the thread-local message is gone (thread exiting).
static NO_MESSAGE: &str = "aceuq: no error message available (thread exiting)\0";

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // `try_with`: during thread teardown the slot may be gone; never panic across the ABI.
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut slot) = e.try_borrow_mut() {
            *slot = c;
        }
    });
}

/// Message of the last failed call on this thread (NUL-terminated, UTF-8). Valid until the next
/// aceuq call on this thread; copy it if you need it longer. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn aceuq_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.try_borrow().map(|m| m.as_ptr()).ok())
        .ok()
        .flatten()
        .unwrap_or(NO_MESSAGE.as_ptr().cast())
}

/// An error crossing the boundary: status plus message.
struct Failure(aceuq_status_t, String);

/// The one place where the crate's error kinds become C status codes.
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match e.kind {
            ErrorKind::InvalidArgument => aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
            ErrorKind::Io => aceuq_status_t::ACEUQ_STATUS_IO,
            ErrorKind::Format => aceuq_status_t::ACEUQ_STATUS_FORMAT,
            ErrorKind::Data => aceuq_status_t::ACEUQ_STATUS_DATA,
            ErrorKind::Missing => aceuq_status_t::ACEUQ_STATUS_MISSING,
        };
        Failure(status, e.message)
    }
}

fn fail<T>(status: aceuq_status_t, msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(status, msg.into()))
}

/// Run `f`, turning errors and panics into a status and a last-error message.
fn guard(f: impl FnOnce() -> Result<(), Failure>) -> aceuq_status_t {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => aceuq_status_t::ACEUQ_STATUS_OK,
        Ok(Err(Failure(status, msg))) => {
            set_last_error(&msg);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("aceuq internal error (please report): {what}"));
            aceuq_status_t::ACEUQ_STATUS_INTERNAL
        }
    }
}

/// Borrow a C string argument.
///
/// # Safety
/// `p` must be NULL or a valid NUL-terminated string.
unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return fail(
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
            format!("{what} is NULL"),
        );
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().or_else(|_| {
        fail(
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
            format!("{what} is not UTF-8"),
        )
    })
}

/// Borrow the handle.
///
/// # Safety
/// `p` must be NULL or a handle from [`aceuq_model_load`] not yet freed.
unsafe fn handle<'a>(p: *const aceuq_model_t) -> Result<&'a aceuq_model_t, Failure> {
    // SAFETY: per the caller's contract.
    unsafe { p.as_ref() }.ok_or(Failure(
        aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
        "model handle is NULL".into(),
    ))
}

/// Borrow the handle mutably.
///
/// # Safety
/// As [`handle`], and not used by another thread at the same time.
unsafe fn handle_mut<'a>(p: *mut aceuq_model_t) -> Result<&'a mut aceuq_model_t, Failure> {
    // SAFETY: per the caller's contract.
    unsafe { p.as_mut() }.ok_or(Failure(
        aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
        "model handle is NULL".into(),
    ))
}

/// Write through an output pointer.
fn put<T>(p: *mut T, v: T, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        return fail(
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
            format!("{what} is NULL"),
        );
    }
    // SAFETY: non-NULL; the caller provides space for one T.
    unsafe { p.write(v) };
    Ok(())
}

/// A slice from a pointer and length, with a clear error for NULL.
///
/// # Safety
/// Unless NULL, `p` must point to at least `n` valid elements.
unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], Failure> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return fail(
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
            format!("{what} is NULL"),
        );
    }
    // SAFETY: per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Size the library's thread pool once per process, the LAMMPS way: `OMP_NUM_THREADS` threads per
/// MPI rank (1 if unset), so that a rank never competes with the others for cores.
fn init_threads() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let n = std::env::var("OMP_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        // Fails only if the pool already exists (the host initialized rayon itself): keep it.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    });
}

/// Load a model file. On success `*out` holds a new handle (free it with [`aceuq_model_free`]).
///
/// # Safety
/// `path` must be a NUL-terminated string; `out` must point to writable storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_load(
    path: *const c_char,
    out: *mut *mut aceuq_model_t,
) -> aceuq_status_t {
    guard(|| {
        if out.is_null() {
            return fail(aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");
        }
        // SAFETY: caller contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: caller contract.
        let p = unsafe { cstr(path, "path") }?;
        init_threads();
        let kind = if crate::pace::is_pacemaker_potential(Path::new(p)) {
            let m = crate::pace::PacePotential::load(Path::new(p)).map_err(Error::from)?;
            Kind::Pace(Box::new(PaceEngine::new(m, Path::new(p))))
        } else {
            let pot = Potential::load(Path::new(p)).map_err(Error::from)?;
            Kind::Native(Box::new(
                Engine::new(pot).map_err(|e| Error::new(e.kind, format!("{p}: {}", e.message)))?,
            ))
        };
        let h = Box::new(aceuq_model_t { kind });
        // SAFETY: caller contract.
        unsafe { out.write(Box::into_raw(h)) };
        Ok(())
    })
}

/// Attach an active-set inverse (`.asi`, the numpy archive ML-PACE's `pace/extrapolation`
/// reads, or one written by `aceuq activeset`) to a pacemaker potential, which then gives the
/// `gamma` grade; or, for a path ending in `.lasi`, the clustered local active sets `aceuq
/// activeset --clusters K` wrote for it, which give the `gamma_local` grade. Cutoffs
/// (`aceuq_model_load_cutoffs`) are loaded after the active sets they were calibrated with. An
/// aceuq model carries its active sets in the model file: that is an
/// `ACEUQ_STATUS_INVALID_ARGUMENT` error.
///
/// # Safety
/// `model` must be a valid handle; `path` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_load_active_set(
    model: *mut aceuq_model_t,
    path: *const c_char,
) -> aceuq_status_t {
    // SAFETY: caller contract.
    unsafe {
        attach_to_pacemaker(
            model,
            path,
            "its active sets",
            "an .asi or .lasi file",
            |e, p| e.load_active_set(p),
        )
    }
}

/// Load the file at `path` into the pacemaker potential of `model` with `load`; for an aceuq
/// model an error saying that it carries `what` in its model file and `file` goes with a
/// pacemaker potential.
///
/// # Safety
/// `model` must be a valid handle, `path` a NUL-terminated string.
unsafe fn attach_to_pacemaker(
    model: *mut aceuq_model_t,
    path: *const c_char,
    what: &str,
    file: &str,
    load: impl FnOnce(&mut PaceEngine, &Path) -> Result<(), Error>,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle_mut(model) }?;
        // SAFETY: caller contract.
        let p = unsafe { cstr(path, "path") }?;
        match &mut h.kind {
            Kind::Native(_) => fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!(
                    "{p}: an aceuq model carries {what} in the model file; {file} goes with a \
                     pacemaker potential"
                ),
            ),
            Kind::Pace(e) => {
                load(e, Path::new(p))?;
                Ok(())
            }
        }
    })
}

/// Attach the cutoffs file `aceuq calibrate` wrote for a pacemaker potential
/// (`pot.cutoffs.toml`) to a handle whose active-set inverse is loaded
/// ([`aceuq_model_load_active_set`]); the file is checked against the potential and the active
/// set it was calibrated with. Then [`aceuq_model_uq_cutoffs`] gives its cutoffs of `gamma`.
/// `ACEUQ_STATUS_INVALID_ARGUMENT` for an aceuq model (its cutoffs are in the model file) or
/// without an active set; `ACEUQ_STATUS_DATA` for a file that does not parse or belongs to
/// other files.
///
/// # Safety
/// `model` must be a valid handle, `path` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_load_cutoffs(
    model: *mut aceuq_model_t,
    path: *const c_char,
) -> aceuq_status_t {
    // SAFETY: caller contract.
    unsafe {
        attach_to_pacemaker(model, path, "its cutoffs", "a cutoffs file", |e, p| {
            e.load_cutoffs(p)
        })
    }
}

/// Free a handle (NULL is ignored).
///
/// # Safety
/// `model` must be NULL or a handle from [`aceuq_model_load`], not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_free(model: *mut aceuq_model_t) {
    if !model.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: caller contract: created by Box::into_raw in aceuq_model_load.
            drop(unsafe { Box::from_raw(model) })
        }));
    }
}

/// Number of species of the model.
///
/// # Safety
/// `model` must be a valid handle, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_nspecies(
    model: *const aceuq_model_t,
    out: *mut i32,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        put(out, h.species().len() as i32, "out")
    })
}

/// Index of a species name in the model, or an `ACEUQ_STATUS_DATA` error naming the model's
/// species if it is not there.
///
/// # Safety
/// `model` must be a valid handle, `name` a NUL-terminated string, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_species_index(
    model: *const aceuq_model_t,
    name: *const c_char,
    out: *mut i32,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        // SAFETY: caller contract.
        let n = unsafe { cstr(name, "species name") }?;
        match h.species().iter().position(|s| s == n) {
            Some(i) => put(out, i as i32, "out"),
            None => fail(
                aceuq_status_t::ACEUQ_STATUS_DATA,
                format!(
                    "species '{n}' is not in the model (model species: {})",
                    h.species().join(" ")
                ),
            ),
        }
    })
}

/// Copy the name of species `index` into `buf` (NUL-terminated; `len` bytes available).
///
/// # Safety
/// `model` must be a valid handle; `buf` must have room for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_species_name(
    model: *const aceuq_model_t,
    index: i32,
    buf: *mut c_char,
    len: usize,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let Some(name) = usize::try_from(index).ok().and_then(|i| h.species().get(i)) else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!("species index {index} out of range"),
            );
        };
        if buf.is_null() || len < name.len() + 1 {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                "buffer for the species name is NULL or too small",
            );
        }
        // SAFETY: buf has len >= name.len() + 1 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), buf.cast::<u8>(), name.len());
            *buf.add(name.len()) = 0;
        }
        Ok(())
    })
}

/// What kind of potential the handle holds: `*out` = 0 for an aceuq model (`*.aceuq`), 1 for a
/// pacemaker potential (`.ace`, `.yace`, `.yaml`), which has energies and forces and, with an
/// active-set inverse, the `gamma` grade only.
///
/// # Safety
/// `model` must be a valid handle, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_format(
    model: *const aceuq_model_t,
    out: *mut i32,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        put(out, matches!(h.kind, Kind::Pace(_)) as i32, "out")
    })
}

/// Largest cutoff of the model over all species pairs (Å): the neighbour list must reach it.
///
/// # Safety
/// `model` must be a valid handle, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_cutoff(
    model: *const aceuq_model_t,
    out: *mut f64,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        put(out, h.max_cutoff(), "out")
    })
}

/// Method id of a method name (`gamma`, `gamma_local`, `ensemble`, `distance`, `gp`).
///
/// # Safety
/// `name` must be a NUL-terminated string, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_method_t_from_name(
    name: *const c_char,
    out: *mut i32,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let n = unsafe { cstr(name, "method name") }?;
        match Method::from_name(n) {
            Some(m) => put(out, m.id() as i32, "out"),
            None => fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!(
                    "unknown uncertainty method '{n}' (known: {})",
                    Method::known()
                ),
            ),
        }
    })
}

/// Whether the model carries method `method`: `*out` = 1 if yes, 0 if not.
///
/// # Safety
/// `model` must be a valid handle, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_has_method(
    model: *const aceuq_model_t,
    method: i32,
    out: *mut i32,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let Some(m) = aceuq_method_t::from_i32(method) else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!("method id {method} out of range"),
            );
        };
        put(out, h.methods().contains(&m) as i32, "out")
    })
}

/// Energies, `dE_i/dr_ij` for every neighbour entry and, if requested, per-atom uncertainties
/// for the atoms of `sys->ilist`.
///
/// # Safety
/// `model` must be a valid handle used by this thread only; `sys` and `res` must point to valid
/// structs whose arrays have the documented sizes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_compute(
    model: *mut aceuq_model_t,
    sys: *const aceuq_system_t,
    res: *const aceuq_results_t,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle_mut(model) }?;
        // SAFETY: caller contract.
        let (sys, res) = unsafe {
            (
                sys.as_ref().ok_or(Failure(
                    aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                    "system is NULL".into(),
                ))?,
                res.as_ref().ok_or(Failure(
                    aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                    "results is NULL".into(),
                ))?,
            )
        };
        compute(h, sys, res)
    })
}

fn compute(
    h: &mut aceuq_model_t,
    sys: &aceuq_system_t,
    res: &aceuq_results_t,
) -> Result<(), Failure> {
    let bad = |m: String| Failure(aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT, m);
    if sys.nlocal < 0 || sys.nall < sys.nlocal || sys.inum < 0 || sys.inum > sys.nlocal {
        return Err(bad(format!(
            "inconsistent sizes: nlocal {} nall {} inum {}",
            sys.nlocal, sys.nall, sys.inum
        )));
    }
    let (nlocal, nall, inum) = (sys.nlocal as usize, sys.nall as usize, sys.inum as usize);
    // SAFETY (all slices below): sizes as documented on aceuq_system_t / aceuq_results_t.
    let x = unsafe { slice(sys.x, 3 * nall, "x") }?;
    let species = unsafe { slice(sys.species, nall, "species") }?;
    let tag = if sys.tag.is_null() {
        None
    } else {
        Some(unsafe { slice(sys.tag, nall, "tag") }?)
    };
    let ilist = unsafe { slice(sys.ilist, inum, "ilist") }?;
    let offsets = unsafe { slice(sys.offsets, inum + 1, "offsets") }?;
    if offsets[0] != 0 || offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(bad(
            "neighbour offsets must start at 0 and not decrease".into()
        ));
    }
    let nnz = offsets[inum] as usize;
    let neigh = unsafe { slice(sys.neigh, nnz, "neigh") }?;
    if res.fij.is_null() && nnz > 0 {
        return Err(bad("fij is NULL".into()));
    }
    let atoms = Atoms {
        nlocal,
        x,
        species,
        tag,
        ilist,
        offsets,
        neigh,
    };
    atoms.validate(h.species().len())?;
    // Requested uncertainties.
    if res.n_uq < 0 {
        return Err(bad(format!("n_uq is negative ({})", res.n_uq)));
    }
    let n_uq = res.n_uq as usize;
    let methods = unsafe { slice(res.uq_methods, n_uq, "uq_methods") }?;
    let outs = unsafe { slice(res.uq_values, n_uq, "uq_values") }?;
    let mut requested: Vec<(Method, *mut f64)> = Vec::with_capacity(n_uq);
    for (&m, &p) in methods.iter().zip(outs) {
        let Some(m) = aceuq_method_t::from_i32(m) else {
            return Err(bad(format!("uncertainty method id {m} out of range")));
        };
        if p.is_null() {
            return Err(bad(format!("output array for {} is NULL", m.name())));
        }
        if matches!(h.kind, Kind::Pace(_)) {
            // The pacemaker engine names what is missing (an .asi, or a method it cannot give).
        } else if !h.methods().contains(&m) {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_MISSING,
                format!(
                    "the model has no '{}' uncertainty; refit it with the matching `aceuq fit` option",
                    m.name()
                ),
            );
        }
        // The same method twice into the same array is written once.
        if !requested.contains(&(m, p)) {
            requested.push((m, p));
        }
    }
    let n_cols = h.engine().map_or(0, |e| e.ensemble_columns());
    let want_ens = requested.iter().any(|(m, _)| *m == Method::Ensemble);
    let ens_len = if want_ens && n_cols > 0 {
        if res.ens_forces.is_null() {
            return Err(bad(
                "ens_forces is NULL but the ensemble was requested".into()
            ));
        }
        nall * n_cols * 3
    } else {
        0
    };
    // The ensemble's own array is filled by aceuq_ensemble_sigma, not here: it is passed to the
    // engine as a request only, with no array.
    let mut ens_requested = false;
    requested.retain(|&(m, _)| {
        ens_requested |= m == Method::Ensemble;
        m != Method::Ensemble
    });
    let want_cluster = !res.gamma_local_cluster.is_null();
    if want_cluster && !requested.iter().any(|(m, _)| *m == Method::GammaLocal) {
        return Err(bad(
            "gamma_local_cluster is given but gamma_local is not among the requested methods"
                .into(),
        ));
    }
    // Every array written here becomes a `&mut` slice, so no two may overlap (two overlapping
    // mutable slices would be undefined behaviour). Checked as address ranges (start, bytes).
    const F64: usize = std::mem::size_of::<f64>();
    let mut ranges: Vec<(usize, usize, &str)> = requested
        .iter()
        .map(|&(m, p)| (p as usize, nlocal * F64, m.name()))
        .collect();
    if !res.eatom.is_null() {
        ranges.push((res.eatom as usize, nlocal * F64, "eatom"));
    }
    if nnz > 0 {
        ranges.push((res.fij as usize, 3 * nnz * F64, "fij"));
    }
    if ens_len > 0 {
        ranges.push((res.ens_forces as usize, ens_len * F64, "ens_forces"));
    }
    if want_cluster {
        ranges.push((
            res.gamma_local_cluster as usize,
            nlocal * std::mem::size_of::<i32>(),
            "gamma_local_cluster",
        ));
    }
    ranges.retain(|r| r.1 > 0);
    ranges.sort();
    for w in ranges.windows(2) {
        let ((a, n, what_a), (b, _, what_b)) = (w[0], w[1]);
        if a + n > b {
            return Err(bad(format!(
                "the output arrays {what_a} and {what_b} overlap: give each output its own array"
            )));
        }
    }
    // SAFETY (every slice below): sizes as documented on aceuq_results_t; non-NULL where made;
    // no two overlap (checked above).
    let ens_forces: &mut [f64] = if ens_len > 0 {
        unsafe { std::slice::from_raw_parts_mut(res.ens_forces, ens_len) }
    } else {
        &mut []
    };
    let fij: &mut [f64] = if nnz == 0 {
        &mut []
    } else {
        unsafe { std::slice::from_raw_parts_mut(res.fij, 3 * nnz) }
    };
    let eatom = (!res.eatom.is_null() && nlocal > 0)
        .then(|| unsafe { std::slice::from_raw_parts_mut(res.eatom, nlocal) });
    let mut uq: Vec<(Method, &mut [f64])> = requested
        .into_iter()
        .map(|(m, p)| (m, unsafe { std::slice::from_raw_parts_mut(p, nlocal) }))
        .collect();
    if ens_requested {
        uq.push((Method::Ensemble, &mut []));
    }
    let gamma_local_cluster = (want_cluster && nlocal > 0)
        .then(|| unsafe { std::slice::from_raw_parts_mut(res.gamma_local_cluster, nlocal) });
    let mut out = Outputs {
        eatom,
        fij,
        uq,
        ens_forces,
        gamma_local_cluster,
    };
    // Validated above (before the per-method checks, as the old order had it).
    let total = match &mut h.kind {
        Kind::Native(e) => e.step_validated(&atoms, &mut out)?,
        Kind::Pace(p) => p.step(&atoms, &mut out)?,
    };
    // The slices end here; `energy` is written through its pointer (it may lie in another array).
    drop(out);
    if !res.energy.is_null() {
        // SAFETY: non-NULL, one f64.
        unsafe { *res.energy = total };
    }
    Ok(())
}

/// Number of ensemble members of the model (0 if it has no ensemble).
///
/// # Safety
/// `model` must be a valid handle, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_ensemble_size(
    model: *const aceuq_model_t,
    out: *mut i32,
) -> aceuq_status_t {
    // SAFETY: caller contract, passed on.
    unsafe { ensemble_count(model, out, crate::uq::ensemble::Ensemble::n_members) }
}

/// Number of ensemble force columns per atom in `aceuq_results_t::ens_forces`: `n_members - 1`
/// (the forces of the ensemble's spread directions), 0 if the model has no ensemble.
///
/// # Safety
/// `model` must be a valid handle, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_ensemble_columns(
    model: *const aceuq_model_t,
    out: *mut i32,
) -> aceuq_status_t {
    // SAFETY: caller contract, passed on.
    unsafe { ensemble_count(model, out, crate::uq::ensemble::Ensemble::n_directions) }
}

/// `count` of the model's ensemble into `out` (0 without an ensemble).
///
/// # Safety
/// `model` must be a valid handle, `out` writable.
unsafe fn ensemble_count(
    model: *const aceuq_model_t,
    out: *mut i32,
    count: fn(&crate::uq::ensemble::Ensemble) -> usize,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let n = h
            .pot()
            .map_or(0, |p| p.uq.ensemble.as_ref().map_or(0, count));
        put(out, n as i32, "out")
    })
}

/// Calibrated ensemble uncertainty (eV/Å) of the `ilist` atoms from their ensemble force
/// columns (`ens_forces[nlocal][n_columns][3]` as filled by [`aceuq_compute`], ghost
/// contributions already summed onto owners), into `out[nlocal]`.
///
/// # Safety
/// `model` must be a valid handle; `species` holds `nlocal` values, `ilist` `inum`, `ens_forces`
/// `nlocal * n_columns * 3` (may be NULL if that is 0), `out` `nlocal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_ensemble_sigma(
    model: *const aceuq_model_t,
    nlocal: i32,
    species: *const i32,
    inum: i32,
    ilist: *const i32,
    ens_forces: *const f64,
    out: *mut f64,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let Some(ens) = h.pot()?.uq.ensemble.as_ref() else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_MISSING,
                "the model has no ensemble; refit with `aceuq fit --ensemble N`",
            );
        };
        if nlocal < 0 || inum < 0 || inum > nlocal {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!("inconsistent sizes nlocal {nlocal} inum {inum}"),
            );
        }
        let (n, nc) = (nlocal as usize, ens.n_directions());
        // SAFETY (slices): sizes as documented above.
        let species = unsafe { slice(species, n, "species") }?;
        let ilist = unsafe { slice(ilist, inum as usize, "ilist") }?;
        let f = unsafe { slice(ens_forces, n * nc * 3, "ens_forces") }?;
        if out.is_null() && n > 0 {
            return fail(aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");
        }
        let out: &mut [f64] = if n == 0 {
            &mut []
        } else {
            // SAFETY: out holds nlocal values (non-NULL: checked above).
            unsafe { std::slice::from_raw_parts_mut(out, n) }
        };
        Ok(h.engine()?.ensemble_sigma(species, ilist, f, out)?)
    })
}

/// One frame to append to an extended XYZ file (written by rank 0 after gathering).
#[repr(C)]
pub struct aceuq_frame_t {
    /// Number of atoms.
    pub natoms: i32,
    /// Lattice vectors as rows `[3][3]` (Å).
    pub cell: *const f64,
    /// Periodicity along each lattice vector `[3]` (0 or 1).
    pub pbc: *const i32,
    /// Positions `[natoms][3]` (Å).
    pub x: *const f64,
    /// Species index of every atom `[natoms]`: a model species (`0 .. nspecies`), or
    /// `nspecies + k` for `extra_species[k]`.
    pub species: *const i32,
    /// Atom IDs `[natoms]` (written as the integer column `id`; may be NULL).
    pub ids: *const i64,
    /// Extra real per-atom columns: `ncols` names and `ncols` arrays of `natoms` values.
    pub ncols: i32,
    pub col_names: *const *const c_char,
    pub col_values: *const *const f64,
    /// Comment-line entries: `ninfo` keys and values (values written as given, numbers stay numbers).
    pub ninfo: i32,
    pub info_keys: *const *const c_char,
    pub info_values: *const *const c_char,
    /// Element symbols of atoms that are not model species (e.g. LAMMPS types mapped to `NULL`
    /// under `pair_style hybrid`), so that a frame holds the whole structure: `nextra_species`
    /// names, species index `nspecies + k` is `extra_species[k]`. `0` and NULL if every atom is
    /// a model species (a frame initialised as `{...}` without these fields).
    pub nextra_species: i32,
    pub extra_species: *const *const c_char,
}

/// Append one frame to an extended XYZ file (created if missing), all or nothing. The frame is
/// formatted in memory and written with a single append and an fsync under an exclusive
/// advisory lock (`flock`), so several processes may append to one file and readers see whole
/// frames. If the write fails (a full disk), the file is cut back to its previous length and
/// the `ACEUQ_STATUS_IO` message says it is unchanged. A journal, `FILE.aceuq-journal`, exists
/// while an append is in progress: if the process is killed mid-append, aceuq readers stop
/// before the incomplete frame and the next append cuts exactly it off. A file whose last frame
/// is incomplete for any other reason is never cut: the append fails (`ACEUQ_STATUS_IO`, naming
/// the file and line) and leaves the file as it is.
///
/// # Safety
/// `model` must be a valid handle, `path` a NUL-terminated string, `frame` a valid frame whose
/// arrays have the documented sizes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_append_frame(
    model: *const aceuq_model_t,
    path: *const c_char,
    frame: *const aceuq_frame_t,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        // SAFETY: caller contract.
        let path = unsafe { cstr(path, "path") }?;
        // SAFETY: caller contract.
        let fr = unsafe { frame.as_ref() }.ok_or(Failure(
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
            "frame is NULL".into(),
        ))?;
        if fr.natoms < 0 || fr.ncols < 0 || fr.ninfo < 0 {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                "negative count in frame",
            );
        }
        let n = fr.natoms as usize;
        // SAFETY (slices): sizes as documented on aceuq_frame_t.
        let cell = unsafe { slice(fr.cell, 9, "cell") }?;
        let pbc = unsafe { slice(fr.pbc, 3, "pbc") }?;
        let x = unsafe { slice(fr.x, 3 * n, "x") }?;
        let species = unsafe { slice(fr.species, n, "species") }?;
        if fr.nextra_species < 0 {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                "negative nextra_species in frame",
            );
        }
        let extra_ptrs = unsafe {
            slice(
                fr.extra_species,
                fr.nextra_species as usize,
                "extra_species",
            )
        }?;
        let mut extra = Vec::with_capacity(extra_ptrs.len());
        for &p in extra_ptrs {
            let name = unsafe { cstr(p, "extra species name") }?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return fail(
                    aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                    format!("extra species name {name:?} is not an element symbol"),
                );
            }
            extra.push(name);
        }
        let model_species = h.species();
        let mut symbols = Vec::with_capacity(n);
        for &sp in species {
            let k = usize::try_from(sp).ok();
            let name = k
                .and_then(|k| model_species.get(k).map(|s| s.as_str()))
                .or_else(|| {
                    k.and_then(|k| k.checked_sub(model_species.len()))
                        .and_then(|e| extra.get(e).copied())
                });
            let Some(name) = name else {
                return fail(
                    aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                    format!(
                        "species index {sp} out of range ({} model species, {} extra)",
                        model_species.len(),
                        extra.len()
                    ),
                );
            };
            symbols.push(name);
        }
        let ids = if fr.ids.is_null() {
            None
        } else {
            Some(unsafe { slice(fr.ids, n, "ids") }?)
        };
        let names = unsafe { slice(fr.col_names, fr.ncols as usize, "col_names") }?;
        let vals = unsafe { slice(fr.col_values, fr.ncols as usize, "col_values") }?;
        let mut columns = Vec::with_capacity(names.len());
        for (&nm, &v) in names.iter().zip(vals) {
            let nm = unsafe { cstr(nm, "column name") }?;
            let v = unsafe { slice(v, n, "column values") }?;
            columns.push((nm, v));
        }
        let keys = unsafe { slice(fr.info_keys, fr.ninfo as usize, "info_keys") }?;
        let values = unsafe { slice(fr.info_values, fr.ninfo as usize, "info_values") }?;
        let mut info = Vec::with_capacity(keys.len());
        for (&k, &v) in keys.iter().zip(values) {
            let k = unsafe { cstr(k, "info key") }?;
            let v = unsafe { cstr(v, "info value") }?;
            info.push((k, v));
        }
        let positions: Vec<[f64; 3]> = x.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
        let frame = crate::io::extxyz::AppendFrame {
            cell: [
                [cell[0], cell[1], cell[2]],
                [cell[3], cell[4], cell[5]],
                [cell[6], cell[7], cell[8]],
            ],
            pbc: [pbc[0] != 0, pbc[1] != 0, pbc[2] != 0],
            symbols: &symbols,
            positions: &positions,
            ids,
            columns: &columns,
            info: &info,
        };
        crate::io::extxyz::append_frame(Path::new(path), &frame).map_err(Error::from)?;
        Ok(())
    })
}

/// Check ahead of time that [`aceuq_append_frame`] can append to `path` as far as the file's
/// content goes: `ACEUQ_STATUS_IO` (naming the file and line) if its last frame is incomplete
/// for a reason other than a killed aceuq append (which the next append undoes), or if it is no
/// XYZ at all (its first line is not an atom count); OK for a missing or empty file and for
/// whole frames. Read-only; whether the file and its folder are
/// writable is not checked here. A file this process has appended to, or one unchanged since
/// this check last passed on it, is not read again.
///
/// # Safety
/// `path` must be a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_check_append_file(path: *const c_char) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let path = unsafe { cstr(path, "path") }?;
        crate::io::extxyz::check_appendable(Path::new(path)).map_err(Error::from)?;
        Ok(())
    })
}

/// Statistical cutoffs of `method` for species `species` stored by `aceuq calibrate`: the lower
/// (worth labelling) and upper (unstable) uncertainty cutoffs. `ACEUQ_STATUS_MISSING` if the
/// model has no calibration for them.
///
/// # Safety
/// `model` must be a valid handle, `lower` and `upper` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_uq_cutoffs(
    model: *const aceuq_model_t,
    method: i32,
    species: i32,
    lower: *mut f64,
    upper: *mut f64,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let Some(m) = aceuq_method_t::from_i32(method) else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!("method id {method} out of range"),
            );
        };
        let Some(sp) = usize::try_from(species)
            .ok()
            .filter(|&s| s < h.species().len())
        else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!("species index {species} out of range"),
            );
        };
        match h.stored_calibration(m, sp, None)?.map(|c| (c.u_c, c.u_max)) {
            Some((lo, hi)) => {
                put(lower, lo, "lower")?;
                put(upper, hi, "upper")
            }
            None if matches!(h.kind, Kind::Pace(_)) => fail(
                aceuq_status_t::ACEUQ_STATUS_MISSING,
                format!(
                    "this pacemaker potential has no calibrated cutoffs for '{}' of {}: run \
                     `aceuq calibrate --model pot.yaml --active-set pot.asi --valid labelled.xyz \
                     --pool-size N` and give the file it writes after the .asi (pair_coeff * * \
                     pot.yaml pot.asi pot.cutoffs.toml Elem ...), or give numbers for lower/upper",
                    m.name(),
                    h.species()[sp]
                ),
            ),
            None => fail(
                aceuq_status_t::ACEUQ_STATUS_MISSING,
                format!(
                    "the model has no calibrated cutoffs for '{}' of species {}: run `aceuq calibrate` on it, or give numbers for lower/upper",
                    m.name(),
                    h.species()[sp]
                ),
            ),
        }
    })
}

/// The frame rule of the watch's `upper frame`: over `n` atoms (model species `species[i]`, -1 to
/// skip an atom; `values[i]` their uncertainty of `method`), `*log_calm` = the sum of
/// `ln(1 - P(e > e_max | u))` under each species' calibrated error scale s(u) (the conditional
/// upper rule of `aceuq calibrate`), so that `1 - exp(sum)` is the probability that some atom
/// errs above e_max (atoms independent); `*p_halt` is the calibration's halting probability
/// (halt when `1 - exp(sum) >= p_halt`; sums of several ranks add): the smallest over the
/// model's species with a fitted error scale, whatever atoms are given, so that every MPI rank
/// compares with the same number. A NaN value gives a NaN sum.
///
/// `ACEUQ_STATUS_MISSING` if a species present has no fitted error scale for `method` (not
/// calibrated, or with the seeds' ratio rule); `ACEUQ_STATUS_INVALID_ARGUMENT` for a method or
/// species out of range, `n < 0`, or NULL arrays with `n > 0`.
///
/// # Safety
/// `model` must be a valid handle; `species` and `values` hold `n` values (may be NULL if `n`
/// is 0); `log_calm` and `p_halt` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_uq_frame_log_calm(
    model: *const aceuq_model_t,
    method: i32,
    n: i32,
    species: *const i32,
    values: *const f64,
    log_calm: *mut f64,
    p_halt: *mut f64,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let m = method_arg(method)?;
        let Ok(n) = usize::try_from(n) else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!("n = {n} is negative"),
            );
        };
        // SAFETY (slices): n values each, as documented.
        let species = unsafe { slice(species, n, "species") }?;
        let values = unsafe { slice(values, n, "values") }?;
        let ns = h.species().len();
        let mut conds: Vec<Option<&crate::stats::upper::ConditionalUpper>> = vec![None; ns];
        for s in 0..ns {
            conds[s] = h
                .stored_calibration(m, s, None)?
                .and_then(|c| c.conditional.as_ref());
        }
        let mut sum = 0.0;
        for (&sp, &v) in species.iter().zip(values) {
            if sp < 0 {
                continue;
            }
            let s = species_arg(h, sp)?;
            let Some(c) = conds[s] else {
                return fail(
                    aceuq_status_t::ACEUQ_STATUS_MISSING,
                    format!(
                        "the calibration of '{}' for {} has no fitted error scale s(u) (not \
                         calibrated, or with --upper-rule ratio; `aceuq calibrate` with the \
                         default upper rule fits one)",
                        m.name(),
                        h.species()[s]
                    ),
                );
            };
            sum += c.log_calm(v);
        }
        let ph = crate::stats::upper::frame_p_halt(conds.iter().copied()).unwrap_or(0.5);
        put(log_calm, sum, "log_calm")?;
        put(p_halt, ph, "p_halt")
    })
}

/// The question `method`'s fitted error relation answers for species `species`: `*e_max`, the
/// force error (eV/Å) whose probability P(e > e_max | u) it gives, and `*p_halt`, the
/// probability at which that species' upper cutoff is placed (as calibrated: `aceuq calibrate
/// --max-error`, `--p-halt`). The watch's `upper vote` seats the largest group of jurors that
/// answer the same question for every species of the run.
/// `ACEUQ_STATUS_MISSING` without a fitted error scale, as `aceuq_model_uq_frame_log_calm`;
/// `ACEUQ_STATUS_INVALID_ARGUMENT` for a method or species out of range.
///
/// # Safety
/// `model` must be a valid handle; `e_max` and `p_halt` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_uq_error_limit(
    model: *const aceuq_model_t,
    method: i32,
    species: i32,
    e_max: *mut f64,
    p_halt: *mut f64,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let m = method_arg(method)?;
        let s = species_arg(h, species)?;
        // Both outputs or neither.
        for (p, what) in [(e_max, "e_max"), (p_halt, "p_halt")] {
            if p.is_null() {
                return fail(
                    aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                    format!("{what} is NULL"),
                );
            }
        }
        match h
            .stored_calibration(m, s, None)?
            .and_then(|c| c.conditional.as_ref())
        {
            Some(c) => {
                put(e_max, c.e_max, "e_max")?;
                put(p_halt, c.p_halt, "p_halt")
            }
            None => fail(
                aceuq_status_t::ACEUQ_STATUS_MISSING,
                format!(
                    "the calibration of '{}' for {} has no fitted error scale s(u) (not \
                     calibrated, or with --upper-rule ratio; `aceuq calibrate` with the default \
                     upper rule fits one)",
                    m.name(),
                    h.species()[s]
                ),
            ),
        }
    })
}

/// The fewest atoms of species `species` that can make the frame rule of `method` halt (see
/// [`aceuq_model_uq_frame_log_calm`], at its p_halt): 1 when one atom can, more for a method
/// whose uncertainty saturates below its upper cutoff (a GP: the atoms at the supremum whose
/// probabilities together reach p_halt) or whose error trend reaches the error limit only beyond
/// 20x the calibration's largest uncertainty (the atoms at 20x), +inf when no number can. The watch compares it with the atoms it watches, to warn
/// when an entry without an upper cutoff cannot halt the run through its frames either.
/// `ACEUQ_STATUS_MISSING` without a fitted error scale, as `aceuq_model_uq_frame_log_calm`.
///
/// # Safety
/// `model` must be a valid handle; `atoms` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_uq_frame_atoms_to_halt(
    model: *const aceuq_model_t,
    method: i32,
    species: i32,
    atoms: *mut f64,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let m = method_arg(method)?;
        let s = species_arg(h, species)?;
        let Some(c) = h
            .stored_calibration(m, s, None)?
            .and_then(|c| c.conditional.as_ref())
        else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_MISSING,
                format!(
                    "the calibration of '{}' for {} has no fitted error scale s(u)",
                    m.name(),
                    h.species()[s]
                ),
            );
        };
        // The p_halt the watch compares with (species s has a relation, so there is one).
        let relations = (0..h.species().len()).map(|k| {
            h.stored_calibration(m, k, None)
                .ok()
                .flatten()
                .and_then(|c| c.conditional.as_ref())
        });
        let p_halt = crate::stats::upper::frame_p_halt(relations).unwrap_or(c.p_halt);
        put(atoms, c.atoms_to_halt(p_halt), "atoms")
    })
}

/// Number of `gamma_local` clusters of species `species` (the clusters of its clustered local
/// active sets; cluster indices are `0 .. *out`). `ACEUQ_STATUS_MISSING` if the model has no
/// `gamma_local`; `ACEUQ_STATUS_INVALID_ARGUMENT` for a species index out of range.
///
/// # Safety
/// `model` must be a valid handle, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_gamma_local_clusters(
    model: *const aceuq_model_t,
    species: i32,
    out: *mut i32,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let sp = species_arg(h, species)?;
        put(out, gamma_local_clusters(h, sp)? as i32, "out")
    })
}

/// Statistical cutoffs of `method` for the atoms of species `species` that `gamma_local` assigns
/// to cluster `cluster` (as returned in `aceuq_results_t::gamma_local_cluster`): the cluster's own
/// cutoffs if `aceuq calibrate` stored them (gamma_local only), otherwise the species-level ones
/// of [`aceuq_model_uq_cutoffs`] (a cluster with too few calibration atoms has none; other
/// methods have no per-cluster cutoffs). `*per_cluster` (may be NULL) is set to 1 if the
/// cluster's own cutoffs were returned, 0 for the species-level fallback.
///
/// `ACEUQ_STATUS_INVALID_ARGUMENT` for a method, species or cluster index out of range (cluster:
/// `0 .. aceuq_model_gamma_local_clusters`); `ACEUQ_STATUS_MISSING` if the model has no
/// `gamma_local` or no calibration to fall back to.
///
/// # Safety
/// `model` must be a valid handle, `lower` and `upper` writable, `per_cluster` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_uq_cluster_cutoffs(
    model: *const aceuq_model_t,
    method: i32,
    species: i32,
    cluster: i32,
    lower: *mut f64,
    upper: *mut f64,
    per_cluster: *mut i32,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let m = method_arg(method)?;
        let sp = species_arg(h, species)?;
        let n = gamma_local_clusters(h, sp)?;
        let Some(c) = usize::try_from(cluster).ok().filter(|&c| c < n) else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!(
                    "cluster index {cluster} out of range: species {} has {n} gamma_local clusters (0 to {})",
                    h.species()[sp],
                    n.saturating_sub(1)
                ),
            );
        };
        let stored = match &h.kind {
            Kind::Native(e) => e.potential().stored_cluster_cutoffs(m, sp, c),
            Kind::Pace(p) => p.stored_cluster_cutoffs(m, sp, c),
        };
        match stored {
            Some((lo, hi, own)) => {
                put(lower, lo, "lower")?;
                put(upper, hi, "upper")?;
                if !per_cluster.is_null() {
                    put(per_cluster, own as i32, "per_cluster")?;
                }
                Ok(())
            }
            None => fail(
                aceuq_status_t::ACEUQ_STATUS_MISSING,
                format!(
                    "the model has no calibrated cutoffs for '{}' of species {} (cluster {c}): run `aceuq calibrate` on it, or give numbers for lower/upper",
                    m.name(),
                    h.species()[sp]
                ),
            ),
        }
    })
}

/// Which text [`aceuq_model_uq_calibration_note`] returns.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum aceuq_note_t {
    /// One line: "no upper cutoff: <why>" if the entry has none, then its caveats, separated
    /// by "; ".
    ACEUQ_NOTE_SUMMARY = 0,
    /// Why the entry has no upper (halting) cutoff, e.g. the method saturates below the error
    /// limit; empty if it has one.
    ACEUQ_NOTE_NO_UPPER = 1,
    /// The caveats `aceuq calibrate` stored (few atoms, no acceptable fit, an extrapolated
    /// upper cutoff, ...) other than the missing upper cutoff, separated by "; ".
    ACEUQ_NOTE_CAVEATS = 2,
}

/// What to know about the stored calibration of `method` for species `species`, as one line of
/// UTF-8 text (empty if there is nothing to say); `part` ([`aceuq_note_t`]) selects the summary,
/// the reason why there is no upper cutoff (the cutoffs functions then give +inf), or the
/// caveats. `cluster` -1 is the species-level entry of [`aceuq_model_uq_cutoffs`]; a cluster
/// index (`0 .. aceuq_model_gamma_local_clusters`) is the entry behind
/// [`aceuq_model_uq_cluster_cutoffs`] (the cluster's own, else the species').
///
/// Like `snprintf`: at most `len - 1` bytes (cut at a character boundary) and a NUL are written
/// to `buf`; `*needed` (may be NULL) receives the size of the whole text with its NUL, so a
/// text was cut if `*needed > len`. `buf` may be NULL when `len` is 0 (to ask for the size).
///
/// `ACEUQ_STATUS_INVALID_ARGUMENT` for an unknown `part`, a method, species or cluster index
/// out of range, or a NULL `buf` with `len` > 0; `ACEUQ_STATUS_MISSING` if the model has no
/// calibration for them (or, with a cluster, no `gamma_local`).
///
/// # Safety
/// `model` must be a valid handle, `buf` NULL or writable for `len` bytes, `needed` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_uq_calibration_note(
    model: *const aceuq_model_t,
    method: i32,
    species: i32,
    cluster: i32,
    part: i32,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        let m = method_arg(method)?;
        let sp = species_arg(h, species)?;
        let part = match part {
            0 => aceuq_note_t::ACEUQ_NOTE_SUMMARY,
            1 => aceuq_note_t::ACEUQ_NOTE_NO_UPPER,
            2 => aceuq_note_t::ACEUQ_NOTE_CAVEATS,
            _ => {
                return fail(
                    aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                    format!(
                        "note part {part} out of range (0 summary, 1 no-upper reason, 2 caveats)"
                    ),
                );
            }
        };
        let cl = if cluster == -1 {
            None
        } else {
            let n = gamma_local_clusters(h, sp)?;
            let Some(c) = usize::try_from(cluster).ok().filter(|&c| c < n) else {
                return fail(
                    aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                    format!(
                        "cluster index {cluster} out of range: species {} has {n} gamma_local clusters (0 to {}; -1 for the species-level entry)",
                        h.species()[sp],
                        n.saturating_sub(1)
                    ),
                );
            };
            Some(c)
        };
        text_buf_arg(buf, len)?;
        let Some(cal) = h.stored_calibration(m, sp, cl)? else {
            return fail(
                aceuq_status_t::ACEUQ_STATUS_MISSING,
                format!(
                    "the model has no calibrated cutoffs for '{}' of species {}: run `aceuq calibrate` on it",
                    m.name(),
                    h.species()[sp]
                ),
            );
        };
        let text = match part {
            aceuq_note_t::ACEUQ_NOTE_SUMMARY => crate::potential::calibration_note(cal),
            aceuq_note_t::ACEUQ_NOTE_NO_UPPER => {
                crate::potential::no_upper_reason(cal).unwrap_or_default()
            }
            aceuq_note_t::ACEUQ_NOTE_CAVEATS => {
                crate::potential::calibration_caveats(cal).join("; ")
            }
        };
        // SAFETY: buf is non-NULL when len > 0 (checked above); caller contract.
        unsafe { put_text(&text, buf, len, needed) }
    })
}

/// A text buffer argument: NULL only with `len` 0 (asking for the size).
fn text_buf_arg(buf: *mut c_char, len: usize) -> Result<(), Failure> {
    if buf.is_null() && len > 0 {
        return fail(
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
            format!("buf is NULL but len is {len} (pass len 0 to ask for the size only)"),
        );
    }
    Ok(())
}

/// `text` into a caller's buffer like `snprintf`: at most `len - 1` bytes (cut at a character
/// boundary) and a NUL; `*needed` (if not NULL) the size of the whole text with its NUL. A NUL
/// inside the text is written as a space (C would stop reading there).
///
/// # Safety
/// `buf` writable for `len` bytes (non-NULL when `len > 0`), `needed` NULL or writable.
unsafe fn put_text(
    text: &str,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> Result<(), Failure> {
    let text = text.replace('\0', " ");
    if !needed.is_null() {
        put(needed, text.len() + 1, "needed")?;
    }
    if len > 0 {
        let mut n = text.len().min(len - 1);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: buf is non-NULL and writable for len > n bytes (function contract).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    Ok(())
}

/// The halting rule `aceuq calibrate` chose for the watch's `upper auto`: `*vote` (may be NULL)
/// is 1 when jurors halt: the vote of the jury (`gamma`, `ensemble`, `distance`, `gp`, those with
/// a fitted error scale: an atom above the upper cutoff of any of them, or the frame rules of at
/// least two at p_halt), or one juror's own frame rule (a jury of one: an atom above its upper
/// cutoff, or its frame rule at p_halt); 0 for the frame rule of the watched quantity, which is
/// also the answer when the calibration made no choice (an older calibration, fewer than two
/// jurors, a pacemaker potential). `*jury` (may be NULL) receives the methods that sit, bit
/// `1 << id` set for each method id ([`aceuq_method_t`]; the jury scored for the frame rule; 0
/// when no choice was made): the watch halts by jurors by default only with exactly those. `buf`, `len`, `needed` receive one line saying why, as
/// for [`aceuq_model_uq_calibration_note`] (empty when no choice was made).
///
/// `ACEUQ_STATUS_INVALID_ARGUMENT` for a NULL `buf` with `len` > 0.
///
/// # Safety
/// `model` must be a valid handle, `vote` and `jury` NULL or writable, `buf` NULL or writable
/// for `len` bytes, `needed` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aceuq_model_halt_rule(
    model: *const aceuq_model_t,
    vote: *mut i32,
    jury: *mut i32,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> aceuq_status_t {
    guard(|| {
        // SAFETY: caller contract.
        let h = unsafe { handle(model) }?;
        text_buf_arg(buf, len)?;
        let rule = match &h.kind {
            Kind::Native(e) => e.potential().uq.halt_rule.as_ref(),
            Kind::Pace(_) => None,
        };
        if !vote.is_null() {
            put(vote, i32::from(rule.is_some_and(|r| r.votes())), "vote")?;
        }
        if !jury.is_null() {
            let mask = rule.map_or(0, |r| {
                r.sitting()
                    .iter()
                    .filter_map(|n| Method::from_name(n))
                    .fold(0i32, |acc, m| acc | 1 << (m as i32))
            });
            put(jury, mask, "jury")?;
        }
        let text = rule.map(|r| r.note()).unwrap_or_default();
        // SAFETY: buf is non-NULL when len > 0 (checked above); caller contract.
        unsafe { put_text(&text, buf, len, needed) }
    })
}

/// The method of a C method id, or an invalid-argument failure.
fn method_arg(method: i32) -> Result<Method, Failure> {
    aceuq_method_t::from_i32(method).ok_or_else(|| {
        Failure(
            aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
            format!("method id {method} out of range"),
        )
    })
}

/// A species index of the model, or an invalid-argument failure.
fn species_arg(h: &aceuq_model_t, species: i32) -> Result<usize, Failure> {
    usize::try_from(species)
        .ok()
        .filter(|&s| s < h.species().len())
        .ok_or_else(|| {
            Failure(
                aceuq_status_t::ACEUQ_STATUS_INVALID_ARGUMENT,
                format!(
                    "species index {species} out of range (the model has {})",
                    h.species().len()
                ),
            )
        })
}

/// Number of gamma_local clusters of species `sp` (in range), or a missing-estimator failure.
fn gamma_local_clusters(h: &aceuq_model_t, sp: usize) -> Result<usize, Failure> {
    let n = match &h.kind {
        Kind::Native(e) => e.potential().uq.gamma_local_clusters(sp),
        Kind::Pace(p) => p.gamma_local_clusters(sp),
    };
    n.ok_or_else(|| {
        Failure(
            aceuq_status_t::ACEUQ_STATUS_MISSING,
            format!(
                "the model has no '{}' uncertainty (no clusters); refit it with `aceuq fit {}`",
                Method::GammaLocal.name(),
                Method::GammaLocal.fit_option()
            ),
        )
    })
}

#[cfg(test)]
mod tests;
