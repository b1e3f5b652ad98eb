//! Lane passes: one sweep of an atom's DAG serving several coefficient sets at once (ensemble
//! members, or the model and the ensemble's spread directions), in groups of
//! [`LANES`](crate::simd::lanes::LANES) lanes, with a 256-bit (AVX2+FMA) and a 512-bit (AVX-512,
//! two atoms of one species) path beside the portable one.

use super::*;
#[cfg(target_arch = "x86_64")]
use crate::simd::lanes::Avx;
use crate::simd::lanes::{Group, LANES, Plain, axpy_mem};

/// Energy tables of several coefficient sets over one species' basis (e.g. ensemble members),
/// for [`Model::atom_energy_grad_members`]. The node coefficients are interleaved node-major with
/// the member count padded to a multiple of 4 (`[node * width + k]`, zero for padding), so one
/// reverse sweep over the DAG serves every member with fixed-width, vectorizable inner loops.
/// Split like the model's own energy tables: `ct_int` over the `A`s and internal DAG nodes (in
/// the renumbered order of the energy-only sweep), `leaf_c` over the leaves, which are folded
/// into their parents and never get a slot of their own (most nodes are leaves).
///
/// Each lane also carries a weight of the core repulsion (1 for a complete model, 0 for a lane
/// that holds a coefficient *difference*, whose core and one-body terms cancel).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberTables {
    species: usize,
    n_members: usize,
    width: usize,
    ct_int: AlignedRows,
    leaf_c: AlignedRows,
    e0: Vec<f64>,
    /// Core-repulsion weight per lane (`width` values, zero for padding).
    core: Vec<f64>,
}

/// Values whose first element sits on a 64-byte boundary, so that table rows of 4 (or 8)
/// values never straddle cache lines when read as vector registers. The buffer never moves
/// once built (moving the struct moves only the handle); a clone is aligned afresh.
#[derive(Default)]
struct AlignedRows {
    buf: Vec<f64>,
    off: usize,
    len: usize,
}

impl AlignedRows {
    fn new(v: &[f64]) -> Self {
        let mut buf = vec![];
        let off = aligned_start(&mut buf, v.len());
        buf[off..off + v.len()].copy_from_slice(v);
        AlignedRows {
            buf,
            off,
            len: v.len(),
        }
    }
}

impl std::ops::Deref for AlignedRows {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl Clone for AlignedRows {
    fn clone(&self) -> Self {
        AlignedRows::new(self)
    }
}

impl PartialEq for AlignedRows {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for AlignedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl MemberTables {
    /// Centre species these tables are for.
    pub fn species(&self) -> usize {
        self.species
    }
    /// Number of coefficient sets (members).
    pub fn n_members(&self) -> usize {
        self.n_members
    }
    /// One-body energy of every member (eV).
    pub fn e0(&self) -> &[f64] {
        &self.e0
    }
    /// Weight of the core repulsion in every member's energy (1 or 0).
    pub fn core_weights(&self) -> &[f64] {
        &self.core[..self.n_members]
    }
}

/// Where a monomial-DAG node lives in the split (energy-only) layout.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// An `A` or an internal node: index in `p` of the energy-only sweep.
    Int(usize),
    /// A leaf: index in `Derived::leaves`.
    Leaf(usize),
}

/// The slot of every DAG node of `der`, as `Derived::new` split them (nodes with children are
/// internal, renumbered after the `A`s as `node_value` says; the others are leaves, at
/// `leaf_pos` in DAG order).
fn node_slots(der: &crate::model::Derived) -> Vec<Slot> {
    let mut nl = 0;
    let slots: Vec<Slot> = der
        .node_value
        .iter()
        .map(|&v| {
            if v != u32::MAX {
                Slot::Int(v as usize)
            } else {
                nl += 1;
                Slot::Leaf(der.leaf_pos[nl - 1] as usize)
            }
        })
        .collect();
    debug_assert!(nl == der.leaves.len() && slots.len() == der.dag.len());
    slots
}

/// Grows `v` so that `len` values fit from its first 64-byte boundary on, and returns the
/// index of that boundary: vector rows read from there never straddle cache lines (a row split
/// across two lines costs two accesses).
fn aligned_start(v: &mut Vec<f64>, len: usize) -> usize {
    if v.len() < len + 8 {
        v.resize(len + 8, 0.0);
    }
    v.as_ptr().align_offset(64).min(8)
}

/// Gradients of one neighbour for the lanes `first..first + LANES` (those below `out.len()`)
/// from the contracted radial part and polynomial angular partials of each lane (`[rad, gx, gy,
/// gz]`): the angular part projected once, the radial part (with the core factor `core`
/// weighted per lane by `cw`) along the unit vector `un`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lane_outputs(
    lanes: [[f64; LANES]; 4],
    un: [f64; 3],
    rn: f64,
    r: [f64; 3],
    core: f64,
    cw: &[f64],
    first: usize,
    out: &mut [[f64; 3]],
) {
    let [rad, gx, gy, gz] = lanes;
    for c in 0..LANES {
        let m = first + c;
        if m < out.len() {
            let gv = crate::basis::sph::project([gx[c], gy[c], gz[c]], un, 1.0 / rn);
            let s = rad[c] / rn + core * cw[m];
            out[m] = [gv[0] + s * r[0], gv[1] + s * r[1], gv[2] + s * r[2]];
        }
    }
}

/// Scratch of the two-atom contraction: per neighbour pair the radial values and derivatives
/// repeated per lane, and each atom's core factors.
/// (Read by the x86-64 two-atom kernel only.)
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct PairScratch {
    ge: Vec<f64>,
    core0: Vec<f64>,
    core1: Vec<f64>,
}

/// One atom of [`Model::atom_energy_grad_lanes_pair`]: its workspace, neighbours and outputs,
/// as the arguments of [`Model::atom_energy_grad_lanes`].
pub struct LaneAtom<'a> {
    pub ws: &'a mut Workspace,
    pub rij: &'a [[f64; 3]],
    pub sj: &'a [u16],
    pub energies: &'a mut [f64],
    pub grads: &'a mut [[f64; 3]],
    pub b: Option<&'a mut [f64]>,
}

/// Whether this CPU runs the two-atom lane pass in 512-bit registers.
#[cfg(target_arch = "x86_64")]
fn pair_simd() -> bool {
    crate::simd::features().avx512()
}

impl Model {
    /// Energy coefficient of every monomial-DAG node of species `s` for linear coefficients `c`
    /// over the species' basis (the model's own evaluation tables hold this for `self.coefs`).
    pub fn node_coefficients(
        &self,
        s: usize,
        c: &[f64],
    ) -> Result<Vec<f64>, crate::model::ModelError> {
        let b = self.bases.get(s).ok_or_else(|| {
            crate::model::ModelError::Data(format!("species index {s} out of range"))
        })?;
        if c.len() != b.len() {
            return Err(crate::model::ModelError::Data(format!(
                "species {}: {} coefficients for {} basis functions",
                self.species[s],
                c.len(),
                b.len()
            )));
        }
        let dag = &self.derived[s].dag;
        let mut ct = vec![0.0; dag.len()];
        for f in 0..b.len() {
            for t in b.func_ptr[f] as usize..b.func_ptr[f + 1] as usize {
                ct[dag.mono_node[b.func_mono[t] as usize] as usize] += c[f] * b.func_coef[t];
            }
        }
        Ok(ct)
    }

    /// Interleaved energy tables of species `s` for the coefficient sets `coefs` (one per member,
    /// each of length `nfuncs(s)`) with one-body energies `e0` (eV, one per member), every member
    /// with the model's core repulsion.
    pub fn member_tables(
        &self,
        s: usize,
        coefs: &[&[f64]],
        e0: &[f64],
    ) -> Result<MemberTables, crate::model::ModelError> {
        self.lane_tables(s, coefs, e0, &vec![1.0; coefs.len()])
    }

    /// [`Model::member_tables`] with a core-repulsion weight per member (`core[k]` = 1: member
    /// `k` is a complete model; 0: it is a coefficient difference, without core repulsion).
    pub fn lane_tables(
        &self,
        s: usize,
        coefs: &[&[f64]],
        e0: &[f64],
        core: &[f64],
    ) -> Result<MemberTables, crate::model::ModelError> {
        let ne = coefs.len();
        if ne == 0 || e0.len() != ne || core.len() != ne {
            return Err(crate::model::ModelError::Data(format!(
                "member tables need at least one member and one e0 and core weight per member (got {ne} coefficient sets, {} e0, {} core weights)",
                e0.len(),
                core.len()
            )));
        }
        let width = ne.div_ceil(LANES) * LANES;
        let slots = self.derived.get(s).map(node_slots).unwrap_or_default();
        let der = self.derived.get(s);
        let nint = der.map_or(0, |d| d.dag.n_a + d.internal.len());
        let nleaf = der.map_or(0, |d| d.leaves.len());
        let mut ct_int = vec![0.0; nint * width];
        let mut leaf_c = vec![0.0; nleaf * width];
        for (k, c) in coefs.iter().enumerate() {
            for (node, v) in self.node_coefficients(s, c)?.into_iter().enumerate() {
                match slots[node] {
                    Slot::Int(i) => ct_int[i * width + k] = v,
                    Slot::Leaf(l) => leaf_c[l * width + k] = v,
                }
            }
        }
        let mut cw = vec![0.0; width];
        cw[..ne].copy_from_slice(core);
        Ok(MemberTables {
            species: s,
            n_members: ne,
            width,
            ct_int: AlignedRows::new(&ct_int),
            leaf_c: AlignedRows::new(&leaf_c),
            e0: e0.to_vec(),
            core: cw,
        })
    }

    /// Energies and neighbour gradients of atom `i` for every member of `tables` at once: one `A`
    /// accumulation and one forward sweep shared by all members, then one reverse sweep and one
    /// force contraction carrying all members together (member-minor, in groups of 4 lanes, so
    /// the inner loops are fixed-width and vectorize). `energies[k]` is member `k`'s atomic energy
    /// (one-body and core included, as [`Model::atom_energy_grad`], the core weighted by the
    /// table's core weight); `grads[j * n_members + k] = dE_i^(k)/dr_ij` for neighbour `j` (zero
    /// outside the cutoff); `grads` must hold at least `rij.len() * n_members` entries.
    /// Allocation-free once the workspace has grown to the member count and neighbour count.
    #[allow(clippy::too_many_arguments)]
    pub fn atom_energy_grad_members(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        tables: &MemberTables,
        energies: &mut [f64],
        grads: &mut [[f64; 3]],
    ) {
        self.atom_energy_grad_lanes(ws, si, rij, sj, tables, energies, grads, None);
    }

    /// [`Model::atom_energy_grad_members`], and if `b` is given the basis vector `B_i` written
    /// there (from the same forward sweep). With the model's own coefficients in one lane this
    /// replaces [`Model::atom_energy_grad`]: that lane's energy and gradients equal its results
    /// up to rounding (the lane kernel may use fused multiply-adds and sums the core term in
    /// another order).
    #[allow(clippy::too_many_arguments)]
    pub fn atom_energy_grad_lanes(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        tables: &MemberTables,
        energies: &mut [f64],
        grads: &mut [[f64; 3]],
        b: Option<&mut [f64]>,
    ) {
        let ne = tables.n_members;
        let nn = rij.len();
        assert!(
            tables.species == si,
            "member tables are for species {}, the atom is species {si}",
            tables.species
        );
        assert!(
            energies.len() == ne && grads.len() >= nn * ne,
            "energies must hold {ne} values and grads {} entries",
            nn * ne
        );
        self.compute_a(ws, si, rij, sj);
        self.members_dispatch(ws, si, rij, sj, tables, energies, grads, b.is_some());
        if let Some(b) = b {
            // The lane pass left the internal node and leaf values in `ws.p`.
            self.basis_from_fused(ws, si, b);
        }
    }

    /// [`Model::atom_energy_grad_lanes`] for two atoms of species `si` at once. On CPUs with
    /// AVX-512 the two atoms' lane groups share one 512-bit register through the DAG sweeps,
    /// which halves their instruction count; each lane sees the same operations in the same
    /// order as in a single call, so the results are bitwise those of two single calls
    /// (which is what runs on other CPUs).
    pub fn atom_energy_grad_lanes_pair(
        &self,
        si: usize,
        tables: &MemberTables,
        atoms: [LaneAtom<'_>; 2],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if pair_simd() {
                // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked by `pair_simd`).
                unsafe { self.lanes_pair_avx512(si, tables, atoms) };
                return;
            }
        }
        for a in atoms {
            self.atom_energy_grad_lanes(a.ws, si, a.rij, a.sj, tables, a.energies, a.grads, a.b);
        }
    }

    /// [`Model::atom_energy_grad_members`] for an atom whose `A` and per-neighbour radial and
    /// angular values are already in the workspace (after `atom_energy_grad` on the same
    /// neighbours): the members' energies and gradients without recomputing the descriptors.
    #[allow(clippy::too_many_arguments)]
    pub fn members_from_state(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        tables: &MemberTables,
        energies: &mut [f64],
        grads: &mut [[f64; 3]],
    ) {
        self.members_dispatch(ws, si, rij, sj, tables, energies, grads, false);
    }

    /// The lane pass with the kernel for this CPU; `leaves`: also leave the leaf monomial
    /// values in `ws.p` (for `basis_from_fused`).
    #[allow(clippy::too_many_arguments)]
    fn members_dispatch(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        tables: &MemberTables,
        energies: &mut [f64],
        grads: &mut [[f64; 3]],
        leaves: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::simd::features().avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { self.members_avx2(ws, si, rij, sj, tables, energies, grads, leaves) };
                return;
            }
        }
        self.members_impl::<Plain>(ws, si, rij, sj, tables, energies, grads, leaves);
    }

    /// [`Model::members_from_state`] with the portable kernel whatever the CPU (to compare the
    /// two builds in tests).
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn members_portable(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        tables: &MemberTables,
        energies: &mut [f64],
        grads: &mut [[f64; 3]],
    ) {
        self.compute_a(ws, si, rij, sj);
        self.members_impl::<Plain>(ws, si, rij, sj, tables, energies, grads, false);
    }

    /// [`Model::members_from_state`] compiled with 256-bit vectors and fused multiply-adds: a
    /// group of 4 member lanes is one register. Same operations in the same order as the
    /// baseline build, but each multiply-add rounds once, so results differ from it (and from
    /// [`Model::atom_energy_grad`]) at rounding level.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn members_avx2(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        tables: &MemberTables,
        energies: &mut [f64],
        grads: &mut [[f64; 3]],
        leaves: bool,
    ) {
        self.members_impl::<Avx>(ws, si, rij, sj, tables, energies, grads, leaves);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn members_impl<V: Group>(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        tables: &MemberTables,
        energies: &mut [f64],
        grads: &mut [[f64; 3]],
        keep_leaves: bool,
    ) {
        let ne = tables.n_members;
        let w = tables.width;
        let groups = w / LANES;
        assert!(tables.species == si && energies.len() == ne && grads.len() >= rij.len() * ne);
        let der = &self.derived[si];
        let na = der.dag.n_a;
        let ni = der.internal.len();
        let nint = na + ni;
        assert!(
            tables.ct_int.len() == nint * w
                && tables.leaf_c.len() == der.leaves.len() * w
                && tables.core.len() == w,
            "member tables of another model"
        );
        // Internal node values (the energy-only sweep's: a few hundred products). Left in `ws.p`
        // for `basis_from_fused`, followed by the leaf values if `keep_leaves`.
        self.internal_values(ws, si);
        // dpm[node * w + k] = dE^(k)/dp[node] over the A's and internal nodes: their own
        // coefficients, then each leaf folded into its parent and its A, then the reverse sweep
        // over the internal nodes. Energies accumulate lane-wise alongside.
        // (The rows start as the nodes' own coefficients, written by the energy loop below
        // as it reads them: no separate copy of the table.)
        let off = aligned_start(&mut ws.dpm, nint * w);
        ws.macc.clear();
        ws.macc.resize(w, 0.0);
        {
            // SAFETY: off + nint * w <= dpm.len() (resized above).
            let dp = unsafe { ws.dpm.as_mut_ptr().add(off) };
            // Internal values are read, leaf values (after them) written.
            let (p, pleaf) = ws.p.split_at_mut(nint);
            let (p, a) = (&*p, &ws.a);
            let pleaf = pleaf.as_mut_ptr();
            let (ct, lc) = (tables.ct_int.as_ptr(), tables.leaf_c.as_ptr());
            let gls = &der.group_leaves;
            // Lane groups are independent: one group at a time keeps its energy accumulators in
            // registers (two, to halve the addition chain; loops unrolled by two so that each
            // step adds to a fixed accumulator).
            for g in 0..groups {
                let go = g * LANES;
                // SAFETY (all row accesses below): rows of the (rows × w) tables and of dpm,
                // `go + LANES <= w`. Leaf parents < na + ni and extras < na, internal links
                // par < na + k and ex < na (validated in `Derived::new`); dpm holds
                // (na + ni) * w values.
                macro_rules! row {
                    ($base:expr, $r:expr) => {
                        unsafe { V::load(($base as *const f64).add($r * w + go)) }
                    };
                }
                // One leaf of a parent group (`[extra, position in leaves]`): c_l A_ex into the
                // group's sum `s`, c_l p_parent into its extra's row. A macro, not a closure:
                // closures do not inherit the AVX2 target feature, and this one was not inlined.
                macro_rules! leaf {
                    ($j:expr, $pp:expr, $s:expr) => {{
                        let [ex, l] = gls[$j];
                        let (ex, l) = (ex as usize, l as usize);
                        // SAFETY: extras < na <= a.len() (validated in `Derived::new`).
                        let ae = unsafe { *a.get_unchecked(ex) };
                        if keep_leaves && g == 0 {
                            // SAFETY: l < nl <= ws.p.len() - nint (asserted above).
                            unsafe { *pleaf.add(l) = $pp * ae };
                        }
                        let cv = row!(lc, l);
                        $s = V::madd(V::splat(ae), cv, $s);
                        unsafe { axpy_mem(dp.add(ex * w + go), cv, $pp) };
                    }};
                }
                // Row `n` of the node coefficients into the same row of `dp`, returned.
                macro_rules! init {
                    ($n:expr) => {{
                        let c = row!(ct, $n);
                        unsafe { c.store(dp.add($n * w + go)) };
                        c
                    }};
                }
                let (mut e0, mut e1) = (V::zero(), V::zero());
                let mut n = 0;
                while n + 1 < nint {
                    e0 = V::madd(V::splat(p[n]), init!(n), e0);
                    e1 = V::madd(V::splat(p[n + 1]), init!(n + 1), e1);
                    n += 2;
                }
                if n < nint {
                    e0 = V::madd(V::splat(p[n]), init!(n), e0);
                }
                // The leaves grouped by parent, as in the energy-only sweep: per parent the sum
                // of c_l A_ex(l) over its leaves in registers (two chains), added once to the
                // parent's row and, times the parent's value, to the energy (the two energy
                // accumulators in turn); each extra's row gets c_l p_parent as it goes (distinct
                // extras within a group, so those updates do not wait on each other; an extra
                // equal to the parent is updated in memory before the parent's sum is added).
                let mut j = 0usize;
                for (gi, &[par, end]) in der.leaf_groups.iter().enumerate() {
                    let (par, end) = (par as usize, end as usize);
                    // SAFETY: leaf parents < na + ni = p.len() (validated in `Derived::new`).
                    let pp = unsafe { *p.get_unchecked(par) };
                    let (mut s0, mut s1) = (V::zero(), V::zero());
                    while j + 1 < end {
                        leaf!(j, pp, s0);
                        leaf!(j + 1, pp, s1);
                        j += 2;
                    }
                    if j < end {
                        leaf!(j, pp, s0);
                        j += 1;
                    }
                    let sum = V::add(s0, s1);
                    unsafe {
                        let dpar = dp.add(par * w + go);
                        V::add(V::load(dpar), sum).store(dpar);
                    }
                    if gi % 2 == 0 {
                        e0 = V::madd(V::splat(pp), sum, e0);
                    } else {
                        e1 = V::madd(V::splat(pp), sum, e1);
                    }
                }
                // The internal nodes in reverse, siblings (adjacent, see `Derived::new`) as
                // one run: their parent's row is summed in a register and added once per run,
                // as in the single-model sweep (a read-modify-write of the parent's row per
                // node made every sibling wait for the previous one's store).
                let mut k = ni;
                while k > 0 {
                    let par = der.internal[k - 1][0] as usize;
                    // SAFETY: internal parents < na + k <= p.len() (validated in
                    // `Derived::new`).
                    let pv = unsafe { *p.get_unchecked(par) };
                    let mut sum = V::zero();
                    while k > 0 && der.internal[k - 1][0] as usize == par {
                        k -= 1;
                        let ex = der.internal[k][1] as usize;
                        // SAFETY: extras < na <= a.len() (validated in `Derived::new`).
                        let av = unsafe { *a.get_unchecked(ex) };
                        // The source row na + k differs from both destinations (par, ex < na +
                        // k), and from every row of the run's extras (< na). An extra equal to
                        // the parent is updated in memory before the run's sum is added.
                        let d = row!(dp, na + k);
                        sum = V::madd(V::splat(av), d, sum);
                        unsafe { axpy_mem(dp.add(ex * w + go), d, pv) };
                    }
                    unsafe {
                        let dpar = dp.add(par * w + go);
                        V::add(V::load(dpar), sum).store(dpar);
                    }
                }
                let (e0, e1) = (e0.to_array(), e1.to_array());
                for c in 0..LANES {
                    ws.macc[go + c] = e0[c] + e1[c];
                }
            }
        }
        for (k, e) in energies.iter_mut().enumerate() {
            *e = tables.e0[k] + ws.macc[k];
        }
        let dpm = &ws.dpm[off..off + na * w];
        self.lane_forces::<V>(ws, si, rij, sj, tables, dpm, [w, LANES, 0], energies, grads);
    }

    /// The force contraction of the lane pass for one atom whose per-neighbour radial and
    /// angular values are in `ws`, from the adjoints `dE^(k)/dA` in `dpm`: lane `c` of group `g`
    /// of row `n` is `dpm[n * rs + g * gs + off + c]` with `[rs, gs, off] = layout` (one atom:
    /// `[width, LANES, 0]`). Adds the core repulsion to `energies` (lanes weighted by the
    /// table's core weights) and writes `grads` as [`Model::atom_energy_grad_members`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn lane_forces<V: Group>(
        &self,
        ws: &Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        tables: &MemberTables,
        dpm: &[f64],
        layout: [usize; 3],
        energies: &mut [f64],
        grads: &mut [[f64; 3]],
    ) {
        let ne = tables.n_members;
        let groups = tables.width / LANES;
        let [rs, gs, off0] = layout;
        assert!(
            groups > 0 && (groups - 1) * gs + off0 + LANES <= rs,
            "lane layout {layout:?} does not fit {groups} groups"
        );
        assert!(energies.len() == ne && grads.len() >= rij.len() * ne);
        for (k, (r, &z)) in rij.iter().zip(sj).enumerate() {
            let out = &mut grads[k * ne..(k + 1) * ne];
            if ws.rn[k] == 0.0 {
                out.fill([0.0; 3]);
                continue;
            }
            let core = self.lane_core(ws, si, k, z as usize, tables, energies);
            self.lane_neighbor::<V>(ws, si, k, *r, z as usize, tables, dpm, layout, core, out);
        }
    }

    /// The lane passes' forward sweep: the `A`s and the internal node values (a few hundred
    /// products) into `ws.p`, where `basis_from_fused` finds them, with room after them for
    /// the leaf values.
    #[inline(always)]
    fn internal_values(&self, ws: &mut Workspace, si: usize) {
        let der = &self.derived[si];
        let na = der.dag.n_a;
        assert!(ws.p.len() >= na + der.internal.len() + der.leaves.len() && ws.a.len() >= na);
        ws.p[..na].copy_from_slice(&ws.a[..na]);
        for (k, &[par, ex]) in der.internal.iter().enumerate() {
            ws.p[na + k] = ws.p[par as usize] * ws.a[ex as usize];
        }
    }

    /// Core repulsion between the atom and its neighbour `k` (species `z`, inside the cutoff):
    /// half of the pair energy added to the lanes that carry it (weighted by the tables' core
    /// weights); returns the radial factor `dE_core/dr / (2 r)` of its gradient (0 outside the
    /// core range).
    #[inline(always)]
    fn lane_core(
        &self,
        ws: &Workspace,
        si: usize,
        k: usize,
        z: usize,
        tables: &MemberTables,
        energies: &mut [f64],
    ) -> f64 {
        let rn = ws.rn[k];
        let (ec, dec) = self.core[si * self.nspecies() + z].energy_deriv(rn);
        if ec != 0.0 || dec != 0.0 {
            for (e, &c) in energies.iter_mut().zip(&tables.core) {
                *e += c * (0.5 * ec);
            }
            0.5 * dec / rn
        } else {
            0.0
        }
    }

    /// The lane gradients `out[m] = dE^(m)/dr_ij` of neighbour `k` (displacement `r`, species
    /// `z`, inside the cutoff) from the adjoints in `dpm` (laid out as in
    /// [`Model::lane_forces`]); `core`: its core-repulsion factor from [`Model::lane_core`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn lane_neighbor<V: Group>(
        &self,
        ws: &Workspace,
        si: usize,
        k: usize,
        r: [f64; 3],
        z: usize,
        tables: &MemberTables,
        dpm: &[f64],
        layout: [usize; 3],
        core: f64,
        out: &mut [[f64; 3]],
    ) {
        let ne = tables.n_members;
        let groups = tables.width / LANES;
        let [rs, gs, off0] = layout;
        let lay = &self.bases[si].layout;
        let (nmax, nlm) = (ws.nmax, ws.nlm);
        let cw = &tables.core;
        let rn = ws.rn[k];
        // The neighbour's values in the lane form of `compute_a` (entries SPH_LANES apart).
        let [g, dg, y, dy] = ws.lane_rows(k);
        const S: usize = SPH_LANES;
        // Per group of lanes, everything in registers: for each (l, m), t = sum_n w g_n and
        // u = sum_n w g'_n, then radial += u Y_lm and angular += t ∇Y_lm.
        for grp in 0..groups {
            let (mut rad, mut gx, mut gy, mut gz) = (V::zero(), V::zero(), V::zero(), V::zero());
            for l in 0..=lay.lmax {
                let d = 2 * l + 1;
                let nlv = lay.nmax_l[l];
                let start = lay.start(z, l);
                assert!((start + nlv * d) * rs <= dpm.len() && nlv <= nmax);
                for mm in 0..d {
                    let (mut t, mut u) = (V::zero(), V::zero());
                    for n in 0..nlv {
                        let off = (start + n * d + mm) * rs + grp * gs + off0;
                        // SAFETY: off + LANES <= (start + nlv * d) * rs <= dpm.len() (asserted
                        // above; grp * gs + off0 + LANES <= rs, asserted by the caller); n < nlv
                        // <= nmax entries of the neighbour's radial values.
                        let (wv, gn, dgn) = unsafe {
                            (
                                V::load(dpm.as_ptr().add(off)),
                                *g.add(n * S),
                                *dg.add(n * S),
                            )
                        };
                        t = V::madd(wv, V::splat(gn), t);
                        u = V::madd(wv, V::splat(dgn), u);
                    }
                    let q = l * l + mm;
                    debug_assert!(q < nlm);
                    // SAFETY: q < (lmax + 1)^2 <= nlm entries of the neighbour's harmonics.
                    let (yq, dyq) =
                        unsafe { (*y.add(q * S), [0, 1, 2].map(|c| *dy.add((3 * q + c) * S))) };
                    rad = V::madd(u, V::splat(yq), rad);
                    gx = V::madd(t, V::splat(dyq[0]), gx);
                    gy = V::madd(t, V::splat(dyq[1]), gy);
                    gz = V::madd(t, V::splat(dyq[2]), gz);
                }
            }
            let lanes = [rad.to_array(), gx.to_array(), gy.to_array(), gz.to_array()];
            let first = grp * LANES;
            lane_outputs(lanes, ws.un[k], rn, r, core, cw, first, &mut out[..ne]);
        }
    }

    /// [`Model::lane_forces`] for the two atoms of the pair pass: neighbours of one species are
    /// taken one from each atom and contracted together in 512-bit registers (atom 0's lanes
    /// low, atom 1's high, as in `dpm`, layout `[2 × width, 8, 0 | LANES]`); the others one at a
    /// time. Bitwise the single contraction: every lane sees the same operations in the same
    /// order, and the core energies are added in neighbour order.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn lane_forces_pair(
        &self,
        ws: [&Workspace; 2],
        si: usize,
        rij: [&[[f64; 3]]; 2],
        sj: [&[u16]; 2],
        tables: &MemberTables,
        dpm: &[f64],
        energies: [&mut [f64]; 2],
        grads: [&mut [[f64; 3]]; 2],
        sc: &mut PairScratch,
    ) {
        use std::arch::x86_64::*;
        let ne = tables.n_members;
        let w = tables.width;
        let groups = w / LANES;
        let rs = 2 * w;
        let (ens, outs) = (energies, grads);
        let mut core = [std::mem::take(&mut sc.core0), std::mem::take(&mut sc.core1)];
        // Core energies in neighbour order (as the single pass), and each neighbour's factor.
        for a in 0..2 {
            assert!(ens[a].len() == ne && outs[a].len() >= rij[a].len() * ne);
            core[a].clear();
            for (k, &z) in sj[a].iter().enumerate() {
                core[a].push(if ws[a].rn[k] == 0.0 {
                    outs[a][k * ne..(k + 1) * ne].fill([0.0; 3]);
                    0.0
                } else {
                    self.lane_core(ws[a], si, k, z as usize, tables, ens[a])
                });
            }
        }
        let lay = &self.bases[si].layout;
        let nmax = ws[0].nmax;
        assert!(
            ws[1].nmax == nmax && ws[1].nlm == ws[0].nlm,
            "workspaces of two models"
        );
        let ge_off = aligned_start(&mut sc.ge, 2 * nmax * 8);
        for z in 0..self.nspecies() {
            let inside = |a: usize| {
                (0..rij[a].len()).filter(move |&k| sj[a][k] as usize == z && ws[a].rn[k] != 0.0)
            };
            let (mut i0, mut i1) = (inside(0), inside(1));
            loop {
                let (k0, k1) = match (i0.next(), i1.next()) {
                    (Some(k0), Some(k1)) => (k0, k1),
                    (None, None) => break,
                    // A neighbour without a partner: alone, in its atom's half of the rows.
                    (one0, one1) => {
                        if let Some((a, k)) = one0.map(|k| (0, k)).or(one1.map(|k| (1, k))) {
                            let out = &mut outs[a][k * ne..(k + 1) * ne];
                            let layout = [rs, 8, a * LANES];
                            let (r, c) = (rij[a][k], core[a][k]);
                            self.lane_neighbor::<Avx>(
                                ws[a], si, k, r, z, tables, dpm, layout, c, out,
                            );
                        }
                        continue;
                    }
                };
                let ks = [k0, k1];
                // SAFETY: ge holds 2 nmax rows of 8; each neighbour's lane-form values hold
                // nmax radial entries and nlm harmonics (`Workspace::lane_rows`; q <
                // (lmax + 1)^2 <= nlm, and both workspaces have the same nmax, asserted above);
                // dpm offsets as in `lane_neighbor`, with grp * 8 + 8 <= rs.
                unsafe {
                    let pair = |v0: f64, v1: f64| {
                        _mm512_insertf64x4::<1>(_mm512_set1_pd(v0), _mm256_set1_pd(v1))
                    };
                    let ge = sc.ge.as_mut_ptr().add(ge_off);
                    // The neighbours' values in the lane form of `compute_a` (entries S apart).
                    const S: usize = SPH_LANES;
                    let [g0, dg0, y0, dy0] = ws[0].lane_rows(k0);
                    let [g1, dg1, y1, dy1] = ws[1].lane_rows(k1);
                    for n in 0..nmax {
                        _mm512_storeu_pd(ge.add(n * 8), pair(*g0.add(n * S), *g1.add(n * S)));
                        let (d0, d1) = (*dg0.add(n * S), *dg1.add(n * S));
                        _mm512_storeu_pd(ge.add((nmax + n) * 8), pair(d0, d1));
                    }
                    for grp in 0..groups {
                        let z8 = _mm512_setzero_pd();
                        let (mut rad, mut gx, mut gy, mut gz) = (z8, z8, z8, z8);
                        for l in 0..=lay.lmax {
                            let d = 2 * l + 1;
                            let nlv = lay.nmax_l[l];
                            let start = lay.start(z, l);
                            assert!((start + nlv * d) * rs <= dpm.len() && nlv <= nmax);
                            for mm in 0..d {
                                let (mut t, mut u) = (z8, z8);
                                for n in 0..nlv {
                                    let wv = _mm512_loadu_pd(
                                        dpm.as_ptr().add((start + n * d + mm) * rs + grp * 8),
                                    );
                                    t = _mm512_fmadd_pd(wv, _mm512_loadu_pd(ge.add(n * 8)), t);
                                    u = _mm512_fmadd_pd(
                                        wv,
                                        _mm512_loadu_pd(ge.add((nmax + n) * 8)),
                                        u,
                                    );
                                }
                                let q = l * l + mm;
                                let a0 = [0, 1, 2].map(|c| *dy0.add((3 * q + c) * S));
                                let a1 = [0, 1, 2].map(|c| *dy1.add((3 * q + c) * S));
                                rad = _mm512_fmadd_pd(u, pair(*y0.add(q * S), *y1.add(q * S)), rad);
                                gx = _mm512_fmadd_pd(t, pair(a0[0], a1[0]), gx);
                                gy = _mm512_fmadd_pd(t, pair(a0[1], a1[1]), gy);
                                gz = _mm512_fmadd_pd(t, pair(a0[2], a1[2]), gz);
                            }
                        }
                        let mut v = [[0.0; 8]; 4];
                        for (dst, src) in v.iter_mut().zip([rad, gx, gy, gz]) {
                            _mm512_storeu_pd(dst.as_mut_ptr(), src);
                        }
                        for a in 0..2 {
                            let k = ks[a];
                            let half = |x: &[f64; 8]| -> [f64; LANES] {
                                std::array::from_fn(|c| x[a * LANES + c])
                            };
                            let lanes = [half(&v[0]), half(&v[1]), half(&v[2]), half(&v[3])];
                            let out = &mut outs[a][k * ne..(k + 1) * ne];
                            lane_outputs(
                                lanes,
                                ws[a].un[k],
                                ws[a].rn[k],
                                rij[a][k],
                                core[a][k],
                                &tables.core,
                                grp * LANES,
                                out,
                            );
                        }
                    }
                }
            }
        }
        [sc.core0, sc.core1] = core;
    }

    /// The two-atom lane pass with 512-bit registers (see
    /// [`Model::atom_energy_grad_lanes_pair`]): per group of lanes, atom 0's lanes in the low
    /// and atom 1's in the high half of each register. The adjoints `dE/dp` of both atoms go in
    /// atom 0's workspace (`dpm`, rows of `2 × width`: per group, atom 0's lanes then atom 1's),
    /// and the node values repeated per lane in `pe`. Bitwise equal to two calls of the AVX2
    /// kernel: the same fused multiply-adds and products on every lane, in the same order.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn lanes_pair_avx512(&self, si: usize, tables: &MemberTables, atoms: [LaneAtom<'_>; 2]) {
        // SAFETY: the caller's contract (the same CPU features).
        unsafe {
            match tables.width / LANES {
                1 => self.lanes_pair_avx512_g::<1>(si, tables, atoms),
                2 => self.lanes_pair_avx512_g::<2>(si, tables, atoms),
                _ => self.lanes_pair_avx512_g::<0>(si, tables, atoms),
            }
        }
    }

    /// [`Model::lanes_pair_avx512`] for `G` lane groups (`G` = 0: any number, read from the
    /// tables), so that the row strides of the common cases are constants.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn lanes_pair_avx512_g<const G: usize>(
        &self,
        si: usize,
        tables: &MemberTables,
        atoms: [LaneAtom<'_>; 2],
    ) {
        use std::arch::x86_64::*;
        let [a0, a1] = atoms;
        let groups = if G > 0 { G } else { tables.width / LANES };
        assert_eq!(
            groups * LANES,
            tables.width,
            "member tables of another width"
        );
        let (ne, w) = (tables.n_members, groups * LANES);
        assert!(
            tables.species == si,
            "member tables are for species {}, the atoms are species {si}",
            tables.species
        );
        for a in [&a0, &a1] {
            assert!(
                a.energies.len() == ne && a.grads.len() >= a.rij.len() * ne,
                "energies must hold {ne} values and grads {} entries",
                a.rij.len() * ne
            );
        }
        let der = &self.derived[si];
        let na = der.dag.n_a;
        let ni = der.internal.len();
        let nl = der.leaves.len();
        let nint = na + ni;
        assert!(
            tables.ct_int.len() == nint * w
                && tables.leaf_c.len() == nl * w
                && tables.core.len() == w,
            "member tables of another model"
        );
        let w2 = 2 * w;
        let LaneAtom {
            ws: ws0,
            rij: rij0,
            sj: sj0,
            energies: en0,
            grads: g0,
            b: b0,
        } = a0;
        let LaneAtom {
            ws: ws1,
            rij: rij1,
            sj: sj1,
            energies: en1,
            grads: g1,
            b: b1,
        } = a1;
        // Per atom: A, then the internal node values (as the single pass computes them).
        self.compute_a(ws0, si, rij0, sj0);
        self.compute_a(ws1, si, rij1, sj1);
        self.internal_values(ws0, si);
        self.internal_values(ws1, si);
        let pe_off = aligned_start(&mut ws0.pe, nint * 2 * LANES);
        let dp_off = aligned_start(&mut ws0.dpm, nint * w2);
        ws0.macc.clear();
        ws0.macc.resize(w2, 0.0);
        let ct = tables.ct_int.as_ptr();
        let lc = tables.leaf_c.as_ptr();
        // SAFETY (every raw access below): `pe` holds nint rows of 8, `dpm` nint rows of w2,
        // `ct_int` nint rows of w and `leaf_c` nl rows of w (asserted or resized above), and
        // every group offset satisfies go + LANES <= w, go8 + 8 <= w2. Node indices as in the
        // single pass: internal parents < na + k, leaf parents < nint, extras < na (validated
        // in `Derived::new`); leaf values go to p[nint + l] < p.len() (asserted above).
        unsafe {
            let pe = ws0.pe.as_mut_ptr().add(pe_off);
            let (p0, p1) = (ws0.p.as_mut_ptr(), ws1.p.as_mut_ptr());
            for n in 0..nint {
                let v =
                    _mm512_insertf64x4::<1>(_mm512_set1_pd(*p0.add(n)), _mm256_set1_pd(*p1.add(n)));
                _mm512_storeu_pd(pe.add(n * 8), v);
            }
            let dp = ws0.dpm.as_mut_ptr().add(dp_off);
            for n in 0..nint {
                for g in 0..groups {
                    let c = _mm256_loadu_pd(ct.add(n * w + g * LANES));
                    _mm512_storeu_pd(dp.add(n * w2 + g * 8), _mm512_broadcast_f64x4(c));
                }
            }
            let (pl0, pl1) = (p0.add(nint), p1.add(nint));
            let keep = b0.is_some() || b1.is_some();
            let gls = &der.group_leaves;
            for g in 0..groups {
                let (go, go8) = (g * LANES, g * 8);
                // Row `r` of a (rows × w) table, this group's lanes repeated for both atoms (a
                // macro: closures may not inherit the target features).
                macro_rules! row {
                    ($base:expr, $r:expr) => {
                        _mm512_broadcast_f64x4(_mm256_loadu_pd($base.add($r * w + go)))
                    };
                }
                // One leaf of a parent group, as in `members_impl`.
                macro_rules! leaf {
                    ($j:expr, $pp:expr, $s:expr, $keep:expr) => {{
                        let [ex, l] = *gls.get_unchecked($j);
                        let (ex, l) = (ex as usize, l as usize);
                        let ae = _mm512_loadu_pd(pe.add(ex * 8));
                        if $keep {
                            let v = _mm512_mul_pd($pp, ae);
                            *pl0.add(l) = _mm512_cvtsd_f64(v);
                            *pl1.add(l) = _mm256_cvtsd_f64(_mm512_extractf64x4_pd::<1>(v));
                        }
                        let cv = row!(lc, l);
                        $s = _mm512_fmadd_pd(ae, cv, $s);
                        let dex = dp.add(ex * w2 + go8);
                        _mm512_storeu_pd(dex, _mm512_fmadd_pd($pp, cv, _mm512_loadu_pd(dex)));
                    }};
                }
                let (mut e0, mut e1) = (_mm512_setzero_pd(), _mm512_setzero_pd());
                let mut n = 0;
                while n + 1 < nint {
                    e0 = _mm512_fmadd_pd(_mm512_loadu_pd(pe.add(n * 8)), row!(ct, n), e0);
                    e1 = _mm512_fmadd_pd(_mm512_loadu_pd(pe.add((n + 1) * 8)), row!(ct, n + 1), e1);
                    n += 2;
                }
                if n < nint {
                    e0 = _mm512_fmadd_pd(_mm512_loadu_pd(pe.add(n * 8)), row!(ct, n), e0);
                }
                // The leaves grouped by parent, as in `members_impl`; the loop twice, with the
                // leaf-value stores and without (a constant flag).
                macro_rules! leaves {
                    ($keep:expr) => {{
                        let mut j = 0usize;
                        for (gi, &[par, end]) in der.leaf_groups.iter().enumerate() {
                            let (par, end) = (par as usize, end as usize);
                            let pp = _mm512_loadu_pd(pe.add(par * 8));
                            let (mut s0, mut s1) = (_mm512_setzero_pd(), _mm512_setzero_pd());
                            while j + 1 < end {
                                leaf!(j, pp, s0, $keep);
                                leaf!(j + 1, pp, s1, $keep);
                                j += 2;
                            }
                            if j < end {
                                leaf!(j, pp, s0, $keep);
                                j += 1;
                            }
                            let sum = _mm512_add_pd(s0, s1);
                            let dpar = dp.add(par * w2 + go8);
                            _mm512_storeu_pd(dpar, _mm512_add_pd(_mm512_loadu_pd(dpar), sum));
                            if gi % 2 == 0 {
                                e0 = _mm512_fmadd_pd(pp, sum, e0);
                            } else {
                                e1 = _mm512_fmadd_pd(pp, sum, e1);
                            }
                        }
                    }};
                }
                if keep && g == 0 {
                    leaves!(true);
                } else {
                    leaves!(false);
                }
                // The internal nodes in reverse, a run of siblings at a time, as in
                // `members_impl`.
                let mut k = ni;
                while k > 0 {
                    let par = der.internal.get_unchecked(k - 1)[0] as usize;
                    let pv = _mm512_loadu_pd(pe.add(par * 8));
                    let mut sum = _mm512_setzero_pd();
                    while k > 0 && der.internal.get_unchecked(k - 1)[0] as usize == par {
                        k -= 1;
                        let ex = der.internal.get_unchecked(k)[1] as usize;
                        let av = _mm512_loadu_pd(pe.add(ex * 8));
                        let d = _mm512_loadu_pd(dp.add((na + k) * w2 + go8));
                        sum = _mm512_fmadd_pd(av, d, sum);
                        let dex = dp.add(ex * w2 + go8);
                        _mm512_storeu_pd(dex, _mm512_fmadd_pd(pv, d, _mm512_loadu_pd(dex)));
                    }
                    let dpar = dp.add(par * w2 + go8);
                    _mm512_storeu_pd(dpar, _mm512_add_pd(_mm512_loadu_pd(dpar), sum));
                }
                let (mut s0, mut s1) = ([0.0; 8], [0.0; 8]);
                _mm512_storeu_pd(s0.as_mut_ptr(), e0);
                _mm512_storeu_pd(s1.as_mut_ptr(), e1);
                for c in 0..8 {
                    ws0.macc[go8 + c] = s0[c] + s1[c];
                }
            }
        }
        for k in 0..ne {
            let (g, c) = (k / LANES, k % LANES);
            en0[k] = tables.e0[k] + ws0.macc[g * 8 + c];
            en1[k] = tables.e0[k] + ws0.macc[g * 8 + LANES + c];
        }
        let dpm = &ws0.dpm[dp_off..dp_off + na * w2];
        let mut sc = std::mem::take(&mut ws1.pair);
        // SAFETY: the CPU features of this function.
        unsafe {
            self.lane_forces_pair(
                [&*ws0, &*ws1],
                si,
                [rij0, rij1],
                [sj0, sj1],
                tables,
                dpm,
                [en0, en1],
                [g0, g1],
                &mut sc,
            )
        };
        ws1.pair = sc;
        if let Some(b) = b0 {
            self.basis_from_fused(ws0, si, b);
        }
        if let Some(b) = b1 {
            self.basis_from_fused(ws1, si, b);
        }
    }
}
