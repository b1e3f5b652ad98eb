//! `aceuq._native`: the Python face of the aceuq crate. A [`Model`] loads a `*.aceuq` file and
//! computes energies, forces, virial, per-atom energies and every stored uncertainty of one
//! structure (neighbour lists built inside, periodic or not); [`cli`] runs the `aceuq` command
//! line in-process. The ASE calculator and the workflow functions are Python on top of these
//! (python/aceuq/).
//!
//! Arrays cross as little-endian `bytes` of f64 / i64 (numpy's `tobytes()` / `frombuffer`), so
//! the extension needs no numpy headers and one build serves every CPython >= 3.9 (abi3). The
//! numbers are those of `aceuq eval`: the same library functions compute them.

use aceuq::uq::Method;
use aceuq::{Potential, Structure};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;

// Named by its full module path, so that pickle (a process pool's result) finds it again.
create_exception!(
    aceuq._native,
    AceuqError,
    PyException,
    "An error reported by the aceuq library (bad model file, species not in the model, atoms too close, ...)."
);

fn lib_err(e: impl std::fmt::Display) -> PyErr {
    AceuqError::new_err(e.to_string())
}

fn f64_bytes<'py>(py: Python<'py>, v: impl IntoIterator<Item = f64>) -> Bound<'py, PyBytes> {
    let b: Vec<u8> = v.into_iter().flat_map(f64::to_le_bytes).collect();
    PyBytes::new(py, &b)
}

fn method(name: &str) -> PyResult<Method> {
    Method::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown uncertainty method '{name}' (known: {})",
            Method::known()
        ))
    })
}

/// What `Model.__reduce__` returns: the restore function and its arguments (path, file content).
type Reduced<'py> = (Bound<'py, PyAny>, (PathBuf, Bound<'py, PyBytes>));

/// A fitted aceuq potential with its uncertainty estimators and calibrated cutoffs.
#[pyclass(module = "aceuq._native", frozen)]
struct Model {
    pot: Potential,
    path: PathBuf,
}

impl Model {
    fn species_index(&self, species: &str) -> PyResult<usize> {
        self.pot.model.species_index(species).ok_or_else(|| {
            PyValueError::new_err(format!(
                "species '{species}' is not in the model (model species: {})",
                self.pot.model.species.join(", ")
            ))
        })
    }

    fn structure(
        &self,
        symbols: Vec<String>,
        positions: &[u8],
        cell: Option<[[f64; 3]; 3]>,
        pbc: [bool; 3],
    ) -> PyResult<Structure> {
        let n = symbols.len();
        if positions.len() != 24 * n {
            return Err(PyValueError::new_err(format!(
                "positions: {} bytes for {n} atoms (expected {} float64 values)",
                positions.len(),
                3 * n
            )));
        }
        let x: Vec<f64> = positions
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        if let Some((i, sym)) = symbols
            .iter()
            .enumerate()
            .find(|(_, s)| self.pot.model.species_index(s).is_none())
        {
            return Err(AceuqError::new_err(format!(
                "atoms[{i}] is {sym}, a species the model does not have (model species: {})",
                self.pot.model.species.join(", ")
            )));
        }
        if pbc.iter().any(|&p| p) && cell.is_none() {
            return Err(PyValueError::new_err(
                "periodic boundary conditions need a cell",
            ));
        }
        // ASE's Atoms(pbc=True) without a cell has zero lattice vectors: say so, rather than
        // "denser than any matter" from the volume check below.
        if let Some(c) = &cell
            && let Some(k) = (0..3).find(|&k| pbc[k] && c[k].iter().all(|&x| x == 0.0))
        {
            return Err(AceuqError::new_err(format!(
                "the atoms are periodic along lattice vector {k} ({}), but that vector is zero: \
                 give them a cell (atoms.cell = ..., or atoms.center(vacuum=...)) or make that \
                 direction non-periodic (atoms.pbc)",
                ["a", "b", "c"][k]
            )));
        }
        let s = Structure {
            cell,
            pbc,
            positions: x.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(),
            symbols,
            ..Default::default()
        };
        if let Some(p) = s.limits_problem_naming(&|i| format!("atoms[{i}]")) {
            return Err(AceuqError::new_err(p.message));
        }
        Ok(s)
    }
}

/// A model error as ASE users count atoms: `atoms[i]`, zero-based (the library's messages name
/// atoms one-based, as extended XYZ files and LAMMPS do).
fn model_error(e: aceuq::model::ModelError) -> String {
    use aceuq::model::ModelError;
    use aceuq::neighbors::NeighborError as N;
    match e {
        ModelError::Neighbors(N::CoincidentAtoms {
            atom,
            other,
            distance,
            ..
        }) => format!(
            "atoms[{}] and atoms[{}] are at the same position (distance {distance:.3e} Å); remove \
             one of them (del atoms[{}])",
            atom - 1,
            other - 1,
            other - 1
        ),
        ModelError::Neighbors(N::CoincidentImage { atom, distance, .. }) => format!(
            "atoms[{}] is at the same position as its own periodic image (distance \
             {distance:.3e} Å): a periodic cell vector is too short; check atoms.cell and \
             atoms.pbc",
            atom - 1
        ),
        ModelError::Neighbors(N::TooManyNeighbors {
            atom,
            cutoff,
            count,
            ..
        }) => format!(
            "atoms[{}] has more than {} neighbours within the cutoff {cutoff} Å (at least \
             {count}); no matter is this dense: check the positions and atoms.cell (Å)",
            atom - 1,
            aceuq::structure::limits::MAX_NEIGHBORS
        ),
        e => e.to_string(),
    }
}

/// `f()`, with an unwind of `aceuq::progress::Stopped` (a stop requested for a command that
/// another Python thread runs, reaching this call's stop points) turned into an error to retry;
/// any other unwind goes on (PyO3 raises PanicException).
fn stopped_is_an_error<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) if p.is::<aceuq::progress::Stopped>() => Err("stopped because a command in this \
             process was interrupted (Ctrl-C); compute again once that command has stopped"
            .to_string()),
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[pymethods]
impl Model {
    /// Load a model file (`*.aceuq`) written by `aceuq fit` / `aceuq calibrate`.
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let pot = Potential::load(&path).map_err(lib_err)?;
        Ok(Model { pot, path })
    }

    /// Pickling (multiprocessing, copies of a calculator): the model travels as its file's
    /// content, so the copy is the model as loaded even if the file has changed or is not on
    /// the receiving machine; `path` stays the name it was loaded from.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let py = slf.py();
        let me = slf.get();
        let bytes = me.pot.to_container().to_bytes();
        let restore = py.import("aceuq._native")?.getattr("_model_from_bytes")?;
        Ok((restore, (me.path.clone(), PyBytes::new(py, &bytes))))
    }

    /// The file the model was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Species (element names) of the model, in the model's order.
    #[getter]
    fn species(&self) -> Vec<String> {
        self.pot.model.species.clone()
    }

    /// Names of the uncertainty methods the model carries (gamma, gamma_local, ensemble,
    /// distance, gp), as `pair_style ace/uq uq` and `aceuq eval` name them.
    #[getter]
    fn methods(&self) -> Vec<&'static str> {
        self.pot.uq.methods().iter().map(|m| m.name()).collect()
    }

    /// The largest interaction cutoff of the model (Å).
    #[getter]
    fn cutoff(&self) -> f64 {
        self.pot.model.max_cutoff()
    }

    /// Number of `gamma_local` clusters of a species (None without clustered active sets).
    fn clusters(&self, species: &str) -> PyResult<Option<usize>> {
        let s = self.species_index(species)?;
        Ok(self.pot.uq.gamma_local_clusters(s))
    }

    /// `(lower, upper)` cutoffs stored by `aceuq calibrate` for `method` and `species`
    /// (`upper` is `inf` when there is no halting cutoff), or None if the method was not
    /// calibrated. With `cluster` (gamma_local): the cluster's own cutoffs when stored, else the
    /// species-level ones, as fix ace/uq/watch uses them; a cluster the species does not have
    /// is a ValueError.
    #[pyo3(signature = (method, species, cluster=None))]
    fn stored_cutoffs(
        &self,
        method: &str,
        species: &str,
        cluster: Option<i64>,
    ) -> PyResult<Option<(f64, f64)>> {
        let (m, s) = (self::method(method)?, self.species_index(species)?);
        let k = self.pot.uq.gamma_local_clusters(s);
        if let Some(c) = cluster
            && (c < 0 || k.is_some_and(|k| c as u64 >= k as u64))
        {
            return Err(PyValueError::new_err(format!(
                "cluster {c} is out of range: the model has {} gamma_local clusters for \
                 {species}, numbered from 0",
                k.unwrap_or(0)
            )));
        }
        Ok(match cluster {
            None => self.pot.stored_cutoffs(m, s),
            Some(c) => self
                .pot
                .stored_cluster_cutoffs(m, s, c as usize)
                .map(|(lo, up, _)| (lo, up)),
        })
    }

    /// What to know about the stored calibration of `method` for `species` in one line (why
    /// there is no upper cutoff, the calibration's caveats); empty if nothing, None if not
    /// calibrated.
    fn calibration_note(&self, method: &str, species: &str) -> PyResult<Option<String>> {
        let (m, s) = (self::method(method)?, self.species_index(species)?);
        Ok(self
            .pot
            .stored_calibration(m, s, None)
            .map(aceuq::potential::calibration_note))
    }

    /// The frame rule of `fix ace/uq/watch ... upper auto`: `(log_calm, p_halt)` with `log_calm`
    /// the sum over the atoms (`symbols`, their `values` of `method`) of `ln(1 - P(e > e_max |
    /// u))` under each species' calibrated error scale s(u), so that `1 - exp(log_calm)` is the
    /// probability that some atom errs above e_max; the frame halts when that reaches `p_halt`
    /// (the smallest over the model's species with a fitted s(u), as the LAMMPS fix uses it).
    /// None if a species present has no fitted s(u) (not calibrated, or the ratio rule).
    fn frame_log_calm(
        &self,
        method: &str,
        symbols: Vec<String>,
        values: Vec<f64>,
    ) -> PyResult<Option<(f64, f64)>> {
        let m = self::method(method)?;
        if symbols.len() != values.len() {
            return Err(PyValueError::new_err(format!(
                "{} symbols but {} values",
                symbols.len(),
                values.len()
            )));
        }
        let mut conds = vec![None; self.pot.model.species.len()];
        for (s, c) in conds.iter_mut().enumerate() {
            *c = self
                .pot
                .stored_calibration(m, s, None)
                .and_then(|c| c.conditional.as_ref());
        }
        let mut sum = 0.0;
        for (sym, &v) in symbols.iter().zip(&values) {
            let Some(c) = conds[self.species_index(sym)?] else {
                return Ok(None);
            };
            sum += c.log_calm(v);
        }
        let p_halt = aceuq::stats::upper::frame_p_halt(conds.iter().copied());
        Ok(p_halt.map(|p| (sum, p)))
    }

    /// The halting rule `aceuq calibrate` chose for the watch's `upper="auto"` (it scored
    /// `gamma`'s frame rule, the vote of a jury and single jurors' own frame rules on its
    /// labelled frames): `(vote, jury, note)`, `vote` True when jurors halt (the vote, or one
    /// juror's frame rule: `jury` is then that one), `jury` the methods that sit; None when the
    /// calibration made no choice (no method besides gamma that can halt, an older calibration:
    /// the frame rule).
    fn halt_rule(&self) -> Option<(bool, Vec<String>, String)> {
        self.pot
            .uq
            .halt_rule
            .as_ref()
            .map(|r| (r.votes(), r.sitting(), r.note()))
    }

    /// The question `method`'s fitted error relation answers for `species`: `(e_max, p_halt)`
    /// as calibrated (P(e > e_max | u), upper cutoff at p_halt); None without a fitted error
    /// scale. The vote seats only jurors that answer the same question.
    fn error_limit(&self, method: &str, species: &str) -> PyResult<Option<(f64, f64)>> {
        let (m, s) = (self::method(method)?, self.species_index(species)?);
        Ok(self
            .pot
            .stored_calibration(m, s, None)
            .and_then(|c| c.conditional.as_ref())
            .map(|c| (c.e_max, c.p_halt)))
    }

    /// The fewest atoms of `species` that can make the frame rule of `method` halt: 1 when one
    /// atom can, more for an uncertainty that saturates below its upper cutoff, inf when none
    /// can; None without a fitted error scale.
    fn frame_atoms_to_halt(&self, method: &str, species: &str) -> PyResult<Option<f64>> {
        let (m, s) = (self::method(method)?, self.species_index(species)?);
        let relation = |k: usize| {
            self.pot
                .stored_calibration(m, k, None)
                .and_then(|c| c.conditional.as_ref())
        };
        // At the p_halt the frame rule uses.
        let p_halt =
            aceuq::stats::upper::frame_p_halt((0..self.pot.model.species.len()).map(relation));
        Ok(relation(s).map(|c| c.atoms_to_halt(p_halt.unwrap_or(c.p_halt))))
    }

    /// Energies, forces, virial and the uncertainties `methods` of one structure.
    ///
    /// `positions`: float64 little-endian bytes, `[n][3]` Å; `cell`: lattice vectors as rows (Å)
    /// or None for a cluster; `pbc`: periodicity along each vector. Returns a dict: `energy`
    /// (eV), `energies` (bytes, `[n]` eV), `forces` (bytes, `[n][3]` eV/Å), `virial` (3x3 list,
    /// eV, `sum r ⊗ f = -stress * volume`), one entry of bytes `[n]` per method, and with
    /// gamma_local `gamma_local_cluster` (bytes of int64 `[n]`).
    #[pyo3(signature = (symbols, positions, cell, pbc, methods))]
    fn compute<'py>(
        &self,
        py: Python<'py>,
        symbols: Vec<String>,
        positions: &[u8],
        cell: Option<[[f64; 3]; 3]>,
        pbc: [bool; 3],
        methods: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let s = self.structure(symbols, positions, cell, pbc)?;
        let methods: Vec<Method> = methods.iter().map(|m| method(m)).collect::<PyResult<_>>()?;
        let pot = &self.pot;
        let data = std::slice::from_ref(&s);
        let run = || -> Result<_, String> {
            let mut ws = aceuq::model::Workspace::new(&pot.model);
            let pred = pot.model.predict(&s, &mut ws).map_err(model_error)?;
            let mut uq = Vec::with_capacity(methods.len());
            let mut clusters = None;
            for &m in &methods {
                if m == Method::GammaLocal {
                    let (mut v, mut c) =
                        pot.gamma_local_per_atom(data).map_err(|e| e.to_string())?;
                    uq.push((m, v.pop().unwrap_or_default()));
                    clusters = c.pop();
                } else {
                    let mut v = pot.per_atom(data, m).map_err(|e| e.to_string())?;
                    uq.push((m, v.pop().unwrap_or_default()));
                }
            }
            Ok((pred, uq, clusters))
        };
        let (pred, uq, clusters) = py
            .detach(|| stopped_is_an_error(run))
            .map_err(AceuqError::new_err)?;
        let out = PyDict::new(py);
        out.set_item("energy", pred.energy)?;
        out.set_item("energies", f64_bytes(py, pred.atom_energies))?;
        out.set_item("forces", f64_bytes(py, pred.forces.into_iter().flatten()))?;
        out.set_item("virial", pred.virial)?;
        for (m, v) in uq {
            out.set_item(m.name(), f64_bytes(py, v))?;
        }
        if let Some(c) = clusters {
            let b: Vec<u8> = c
                .into_iter()
                .flat_map(|k| i64::from(k).to_le_bytes())
                .collect();
            out.set_item("gamma_local_cluster", PyBytes::new(py, &b))?;
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!(
            "aceuq.Model({:?}: species {}, cutoff {} Å, uncertainty {})",
            self.path.display().to_string(),
            self.pot.model.species.join(" "),
            self.pot.model.max_cutoff(),
            if self.pot.uq.methods().is_empty() {
                "none".to_string()
            } else {
                self.methods().join(", ")
            }
        )
    }
}

/// One command at a time per process: the stop request is per process.
static ONE_COMMAND: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run the command line (`argv` with the program name) on a thread of its own while this one
/// waits with the GIL released, checking Python's signals every 50 ms: on Ctrl-C (or any
/// exception a signal handler raises) the command is asked to stop at its next stop point
/// (`aceuq::progress::request_stop`: a progress step, a structure's neighbour list), this waits
/// for it to unwind (still answering signals: a second Ctrl-C says it is still stopping) and
/// raises the exception. A stopped command writes
/// nothing more (outputs are written atomically, so one it was writing is untouched); one that
/// reaches its end first has written its outputs, and the exception is raised all the same, as
/// Python raises KeyboardInterrupt after any call. Commands from several Python threads run one
/// after the other.
fn run_interruptible(py: Python<'_>, argv: Vec<String>) -> PyResult<(i32, Option<String>)> {
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
    // Waiting for another thread's command with the GIL released (that command's caller needs
    // the GIL to check signals), answering signals meanwhile. A poisoned lock only means a
    // command panicked: it guards no data.
    let _one = loop {
        match ONE_COMMAND.try_lock() {
            Ok(guard) => break guard,
            Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                py.detach(|| std::thread::sleep(std::time::Duration::from_millis(20)));
                py.check_signals()?;
            }
        }
    };
    let handle = std::thread::Builder::new()
        .name("aceuq-command".into())
        .spawn(move || catch_unwind(AssertUnwindSafe(|| aceuq::cli::run_from(argv))))
        .map_err(|e| lib_err(format!("could not start the command's thread: {e}")))?;
    let mut interrupted = None;
    while !handle.is_finished() {
        py.detach(|| std::thread::sleep(std::time::Duration::from_millis(50)));
        if let Err(e) = py.check_signals() {
            if interrupted.is_none() {
                eprintln!("interrupted: stopping the command at its next stop point");
                aceuq::progress::request_stop();
                interrupted = Some(e);
            } else {
                eprintln!("interrupted again: the command is still stopping");
            }
        }
    }
    let outcome = py.detach(|| handle.join());
    aceuq::progress::clear_stop();
    match outcome {
        // A bug (its message was printed by the panic hook), even while stopping: PyO3 raises
        // PanicException.
        Ok(Err(payload)) if !payload.is::<aceuq::progress::Stopped>() => resume_unwind(payload),
        Err(payload) => resume_unwind(payload),
        _ if interrupted.is_some() => Err(interrupted.expect("checked just above")),
        Ok(Ok(result)) => Ok(result),
        // Stopped without a request of this call's (cannot happen: one command at a time).
        Ok(Err(_)) => Ok((1, Some("stopped on request".to_string()))),
    }
}

/// Run the `aceuq` command line in this process: `cli(["fit", "--train", ...])` (without the
/// program name). Returns the exit code (0 on success); output goes to this process's stdout and
/// stderr like the command's. Ctrl-C stops the command at its next stop point and raises
/// KeyboardInterrupt (see `run_interruptible`).
#[pyfunction]
fn cli(py: Python<'_>, args: Vec<String>) -> PyResult<i32> {
    let argv: Vec<String> = std::iter::once("aceuq".to_string()).chain(args).collect();
    Ok(run_interruptible(py, argv)?.0)
}

/// `cli` that also returns the message of a failure: `(exit code, message or None)`; the
/// workflow functions put it into their `AceuqError`.
#[pyfunction]
fn cli_with_message(py: Python<'_>, args: Vec<String>) -> PyResult<(i32, Option<String>)> {
    let argv: Vec<String> = std::iter::once("aceuq".to_string()).chain(args).collect();
    run_interruptible(py, argv)
}

/// A model from the content of its file (`Model.__reduce__`'s restore function); `path` names
/// it in messages.
#[pyfunction]
fn _model_from_bytes(path: PathBuf, data: &[u8]) -> PyResult<Model> {
    let c = aceuq::io::container::Container::from_bytes(&path, data).map_err(lib_err)?;
    let pot = Potential::from_container(&path, &c).map_err(lib_err)?;
    Ok(Model { pot, path })
}

/// Check ahead of time that frames can be appended to `path` (the watch's `dump`), as
/// `fix ace/uq/watch` checks its dump file: AceuqError for a file that is no XYZ or whose last
/// frame is incomplete (somebody else's data, never cut), naming what to do.
#[pyfunction]
fn check_appendable(path: PathBuf) -> PyResult<()> {
    aceuq::io::extxyz::check_appendable(&path).map_err(lib_err)
}

/// Append `text` (whole extended XYZ frames) to `path` as the LAMMPS fix appends candidates:
/// whole frames or nothing under a file lock, a killed append undone by the next, a full disk
/// leaving the file unchanged, somebody else's incomplete frame or a file that is no XYZ never
/// appended to (AceuqError saying so and what to do).
#[pyfunction]
fn append_xyz(py: Python<'_>, path: PathBuf, text: String) -> PyResult<()> {
    py.detach(|| aceuq::io::extxyz::append_text(&path, &text))
        .map_err(lib_err)
}

/// The long names of `aceuq <command>`'s switches (options without a value), for the workflow
/// functions' keyword options; None for an unknown command.
#[pyfunction]
fn switches(command: &str) -> Option<Vec<String>> {
    aceuq::cli::switches(command)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(cli, m)?)?;
    m.add_function(wrap_pyfunction!(_model_from_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(cli_with_message, m)?)?;
    m.add_function(wrap_pyfunction!(check_appendable, m)?)?;
    m.add_function(wrap_pyfunction!(append_xyz, m)?)?;
    m.add_function(wrap_pyfunction!(switches, m)?)?;
    m.add("AceuqError", m.py().get_type::<AceuqError>())?;
    // The uncertainty methods' names, in the library's order (one table: `Method::ALL`).
    let methods: Vec<&'static str> = aceuq::uq::Method::ALL.iter().map(|m| m.name()).collect();
    m.add("METHODS", methods)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
