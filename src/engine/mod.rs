//! The MD step: energies, neighbour gradients and per-atom uncertainties of the atoms of one
//! domain (one MPI rank), laid out the way LAMMPS holds them (owned atoms, then ghosts, a full
//! neighbour list), on plain slices.
//!
//! Layer 6. Owns: one step's orchestration (atoms in flight, two-atom lane passes with an ensemble, rows
//! of basis vectors graded in cache-sized blocks, where each result goes). Used by the C ABI
//! (`ffi`), the benchmarks and tests alike; safe Rust throughout. May import potential, error,
//! model, pace, uq, neighbors; it imports nothing above it (ffi, cli). `pace`: the same step for
//! pacemaker potentials.

pub mod pace;

use crate::error::{Error, ErrorKind};
use crate::model::Workspace;
use crate::model::eval::{LaneAtom, MemberTables};
use crate::potential::Potential;
use crate::uq::{Method, UqScratch};

/// The atoms of one domain, as LAMMPS holds them.
#[derive(Clone, Copy, Debug)]
pub struct Atoms<'a> {
    /// Owned atoms; owned + ghost atoms (`nall`) is `species.len()`.
    pub nlocal: usize,
    /// Positions `[nall][3]` (Å).
    pub x: &'a [f64],
    /// Species index of every atom `[nall]`; `-1` = not handled by this potential (its
    /// interactions are skipped both as centre and as neighbour).
    pub species: &'a [i32],
    /// Atom IDs `[nall]`, used only in error messages (1-based local index if absent).
    pub tag: Option<&'a [i64]>,
    /// Centre atoms to evaluate (local indices).
    pub ilist: &'a [i32],
    /// Neighbours of `ilist[ii]` are `neigh[offsets[ii] .. offsets[ii+1]]` (indices into `x`);
    /// `ilist.len() + 1` entries.
    pub offsets: &'a [i32],
    pub neigh: &'a [i32],
}

impl Atoms<'_> {
    /// Checks that the arrays are consistent with each other and with a potential of `nspecies`
    /// species: sizes, neighbour offsets, species, neighbour and `ilist` indices in range.
    /// [`Engine::step`] calls it; callers that check more of their own arguments (the C ABI) call
    /// it first so that these errors come first.
    pub fn validate(&self, nspecies: usize) -> Result<(), Error> {
        let bad = |m: String| Error::new(ErrorKind::InvalidArgument, m);
        let nall = self.species.len();
        let (nlocal, inum) = (self.nlocal, self.ilist.len());
        let Atoms {
            x,
            species,
            tag: tags,
            ilist,
            offsets,
            neigh,
            ..
        } = *self;
        if nall < nlocal || inum > nlocal {
            return Err(bad(format!(
                "inconsistent sizes: nlocal {nlocal} nall {nall} inum {inum}"
            )));
        }
        if x.len() != 3 * nall || tags.is_some_and(|t| t.len() != nall) {
            return Err(bad(format!(
                "positions or tags do not match the {nall} atoms (x: {} values)",
                x.len()
            )));
        }
        if offsets.len() != inum + 1 || offsets[0] != 0 || offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(bad(
                "neighbour offsets must start at 0 and not decrease".into()
            ));
        }
        let nnz = offsets[inum] as usize;
        if neigh.len() != nnz {
            return Err(bad(format!(
                "{} neighbour entries where the offsets say {nnz}",
                neigh.len()
            )));
        }
        let ns = nspecies as i32;
        if let Some(k) = species.iter().position(|&s| s < -1 || s >= ns) {
            return Err(bad(format!(
                "atom index {k} has species {} (model has {ns})",
                species[k]
            )));
        }
        if let Some(&j) = neigh.iter().find(|&&j| j < 0 || j as usize >= nall) {
            return Err(bad(format!(
                "neighbour index {j} out of range (nall = {nall})"
            )));
        }
        if let Some(&i) = ilist.iter().find(|&&i| i < 0 || i as usize >= nlocal) {
            return Err(bad(format!(
                "ilist entry {i} out of range (nlocal = {nlocal})"
            )));
        }
        Ok(())
    }
}

/// Where one step's results go. Per-atom arrays are indexed by local atom index and hold at
/// least `nlocal` values; only the entries of atoms in `ilist` are written.
#[derive(Debug)]
pub struct Outputs<'a> {
    /// Energy of each atom (eV).
    pub eatom: Option<&'a mut [f64]>,
    /// `dE_i/dr_ij` for every neighbour entry `[nnz][3]` (eV/Å), `r_ij = x_j - x_i`: the force
    /// on `i` gains `+fij`, the force on `j` gains `-fij`.
    pub fij: &'a mut [f64],
    /// Uncertainties to compute, each with its array. The ensemble's is not filled here (its
    /// array may be empty): it needs the ensemble force columns on ghost atoms summed onto their
    /// owners first (see `ens_forces` and [`Engine::ensemble_sigma`]); listing it asks for those
    /// columns.
    pub uq: Vec<(Method, &'a mut [f64])>,
    /// With [`Method::GammaLocal`] in `uq`: the `gamma_local` cluster of each atom (an index into
    /// its species' clusters), the one that graded it. `None`: not wanted (nothing is copied).
    pub gamma_local_cluster: Option<&'a mut [i32]>,
    /// When the ensemble is requested: its force columns `[nall][n_columns][3]` (eV/Å),
    /// `n_columns` = [`Engine::ensemble_columns`], zeroed and filled for owned and ghost atoms.
    /// Empty otherwise.
    pub ens_forces: &'a mut [f64],
}

/// One centre atom between reading its neighbours and writing its results.
struct AtomScratch {
    ws: Workspace,
    /// Local index, species, first entry of its neighbours in the list.
    i: usize,
    si: usize,
    lo: usize,
    /// Displacements and species of the kept neighbours (not NULL-typed), and which entries of
    /// the atom's neighbour list they are.
    rij: Vec<[f64; 3]>,
    sj: Vec<u16>,
    kept: Vec<usize>,
    grad: Vec<[f64; 3]>,
    /// Lane energies and gradients (ensemble steps).
    lane_e: Vec<f64>,
    lane_g: Vec<[f64; 3]>,
    /// Start of the atom's basis vector in `brows[si]`, when one is wanted.
    brow: Option<usize>,
}

impl AtomScratch {
    fn new(pot: &Potential) -> Self {
        AtomScratch {
            ws: Workspace::new(&pot.model),
            i: 0,
            si: 0,
            lo: 0,
            rij: vec![],
            sj: vec![],
            kept: vec![],
            grad: vec![],
            lane_e: vec![],
            lane_g: vec![],
            brow: None,
        }
    }

    /// The atom as an argument of the two-atom lane pass (`b`: where its basis vector goes).
    fn lane_atom<'a>(&'a mut self, b: Option<&'a mut [f64]>) -> LaneAtom<'a> {
        LaneAtom {
            ws: &mut self.ws,
            rij: &self.rij,
            sj: &self.sj,
            energies: &mut self.lane_e,
            grads: &mut self.lane_g,
            b,
        }
    }
}

/// A potential with the scratch memory of its MD steps. One engine per thread.
pub struct Engine {
    pot: Potential,
    /// The atoms in flight: the ensemble's lane pass takes atoms of one species in pairs (see
    /// [`crate::model::Model::atom_energy_grad_lanes_pair`]), other steps use the first only.
    atoms: [AtomScratch; 2],
    /// Basis vectors of the atoms whose uncertainty is requested, per species, row-major.
    brows: Vec<Vec<f64>>,
    /// Local atom index of each row in `brows`.
    batoms: Vec<Vec<u32>>,
    /// Per-method scratch values for one species batch.
    values: Vec<f64>,
    /// Scratch for the uncertainty estimators.
    uq: UqScratch,
    /// With an ensemble: per species, the lane tables of one MD step (lane 0 the model itself,
    /// then the ensemble's spread directions; see `Ensemble::step_tables`). Empty without an
    /// ensemble.
    step_tables: Vec<MemberTables>,
}

/// Rows of basis vectors graded per call of [`Engine::grade_rows`]: few enough to stay in cache
/// between the atoms' passes and every method's reading them (512 rows of 274 functions:
/// 1.1 MiB), and enough that the methods' products run in long stretches (on the 2000-atom Li
/// bench, blocks of 512 rows gave gamma steps 2% faster than grading all rows after the atom
/// loop, and blocks of 128 rows 2% slower).
const UQ_BLOCK: usize = 512;

impl Engine {
    /// An engine for `pot` (fails only if its ensemble's step tables cannot be built).
    pub fn new(pot: Potential) -> Result<Engine, Error> {
        let uq = UqScratch::new(&pot.model, &pot.uq);
        let step_tables = match pot.uq.ensemble.as_ref() {
            Some(ens) => ens
                .step_tables(&pot.model)
                .map_err(|e| Error::new(ErrorKind::Format, e.to_string()))?,
            None => vec![],
        };
        let ns = pot.model.nspecies();
        let atoms = [AtomScratch::new(&pot), AtomScratch::new(&pot)];
        Ok(Engine {
            pot,
            atoms,
            brows: vec![vec![]; ns],
            batoms: vec![vec![]; ns],
            values: vec![],
            uq,
            step_tables,
        })
    }

    /// The potential this engine evaluates.
    pub fn potential(&self) -> &Potential {
        &self.pot
    }

    /// Ensemble force columns per atom in [`Outputs::ens_forces`]: `n_members - 1` (the forces
    /// of the ensemble's spread directions), 0 without an ensemble.
    pub fn ensemble_columns(&self) -> usize {
        self.pot
            .uq
            .ensemble
            .as_ref()
            .map_or(0, |e| e.n_directions())
    }

    /// One step: writes every output of [`Outputs`] for the atoms of `atoms.ilist` and returns
    /// the sum of their energies (eV).
    pub fn step(&mut self, atoms: &Atoms, out: &mut Outputs) -> Result<f64, Error> {
        atoms.validate(self.pot.model.nspecies())?;
        self.step_validated(atoms, out)
    }

    /// [`Engine::step`] for atoms that already passed [`Atoms::validate`] with this potential's
    /// species count (the C ABI validates first, to keep its error order, and does not pay twice
    /// per step). Indexing stays checked, so unvalidated atoms panic instead of misbehaving.
    pub(crate) fn step_validated(
        &mut self,
        atoms: &Atoms,
        out: &mut Outputs,
    ) -> Result<f64, Error> {
        let bad = |m: String| Error::new(ErrorKind::InvalidArgument, m);
        let nall = atoms.species.len();
        let nlocal = atoms.nlocal;
        let Atoms {
            x,
            species,
            tag: tags,
            ilist,
            offsets,
            neigh,
            ..
        } = *atoms;
        let nnz = neigh.len();
        if out.fij.len() != 3 * nnz {
            return Err(bad(format!(
                "fij holds {} values, the neighbour list needs {}",
                out.fij.len(),
                3 * nnz
            )));
        }
        if out.eatom.as_ref().is_some_and(|e| e.len() < nlocal)
            || out
                .uq
                .iter()
                .any(|(m, v)| *m != Method::Ensemble && v.len() < nlocal)
        {
            return Err(bad(format!(
                "a per-atom output holds fewer than nlocal = {nlocal} values"
            )));
        }
        if let Some(c) = out.gamma_local_cluster.as_ref() {
            if c.len() < nlocal {
                return Err(bad(format!(
                    "the gamma_local cluster output holds {} values, fewer than nlocal = {nlocal}",
                    c.len()
                )));
            }
            if !out.uq.iter().any(|(m, _)| *m == Method::GammaLocal) {
                return Err(bad(
                    "the gamma_local cluster output was given but gamma_local was not requested"
                        .into(),
                ));
            }
        }
        let id = |k: usize| tags.map(|t| t[k]).unwrap_or(k as i64 + 1);
        let available = self.pot.uq.methods();
        for (m, _) in &out.uq {
            if !available.contains(m) {
                return Err(Error::new(
                    ErrorKind::Missing,
                    format!(
                        "the model has no '{}' uncertainty; refit it with the matching `aceuq fit` option",
                        m.name()
                    ),
                ));
            }
        }
        let want_ens = out.uq.iter().any(|(m, _)| *m == Method::Ensemble);
        // Contact comes from the neighbour distances, written per atom below; the others but
        // the ensemble are graded from basis vectors.
        let mut contact: Vec<&mut [f64]> = vec![];
        let mut uq: Vec<(Method, &mut [f64])> = vec![];
        for (m, v) in out.uq.iter_mut() {
            match m {
                Method::Ensemble => {}
                Method::Contact => contact.push(&mut **v),
                _ => uq.push((*m, &mut **v)),
            }
        }
        let mut cluster = out.gamma_local_cluster.as_deref_mut();
        let want_b = !uq.is_empty();
        let n_cols = self.ensemble_columns();
        let ens_forces: &mut [f64] = if want_ens && n_cols > 0 {
            if out.ens_forces.len() != nall * n_cols * 3 {
                return Err(bad(format!(
                    "ens_forces holds {} values but the ensemble was requested ({} needed)",
                    out.ens_forces.len(),
                    nall * n_cols * 3
                )));
            }
            out.ens_forces.fill(0.0);
            &mut *out.ens_forces
        } else {
            &mut []
        };
        for z in 0..self.batoms.len() {
            self.batoms[z].clear();
        }
        let mut total = 0.0;
        let lanes = 1 + n_cols;
        let mut sink = AtomOut {
            neigh,
            ens_forces,
            n_cols: if want_ens { n_cols } else { 0 },
            fij: &mut *out.fij,
            eatom: out.eatom.as_deref_mut(),
        };
        // With the ensemble, an atom waits in `atoms[0]` for a partner of its species (one lane
        // pass for both); results are still written in `ilist` order.
        let mut waiting = false;
        for (ii, &i) in ilist.iter().enumerate() {
            let i = i as usize;
            let (lo, hi) = (offsets[ii] as usize, offsets[ii + 1] as usize);
            sink.fij[3 * lo..3 * hi].fill(0.0);
            let si = species[i];
            if si < 0 {
                continue;
            }
            let xi = [x[3 * i], x[3 * i + 1], x[3 * i + 2]];
            if !xi.iter().all(|v| v.is_finite()) {
                return Err(Error::new(
                    ErrorKind::Data,
                    format!("atom {} has a non-finite position {xi:?}", id(i)),
                ));
            }
            // Beyond this, positions are not an atomistic system (and far beyond it a double
            // cannot tell an atom from its periodic image).
            if !xi
                .iter()
                .all(|v| v.abs() <= crate::structure::limits::MAX_COORDINATE)
            {
                return Err(Error::new(
                    ErrorKind::Data,
                    format!(
                        "atom {} is at {xi:?} Å, beyond {:e} Å from the origin: the run has \
                         blown up, or the coordinates are not in Å (units metal)",
                        id(i),
                        crate::structure::limits::MAX_COORDINATE
                    ),
                ));
            }
            let a = &mut self.atoms[usize::from(waiting)];
            (a.i, a.si, a.lo) = (i, si as usize, lo);
            a.rij.clear();
            a.sj.clear();
            a.kept.clear();
            for (k, &j) in neigh[lo..hi].iter().enumerate() {
                let j = j as usize;
                if species[j] < 0 {
                    continue;
                }
                let r = [x[3 * j] - xi[0], x[3 * j + 1] - xi[1], x[3 * j + 2] - xi[2]];
                if !r.iter().all(|v| v.is_finite()) {
                    return Err(Error::new(
                        ErrorKind::Data,
                        format!("atom {} has a non-finite position", id(j)),
                    ));
                }
                // Closer than MIN_DISTANCE the direction r/|r| is meaningless (NaN at 0).
                let d = crate::neighbors::norm(r);
                if d < crate::neighbors::MIN_DISTANCE {
                    let msg = if id(i) == id(j) {
                        // A ghost of the atom itself: the box is degenerate along some direction.
                        format!(
                            "atom {} is at the same position {xi:?} as its own periodic image \
                             (distance {d:.3e} Å): check the box",
                            id(i)
                        )
                    } else {
                        format!(
                            "atoms {} and {} are at the same position {xi:?} (distance {d:.3e} Å)",
                            id(i),
                            id(j)
                        )
                    };
                    return Err(Error::new(ErrorKind::Data, msg));
                }
                a.rij.push(r);
                a.sj.push(species[j] as u16);
                a.kept.push(k);
            }
            if let (false, Some(c)) = (contact.is_empty(), self.pot.uq.contact.as_ref()) {
                let u = c.value(a.si, &a.rij, &a.sj);
                for v in contact.iter_mut() {
                    v[i] = u;
                }
            }
            // The atom's row of basis vectors, when other methods need it.
            // The rows buffer keeps its length between steps (no zero-filling per row).
            a.brow = if want_b {
                let (si, m) = (a.si, self.pot.model.nfuncs(a.si));
                let start = self.batoms[si].len() * m;
                if self.brows[si].len() < start + m {
                    self.brows[si].resize(start + m, 0.0);
                }
                self.batoms[si].push(i as u32);
                Some(start)
            } else {
                None
            };
            if !want_ens {
                let a = &mut self.atoms[0];
                let b = a.brow.map(|s| &mut self.brows[a.si][s..]);
                a.grad.clear();
                a.grad.resize(a.rij.len(), [0.0; 3]);
                let e =
                    self.pot
                        .model
                        .atom_energy_grad(&mut a.ws, a.si, &a.rij, &a.sj, &mut a.grad, b);
                total += sink.write(a, e, &a.grad, 1);
            } else if !waiting {
                waiting = true;
            } else if self.atoms[0].si == self.atoms[1].si {
                self.lanes_pair(lanes);
                let [a0, a1] = &self.atoms;
                total += sink.write(a0, a0.lane_e[0], &a0.lane_g, lanes);
                total += sink.write(a1, a1.lane_e[0], &a1.lane_g, lanes);
                waiting = false;
            } else {
                // Species differ: the waiting atom goes alone, the new one waits.
                self.lanes_single(lanes);
                let a0 = &self.atoms[0];
                total += sink.write(a0, a0.lane_e[0], &a0.lane_g, lanes);
                self.atoms.swap(0, 1);
            }
            // A full block of rows is graded while it is still in cache (not while a waiting atom
            // has a row reserved but not yet written).
            if !waiting && want_b && self.batoms[si as usize].len() >= UQ_BLOCK {
                self.grade_rows(si as usize, &mut uq, cluster.as_deref_mut())?;
            }
        }
        if waiting {
            self.lanes_single(lanes);
            let a0 = &self.atoms[0];
            total += sink.write(a0, a0.lane_e[0], &a0.lane_g, lanes);
        }
        for z in 0..self.batoms.len() {
            self.grade_rows(z, &mut uq, cluster.as_deref_mut())?;
        }
        Ok(total)
    }

    /// Every requested method (`uq`: method and its output array) over the rows held for
    /// species `z`, each value written to the row's atom (and, if `cluster`, the `gamma_local`
    /// cluster of each row); then the rows are released.
    fn grade_rows(
        &mut self,
        z: usize,
        uq: &mut [(Method, &mut [f64])],
        mut cluster: Option<&mut [i32]>,
    ) -> Result<(), Error> {
        let m = self.pot.model.nfuncs(z);
        let n = self.batoms[z].len();
        if n == 0 {
            return Ok(());
        }
        let rows = &self.brows[z][..n * m];
        for (method, out) in uq.iter_mut() {
            self.values.clear();
            self.values.resize(n, 0.0);
            self.pot
                .uq
                .evaluate_rows(*method, z, rows, &mut self.values, &mut self.uq)
                .map_err(|e| Error::new(ErrorKind::Missing, e.to_string()))?;
            for (&i, &v) in self.batoms[z].iter().zip(&self.values) {
                out[i as usize] = v;
            }
            if *method == Method::GammaLocal
                && let Some(cl) = cluster.as_deref_mut()
            {
                let rows_cluster = self.uq.gamma_local_clusters();
                for (&i, &c) in self.batoms[z].iter().zip(rows_cluster) {
                    cl[i as usize] = c as i32;
                }
            }
        }
        self.batoms[z].clear();
        Ok(())
    }

    /// The lane pass of `atoms[0]` alone (`lanes`: the model and the ensemble's directions).
    fn lanes_single(&mut self, lanes: usize) {
        let a = &mut self.atoms[0];
        a.lane_e.resize(lanes, 0.0);
        a.lane_g.resize(a.rij.len() * lanes, [0.0; 3]);
        let b = a.brow.map(|s| &mut self.brows[a.si][s..]);
        self.pot.model.atom_energy_grad_lanes(
            &mut a.ws,
            a.si,
            &a.rij,
            &a.sj,
            &self.step_tables[a.si],
            &mut a.lane_e,
            &mut a.lane_g,
            b,
        );
    }

    /// The lane pass of `atoms[0]` and `atoms[1]` (one species) together.
    fn lanes_pair(&mut self, lanes: usize) {
        let [a0, a1] = &mut self.atoms;
        let si = a0.si;
        debug_assert_eq!(a1.si, si);
        for a in [&mut *a0, &mut *a1] {
            a.lane_e.resize(lanes, 0.0);
            a.lane_g.resize(a.rij.len() * lanes, [0.0; 3]);
        }
        // Both rows (if wanted) are in brows[si], atom 0's first.
        let (b0, b1) = match (a0.brow, a1.brow) {
            (Some(s0), Some(s1)) => {
                let (x, y) = self.brows[si].split_at_mut(s1);
                (Some(&mut x[s0..]), Some(y))
            }
            _ => (None, None),
        };
        self.pot.model.atom_energy_grad_lanes_pair(
            si,
            &self.step_tables[si],
            [a0.lane_atom(b0), a1.lane_atom(b1)],
        );
    }

    /// Calibrated ensemble uncertainty (eV/Å) of the `ilist` atoms from their ensemble force
    /// columns (`ens_forces[nlocal][n_columns][3]` as filled by [`Engine::step`], ghost
    /// contributions already summed onto owners), into `out[nlocal]`.
    pub fn ensemble_sigma(
        &self,
        species: &[i32],
        ilist: &[i32],
        ens_forces: &[f64],
        out: &mut [f64],
    ) -> Result<(), Error> {
        let Some(ens) = self.pot.uq.ensemble.as_ref() else {
            return Err(Error::new(
                ErrorKind::Missing,
                "the model has no ensemble; refit with `aceuq fit --ensemble N`",
            ));
        };
        let (n, nc) = (species.len(), ens.n_directions());
        if ens_forces.len() != n * nc * 3 || out.len() < n {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("ensemble arrays do not match nlocal = {n}"),
            ));
        }
        let mut buf = vec![[0.0; 3]; nc];
        for &i in ilist {
            let Some(i) = usize::try_from(i).ok().filter(|&i| i < n) else {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("ilist entry {i} out of range"),
                ));
            };
            let s = species[i];
            if s < 0 {
                continue;
            }
            if s as usize >= self.pot.model.nspecies() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("species {s} out of range"),
                ));
            }
            for (k, b) in buf.iter_mut().enumerate() {
                let o = (i * nc + k) * 3;
                *b = [ens_forces[o], ens_forces[o + 1], ens_forces[o + 2]];
            }
            out[i] = ens.sigma_from_directions(s as usize, &buf);
        }
        Ok(())
    }
}

/// Where [`Engine::step`] writes one atom's results.
struct AtomOut<'a> {
    neigh: &'a [i32],
    /// Ensemble force columns (`n_cols` per atom; 0 columns when not asked for).
    ens_forces: &'a mut [f64],
    n_cols: usize,
    fij: &'a mut [f64],
    eatom: Option<&'a mut [f64]>,
}

impl AtomOut<'_> {
    /// Writes atom `a`'s neighbour gradients (entry `jj * stride` of `grads` for its `jj`-th
    /// kept neighbour; with the ensemble, the spread directions' gradients follow each), its
    /// ensemble force columns and its energy `e`; returns `e`.
    fn write(&mut self, a: &AtomScratch, e: f64, grads: &[[f64; 3]], stride: usize) -> f64 {
        let nc = self.n_cols;
        for (jj, &k) in a.kept.iter().enumerate() {
            let g = &grads[jj * stride..(jj + 1) * stride];
            let o = 3 * (a.lo + k);
            self.fij[o..o + 3].copy_from_slice(&g[0]);
            if nc > 0 {
                let (i, j) = (a.i, self.neigh[a.lo + k] as usize);
                for (q, g) in g[1..].iter().enumerate() {
                    for d in 0..3 {
                        self.ens_forces[(i * nc + q) * 3 + d] += g[d];
                        self.ens_forces[(j * nc + q) * 3 + d] -= g[d];
                    }
                }
            }
        }
        if let Some(eatom) = self.eatom.as_deref_mut() {
            eatom[a.i] = e;
        }
        e
    }
}
