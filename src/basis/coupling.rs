//! Rotation-invariant couplings of products of spherical-harmonic components.
//!
//! An invariant of order `nu` is `sum_{m1..m_nu} C_{m1..m_nu} A_{v1 m1} ... A_{v_nu m_nu}` with
//! `C` a rotation-invariant tensor of `V_l1 ⊗ ... ⊗ V_l_nu` (real harmonics of `sph.rs`).
//! Candidates come from chained Clebsch–Gordan coupling `((l1 l2)L1 l3)L2 ... -> 0` over all
//! intermediate `L`; complex Clebsch–Gordan tensors are carried into our real basis by the unitary
//! complex→real change of basis, giving real invariant tensors. Because the `A`s commute, a tensor
//! is symmetrized over permutations of positions with identical labels; linearly dependent
//! candidates are then removed by Gram–Schmidt, so every kept coupling is a new function.

use nalgebra::Complex;
use std::collections::HashMap;

type C64 = Complex<f64>;

fn factorial(n: i32) -> f64 {
    debug_assert!((0..=170).contains(&n));
    (1..=n).fold(1.0, |acc, k| acc * k as f64)
}

/// Complex Clebsch–Gordan coefficient `<j1 m1 j2 m2 | j m>` (integer angular momenta), Racah's
/// formula. Zero where selection rules fail.
pub fn clebsch_gordan(j1: i32, m1: i32, j2: i32, m2: i32, j: i32, m: i32) -> f64 {
    if m1 + m2 != m
        || j < (j1 - j2).abs()
        || j > j1 + j2
        || m1.abs() > j1
        || m2.abs() > j2
        || m.abs() > j
    {
        return 0.0;
    }
    let pre = ((2 * j + 1) as f64
        * factorial(j + j1 - j2)
        * factorial(j - j1 + j2)
        * factorial(j1 + j2 - j)
        / factorial(j1 + j2 + j + 1))
    .sqrt()
        * (factorial(j + m)
            * factorial(j - m)
            * factorial(j1 - m1)
            * factorial(j1 + m1)
            * factorial(j2 - m2)
            * factorial(j2 + m2))
        .sqrt();
    let kmin = 0.max(j2 - j - m1).max(j1 + m2 - j);
    let kmax = (j1 + j2 - j).min(j1 - m1).min(j2 + m2);
    let mut sum = 0.0;
    for k in kmin..=kmax {
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        sum += sign
            / (factorial(k)
                * factorial(j1 + j2 - j - k)
                * factorial(j1 - m1 - k)
                * factorial(j2 + m2 - k)
                * factorial(j - j2 + m1 + k)
                * factorial(j - j1 - m2 + k));
    }
    pre * sum
}

/// Nonzero entries of column `m` (complex index, `-l..=l`) of the conjugated complex→real matrix:
/// pairs `(k, conj(U[k][m]))` where `Y^R_k = sum_m U[k][m] Y^C_m` (Condon–Shortley complex `Y`).
fn u_conj_column(m: i32) -> Vec<(i32, C64)> {
    let r = std::f64::consts::FRAC_1_SQRT_2;
    let i = C64::new(0.0, 1.0);
    let one = C64::new(1.0, 0.0);
    if m == 0 {
        return vec![(0, one)];
    }
    let ma = m.abs();
    let sign = if ma % 2 == 0 { 1.0 } else { -1.0 };
    // Rows: k = +ma: U = (-1)^ma/√2 at m=+ma, 1/√2 at m=-ma.
    //       k = -ma: U = -i(-1)^ma/√2 at m=+ma, i/√2 at m=-ma.
    let (u_pos, u_neg) = if m > 0 {
        (one * (sign * r), -i * (sign * r))
    } else {
        (one * r, i * r)
    };
    vec![(ma, u_pos.conj()), (-ma, u_neg.conj())]
}

/// Real invariant tensor of `V_l1 ⊗ V_l2 ⊗ V_L`, indexed `[(m1+l1) * d2 + (m2+l2)] * dL + (M+L)`,
/// unit Frobenius norm. `None` if the triangle condition fails.
pub fn real_coupling(l1: usize, l2: usize, big_l: usize) -> Option<Vec<f64>> {
    let (l1, l2, ll) = (l1 as i32, l2 as i32, big_l as i32);
    if ll < (l1 - l2).abs() || ll > l1 + l2 {
        return None;
    }
    let (d1, d2, d3) = (
        (2 * l1 + 1) as usize,
        (2 * l2 + 1) as usize,
        (2 * ll + 1) as usize,
    );
    let mut w = vec![C64::new(0.0, 0.0); d1 * d2 * d3];
    for m1 in -l1..=l1 {
        for m2 in -l2..=l2 {
            let m3 = -(m1 + m2);
            if m3.abs() > ll {
                continue;
            }
            // Invariant of V_l1 ⊗ V_l2 ⊗ V_L in the unconjugated complex basis:
            // <l1 m1 l2 m2 | L -m3> (-1)^m3, since conj(Y_LM) = (-1)^M Y_L,-M.
            let sign = if m3 % 2 == 0 { 1.0 } else { -1.0 };
            let wc = clebsch_gordan(l1, m1, l2, m2, ll, -m3) * sign;
            if wc == 0.0 {
                continue;
            }
            for (k1, u1) in u_conj_column(m1) {
                for (k2, u2) in u_conj_column(m2) {
                    for (k3, u3) in u_conj_column(m3) {
                        let idx = ((k1 + l1) as usize * d2 + (k2 + l2) as usize) * d3
                            + (k3 + ll) as usize;
                        w[idx] += u1 * u2 * u3 * wc;
                    }
                }
            }
        }
    }
    // The invariant space is one-dimensional and the representations are real, so real and
    // imaginary parts are proportional: keep the larger.
    let nre: f64 = w.iter().map(|c| c.re * c.re).sum();
    let nim: f64 = w.iter().map(|c| c.im * c.im).sum();
    let (vals, norm): (Vec<f64>, f64) = if nre >= nim {
        (w.iter().map(|c| c.re).collect(), nre.sqrt())
    } else {
        (w.iter().map(|c| c.im).collect(), nim.sqrt())
    };
    if norm < 1e-12 {
        return None;
    }
    Some(vals.into_iter().map(|v| v / norm).collect())
}

/// Cache of `real_coupling` results.
#[derive(Default)]
pub struct CouplingCache {
    map: HashMap<(usize, usize, usize), Option<Vec<f64>>>,
}

impl CouplingCache {
    fn get(&mut self, l1: usize, l2: usize, big_l: usize) -> Option<&Vec<f64>> {
        self.map
            .entry((l1, l2, big_l))
            .or_insert_with(|| real_coupling(l1, l2, big_l))
            .as_ref()
    }

    /// All chained-coupling invariant tensors for the degrees `ls` (flattened row-major over
    /// `m1..m_nu`, each `m` shifted by `l`), one per sequence of intermediate momenta. Empty if the
    /// total degree is odd (not inversion-invariant) or no coupling exists.
    pub fn chain_candidates(&mut self, ls: &[usize]) -> Vec<Vec<f64>> {
        let nu = ls.len();
        if nu == 0 || ls.iter().sum::<usize>() % 2 == 1 {
            return vec![];
        }
        match nu {
            1 => {
                if ls[0] == 0 {
                    vec![vec![1.0]]
                } else {
                    vec![]
                }
            }
            2 => {
                if ls[0] != ls[1] {
                    return vec![];
                }
                let d = 2 * ls[0] + 1;
                let mut t = vec![0.0; d * d];
                for k in 0..d {
                    t[k * d + k] = 1.0;
                }
                vec![t]
            }
            _ => {
                let mut out = Vec::new();
                // Start: tensor over (m1, m2, M1) for each L1.
                let lmax_inter = ls.iter().sum::<usize>();
                for l_first in 0..=lmax_inter {
                    let target = if nu == 3 { ls[2] } else { l_first };
                    if nu == 3 && l_first != target {
                        continue;
                    }
                    let Some(w) = self.get(ls[0], ls[1], target).cloned() else {
                        continue;
                    };
                    let prefix = (2 * ls[0] + 1) * (2 * ls[1] + 1);
                    self.extend_chain(ls, 2, w, prefix, target, &mut out);
                }
                out
            }
        }
    }

    /// `t` is indexed `[prefix][M]` with the intermediate momentum `big_l` coupling the first `k`
    /// degrees. Couple in `ls[k]`; at the last step the result must land on `ls[nu-1]`.
    fn extend_chain(
        &mut self,
        ls: &[usize],
        k: usize,
        t: Vec<f64>,
        prefix: usize,
        big_l: usize,
        out: &mut Vec<Vec<f64>>,
    ) {
        let nu = ls.len();
        if k == nu {
            // Only reached for nu == 3 (the tensor already spans all degrees).
            out.push(t);
            return;
        }
        if k == nu - 1 {
            // big_l must equal ls[nu-1]; the tensor is complete.
            if big_l == ls[nu - 1] {
                out.push(t);
            }
            return;
        }
        let lk = ls[k];
        let last_step = k == nu - 2;
        let (lo, hi) = (
            (big_l as i64 - lk as i64).unsigned_abs() as usize,
            big_l + lk,
        );
        for l_next in lo..=hi {
            if last_step && l_next != ls[nu - 1] {
                continue;
            }
            let Some(w) = self.get(big_l, lk, l_next).cloned() else {
                continue;
            };
            let (dl, dk, dn) = (2 * big_l + 1, 2 * lk + 1, 2 * l_next + 1);
            // new[p][mk][Mn] = sum_M t[p][M] * w[M][mk][Mn]
            let mut nt = vec![0.0; prefix * dk * dn];
            for p in 0..prefix {
                for mm in 0..dl {
                    let tv = t[p * dl + mm];
                    if tv == 0.0 {
                        continue;
                    }
                    let wrow = &w[mm * dk * dn..(mm + 1) * dk * dn];
                    let orow = &mut nt[p * dk * dn..(p + 1) * dk * dn];
                    for (o, wv) in orow.iter_mut().zip(wrow) {
                        *o += tv * wv;
                    }
                }
            }
            if last_step {
                // The final index is m_nu itself: the tensor over all nu degrees is complete.
                out.push(nt);
            } else {
                self.extend_chain(ls, k + 1, nt, prefix * dk, l_next, out);
            }
        }
    }
}

/// Decode a flat index over `dims` (row-major) into per-position indices.
fn decode(mut idx: usize, dims: &[usize], out: &mut [usize]) {
    for k in (0..dims.len()).rev() {
        out[k] = idx % dims[k];
        idx /= dims[k];
    }
}

fn encode(ms: &[usize], dims: &[usize]) -> usize {
    ms.iter().zip(dims).fold(0, |acc, (m, d)| acc * d + m)
}

/// Permutations of `0..nu` that only exchange positions whose `groups` value is equal.
fn label_permutations(groups: &[usize]) -> Vec<Vec<usize>> {
    fn rec(
        groups: &[usize],
        pos: usize,
        cur: &mut Vec<usize>,
        used: &mut Vec<bool>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if pos == groups.len() {
            out.push(cur.clone());
            return;
        }
        for j in 0..groups.len() {
            if !used[j] && groups[j] == groups[pos] {
                used[j] = true;
                cur.push(j);
                rec(groups, pos + 1, cur, used, out);
                cur.pop();
                used[j] = false;
            }
        }
    }
    let mut out = Vec::new();
    rec(
        groups,
        0,
        &mut Vec::new(),
        &mut vec![false; groups.len()],
        &mut out,
    );
    out
}

/// One independent invariant for a label tuple, reduced to canonical monomials: each entry is
/// (`m` shifted by `l` for each position, coefficient). Within a run of identical labels the `m`s
/// are sorted, so every distinct product of `A`s appears once.
pub type CanonicalTerms = Vec<(Vec<u8>, f64)>;

/// Independent invariants for a sorted label tuple. `groups[k]` identifies the label at position
/// `k` (equal values = identical `A`s); `ls[k]` its degree. Returns one `CanonicalTerms` per kept
/// function; the underlying symmetrized tensors are orthonormal.
pub fn independent_invariants(
    cache: &mut CouplingCache,
    groups: &[usize],
    ls: &[usize],
) -> Vec<CanonicalTerms> {
    let nu = ls.len();
    let dims: Vec<usize> = ls.iter().map(|l| 2 * l + 1).collect();
    let candidates = cache.chain_candidates(ls);
    if candidates.is_empty() {
        return vec![];
    }
    let perms = label_permutations(groups);
    let size: usize = dims.iter().product();
    let mut ms = vec![0usize; nu];
    let mut pm = vec![0usize; nu];
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for cand in candidates {
        // Symmetrize over label-preserving permutations.
        let mut sym = if perms.len() == 1 {
            cand
        } else {
            let mut s = vec![0.0; size];
            for (idx, v) in cand.iter().enumerate() {
                if *v == 0.0 {
                    continue;
                }
                decode(idx, &dims, &mut ms);
                for p in &perms {
                    for k in 0..nu {
                        pm[p[k]] = ms[k];
                    }
                    s[encode(&pm, &dims)] += v;
                }
            }
            let inv = 1.0 / perms.len() as f64;
            s.iter_mut().for_each(|x| *x *= inv);
            s
        };
        let norm0 = sym.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm0 < 1e-10 {
            continue;
        }
        // Twice-repeated modified Gram–Schmidt against the kept tensors.
        for _ in 0..2 {
            for b in &basis {
                let dot: f64 = sym.iter().zip(b).map(|(x, y)| x * y).sum();
                sym.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
            }
        }
        let norm = sym.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm < 1e-8 * norm0 {
            continue;
        }
        sym.iter_mut().for_each(|x| *x /= norm);
        basis.push(sym);
    }
    basis
        .into_iter()
        .map(|t| {
            let mut acc: HashMap<Vec<u8>, f64> = HashMap::new();
            for (idx, v) in t.iter().enumerate() {
                if v.abs() < 1e-14 {
                    continue;
                }
                decode(idx, &dims, &mut ms);
                // Canonical order: sort m within runs of equal groups (groups are sorted).
                let mut key: Vec<u8> = ms.iter().map(|&m| m as u8).collect();
                let mut start = 0;
                while start < nu {
                    let mut end = start + 1;
                    while end < nu && groups[end] == groups[start] {
                        end += 1;
                    }
                    key[start..end].sort_unstable();
                    start = end;
                }
                *acc.entry(key).or_insert(0.0) += v;
            }
            let mut terms: CanonicalTerms =
                acc.into_iter().filter(|(_, v)| v.abs() > 1e-13).collect();
            terms.sort_by(|a, b| a.0.cmp(&b.0));
            terms
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basis::sph::{SphHarm, num_lm};
    use nalgebra::{Rotation3, Vector3};

    #[test]
    fn clebsch_gordan_known_values_and_orthogonality() {
        assert!((clebsch_gordan(1, 1, 1, -1, 0, 0) - 1.0 / 3f64.sqrt()).abs() < 1e-14);
        assert!((clebsch_gordan(1, 0, 1, 0, 0, 0) + 1.0 / 3f64.sqrt()).abs() < 1e-14);
        assert!((clebsch_gordan(1, 1, 1, 0, 2, 1) - 0.5f64.sqrt()).abs() < 1e-14);
        assert!((clebsch_gordan(2, 0, 2, 0, 0, 0) - 1.0 / 5f64.sqrt()).abs() < 1e-14);
        for (j1, j2) in [(1i32, 2i32), (3, 3), (2, 4)] {
            for j in (j1 - j2).abs()..=(j1 + j2) {
                for jp in (j1 - j2).abs()..=(j1 + j2) {
                    for m in -j.min(jp)..=j.min(jp) {
                        let mut s = 0.0;
                        for m1 in -j1..=j1 {
                            let m2 = m - m1;
                            s += clebsch_gordan(j1, m1, j2, m2, j, m)
                                * clebsch_gordan(j1, m1, j2, m2, jp, m);
                        }
                        let e = if j == jp { 1.0 } else { 0.0 };
                        assert!(
                            (s - e).abs() < 1e-12,
                            "j1={j1} j2={j2} j={j} jp={jp} m={m}: {s}"
                        );
                    }
                }
            }
        }
    }

    fn random_rotation(seed: u64) -> Rotation3<f64> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 11) as f64) / ((1u64 << 53) as f64)
        };
        let axis = Vector3::new(next() - 0.5, next() - 0.5, next() - 0.5).normalize();
        Rotation3::from_axis_angle(&nalgebra::Unit::new_normalize(axis), 6.0 * next())
    }

    /// Contract a tensor over `ls` with harmonics of one direction per position.
    fn contract(t: &[f64], ls: &[usize], dirs: &[[f64; 3]], sh: &mut SphHarm) -> f64 {
        let ys: Vec<Vec<f64>> = dirs
            .iter()
            .map(|d| {
                let mut y = vec![0.0; num_lm(sh.lmax())];
                sh.eval(*d, &mut y);
                y
            })
            .collect();
        let dims: Vec<usize> = ls.iter().map(|l| 2 * l + 1).collect();
        let mut ms = vec![0; ls.len()];
        let mut total = 0.0;
        for (idx, v) in t.iter().enumerate() {
            decode(idx, &dims, &mut ms);
            let mut p = *v;
            for k in 0..ls.len() {
                p *= ys[k][ls[k] * ls[k] + ms[k]];
            }
            total += p;
        }
        total
    }

    #[test]
    fn chained_couplings_are_rotation_invariant() {
        let mut cache = CouplingCache::default();
        let mut sh = SphHarm::new(4);
        let dirs = [
            [0.3, -1.0, 0.5],
            [1.1, 0.2, -0.4],
            [-0.7, 0.8, 0.9],
            [0.1, 0.4, -1.3],
            [0.5, 0.5, 0.2],
        ];
        for ls in [
            vec![1, 1],
            vec![1, 1, 2],
            vec![2, 3, 3],
            vec![1, 1, 1, 1],
            vec![2, 1, 3, 2],
            vec![1, 2, 2, 1, 2],
            vec![3, 3, 4],
        ] {
            let cands = cache.chain_candidates(&ls);
            assert!(!cands.is_empty(), "{ls:?}");
            for (ci, t) in cands.iter().enumerate() {
                let v0 = contract(t, &ls, &dirs[..ls.len()], &mut sh);
                assert!(
                    v0.abs() > 1e-6,
                    "{ls:?} candidate {ci} vanishes on generic directions"
                );
                for seed in 0..3 {
                    let rot = random_rotation(seed);
                    let rd: Vec<[f64; 3]> = dirs[..ls.len()]
                        .iter()
                        .map(|d| {
                            let v = rot * Vector3::new(d[0], d[1], d[2]);
                            [v.x, v.y, v.z]
                        })
                        .collect();
                    let v1 = contract(t, &ls, &rd, &mut sh);
                    assert!(
                        (v0 - v1).abs() < 1e-10 * v0.abs().max(1.0),
                        "{ls:?} cand {ci}: {v0} vs {v1}"
                    );
                }
            }
        }
    }

    #[test]
    fn four_vectors_have_three_invariants_and_symmetrization_reduces() {
        // V1^{⊗4} has 3 independent invariants (intermediate L = 0, 1, 2).
        let mut cache = CouplingCache::default();
        let distinct = independent_invariants(&mut cache, &[0, 1, 2, 3], &[1, 1, 1, 1]);
        assert_eq!(distinct.len(), 3);
        // All four identical: only (a·a)^2 survives.
        let same = independent_invariants(&mut cache, &[0, 0, 0, 0], &[1, 1, 1, 1]);
        assert_eq!(same.len(), 1);
        // Two pairs of identical vectors a,a,b,b: (a·a)(b·b) and (a·b)^2.
        let pairs = independent_invariants(&mut cache, &[0, 0, 1, 1], &[1, 1, 1, 1]);
        assert_eq!(pairs.len(), 2);
        // Three identical l=1 vectors cannot make a true scalar (odd degree): none.
        assert!(independent_invariants(&mut cache, &[0, 0, 0], &[1, 1, 1]).is_empty());
        // Three l=2 identical: exactly one (the cubic invariant of a symmetric traceless tensor).
        assert_eq!(
            independent_invariants(&mut cache, &[0, 0, 0], &[2, 2, 2]).len(),
            1
        );
    }
}
