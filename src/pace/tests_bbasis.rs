//! Tests of the B-basis reader and the active-set files: Clebsch–Gordan coefficients, coupling
//! trees, the libstdc++ sort, rotation invariance of the projections, B-basis energies equal to
//! those of the C-tilde conversion, malformed potentials and `.asi` files rejected with the key,
//! line or element of the fault. Agreement with ML-PACE itself is in tests/pace_extrapolation.rs.

use super::*;
use crate::pace::asi::{self, AsiMatrix, test_support};
use std::path::PathBuf;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn load(name: &str) -> BBasisPotential {
    BBasisPotential::load(&repo(&format!("tests/data/pace/bbasis_{name}.yaml")))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn sym(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

// ---------------------------------------------------------------------------------------------
// Couplings.

#[test]
fn clebsch_gordan_values() {
    let mut c = CgCache::default();
    let s3 = 3f64.sqrt();
    let close = |a: f64, b: f64| (a - b).abs() <= 4.0 * f64::EPSILON * b.abs();
    assert!(close(c.get(1, 0, 1, 0, 0, 0), -1.0 / s3));
    assert!(close(c.get(1, 1, 1, -1, 0, 0), 1.0 / s3));
    assert!(close(c.get(1, 1, 1, -1, 2, 0), 1.0 / 6f64.sqrt()));
    assert!(close(c.get(1, 0, 1, 0, 2, 0), (2.0f64 / 3.0).sqrt()));
    assert!(close(c.get(2, 2, 1, -1, 1, 1), (3.0f64 / 5.0).sqrt()));
    assert_eq!(c.get(1, 0, 1, 0, 1, 0), 0.0);
    assert_eq!(c.get(1, 1, 1, 1, 1, 1), 0.0, "m1 + m2 != m");
    assert_eq!(c.get(3, 0, 1, 0, 1, 0), 0.0, "triangle");
    // Stretched states are 1.
    for j1 in 0..=12 {
        for j2 in 0..=12 {
            assert_eq!(c.get(j1, j1, j2, j2, j1 + j2, j1 + j2), 1.0, "{j1} {j2}");
        }
    }
    // Orthonormality of the coupled states, up to j = 10 (intermediate L's reach 2 lmax).
    for (j1, j2) in [(1i32, 1i32), (2, 3), (4, 4), (6, 5), (10, 10)] {
        for jj in (j1 - j2).abs()..=(j1 + j2) {
            for kk in (j1 - j2).abs()..=(j1 + j2) {
                for m in -jj.min(kk)..=jj.min(kk) {
                    let mut s = 0.0;
                    for m1 in -j1..=j1 {
                        let m2 = m - m1;
                        if m2.abs() <= j2 {
                            s += c.get(j1, m1, j2, m2, jj, m) * c.get(j1, m1, j2, m2, kk, m);
                        }
                    }
                    let want = if jj == kk { 1.0 } else { 0.0 };
                    assert!((s - want).abs() < 1e-14, "{j1} {j2} {jj} {kk} {m}: {s}");
                }
            }
        }
    }
}

#[test]
fn coupling_trees_are_ml_paces() {
    let want: [&[[usize; 3]]; 6] = [
        &[[0, 1, 2]],
        &[[0, 1, 3], [3, 2, 4]],
        &[[0, 1, 4], [2, 3, 5], [4, 5, 6]],
        &[[0, 1, 5], [2, 3, 6], [5, 6, 7], [7, 4, 8]],
        &[[0, 1, 6], [2, 3, 7], [4, 5, 8], [6, 7, 9], [8, 9, 10]],
        &[
            [0, 1, 7],
            [2, 3, 8],
            [4, 5, 9],
            [7, 8, 10],
            [9, 10, 11],
            [11, 6, 12],
        ],
    ];
    for (k, w) in want.iter().enumerate() {
        assert_eq!(coupling_tree(k + 2).unwrap(), *w, "rank {}", k + 2);
    }
    for r in 2..=MAX_RANK {
        assert_eq!(coupling_tree(r).unwrap().len(), r - 1);
    }
}

#[test]
fn m_combinations_of_a_rank_2_function() {
    let mut c = CgCache::default();
    let tree = coupling_tree(2).unwrap();
    let (ms, cg) = ms_cg_list(&[1, 1], &[], &tree, &mut c);
    // Half basis: (1, -1) doubled, (0, 0); (-1, 1) left out.
    assert_eq!(ms, vec![1, -1, 0, 0]);
    assert!((cg[0] - 2.0 / 3f64.sqrt()).abs() < 1e-15);
    assert!((cg[1] + 1.0 / 3f64.sqrt()).abs() < 1e-15);
}

/// Functions with equal n and l and different `lint` never compare equal in ML-PACE's order
/// (their m-combination lists differ), so the projection order does not hinge on how the sort
/// treats ties, except for functions given twice.
#[test]
fn different_lint_never_tie() {
    let mut cgc = CgCache::default();
    for (rank, lmax) in [(3usize, 3u16), (4, 3), (5, 2), (6, 1)] {
        let tree = coupling_tree(rank).unwrap();
        let nl = rank - 2;
        let mut ls = vec![0u16; rank];
        loop {
            if ls.iter().sum::<u16>() % 2 == 0 {
                let mut seen: Vec<(Vec<u16>, Vec<i8>)> = vec![];
                let mut lint = vec![0u16; nl];
                loop {
                    let ok = match rank {
                        3 | 5 => lint[nl - 1] == ls[rank - 1],
                        _ => lint[nl - 1] == lint[nl - 2],
                    };
                    if ok {
                        let (ms, cg) = ms_cg_list(&ls, &lint, &tree, &mut cgc);
                        if !cg.is_empty() {
                            for (other, m) in &seen {
                                assert_ne!(*m, ms, "ls {ls:?}: lint {other:?} and {lint:?} tie");
                            }
                            seen.push((lint.clone(), ms));
                        }
                    }
                    if !odometer(&mut lint, 2 * lmax) {
                        break;
                    }
                }
            }
            if !odometer(&mut ls, lmax) {
                break;
            }
        }
    }
}

fn odometer(v: &mut [u16], max: u16) -> bool {
    for x in v.iter_mut() {
        if *x < max {
            *x += 1;
            return true;
        }
        *x = 0;
    }
    false
}

/// `std_sort` and `heap_sort` put tied elements where libstdc++'s `std::sort` and
/// `std::partial_sort(first, last, last)` do. The hashes are FNV-1a (64 bit) of the permutations
/// produced by GCC 13's libstdc++ on the same keys: `n` keys `splitmix64(seed) % k` paired with
/// their index, compared by key only.
#[test]
fn sort_matches_libstdcxx() {
    let cases = [
        (40, 3, 1, 0xabae_84b0_eb62_b685u64, 0x63aa_c413_f330_fdf5u64),
        (100, 5, 2, 0x817d_53f8_5703_dc65, 0x4b82_fadb_0230_6f25),
        (257, 4, 3, 0x1816_adf6_21b4_551a, 0x0787_fee6_f48c_52ca),
        (1000, 7, 4, 0x7e91_7568_e913_6b1d, 0x27a1_c88c_2873_1339),
    ];
    fn fnv(v: &[(u64, u32)]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &(_, i) in v {
            for b in i.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
    fn by_key(a: &(u64, u32), b: &(u64, u32)) -> bool {
        a.0 < b.0
    }
    for (n, k, seed, want_sort, want_heap) in cases {
        let mut rng = Rng(seed);
        let v: Vec<(u64, u32)> = (0..n).map(|i| (rng.next_u64() % k, i as u32)).collect();
        let mut s = v.clone();
        std_sort(&mut s, by_key);
        assert!(s.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(fnv(&s), want_sort, "std::sort, n = {n}");
        let mut h = v.clone();
        heap_sort(&mut h, by_key);
        assert!(h.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(fnv(&h), want_heap, "heap sort, n = {n}");
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// A rotation matrix (Rodrigues) about `axis` by `angle`.
fn rotation(axis: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
    let n = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let [x, y, z] = [axis[0] / n, axis[1] / n, axis[2] / n];
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

/// Neighbours of a centre atom: random directions at 2.1 to 4.9 Å, random species.
fn environment(rng: &mut Rng, n: usize, ne: usize) -> (Vec<[f64; 3]>, Vec<i32>) {
    let mut rij = vec![];
    let mut sj = vec![];
    while rij.len() < n {
        let v = [rng.sym(), rng.sym(), rng.sym()];
        let d = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        if !(0.2..=1.0).contains(&d) {
            continue;
        }
        let r = 2.1 + 2.8 * (rng.sym() + 1.0) / 2.0;
        rij.push([v[0] / d * r, v[1] / d * r, v[2] / d * r]);
        sj.push(((rng.sym() + 1.0) / 2.0 * ne as f64) as i32 % ne as i32);
    }
    (rij, sj)
}

#[test]
fn projections_are_rotation_invariant() {
    let pot = load("alcu");
    let mut rng = Rng(3);
    let mut ws = PaceScratch::default();
    for si in 0..2 {
        let (rij, sj) = environment(&mut rng, 14, 2);
        let r = rotation([0.3, -0.5, 0.8], 1.1);
        // Rotated and in reverse order.
        let mut rot: Vec<[f64; 3]> = rij
            .iter()
            .map(|v| {
                let mut w = [0.0; 3];
                for a in 0..3 {
                    w[a] = (0..3).map(|b| r[a][b] * v[b]).sum();
                }
                w
            })
            .collect();
        rot.reverse();
        let srot: Vec<i32> = sj.iter().rev().copied().collect();
        for linear in [true, false] {
            let n = if linear {
                pot.nprojections_linear(si)
            } else {
                pot.nprojections(si)
            };
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            if linear {
                pot.atom_projections_linear(&mut ws, si, &rij, &sj, &mut a)
                    .unwrap();
                pot.atom_projections_linear(&mut ws, si, &rot, &srot, &mut b)
                    .unwrap();
            } else {
                pot.atom_projections(&mut ws, si, &rij, &sj, &mut a)
                    .unwrap();
                pot.atom_projections(&mut ws, si, &rot, &srot, &mut b)
                    .unwrap();
            }
            let mut nonzero = 0;
            for k in 0..n {
                let scale = a[k].abs().max(1e-12);
                assert!(
                    (a[k] - b[k]).abs() <= 1e-11 * scale,
                    "species {si} linear {linear} projection {k} ({}): {} vs {}",
                    pot.function_labels(si)[k % pot.nfunctions(si)],
                    a[k],
                    b[k]
                );
                nonzero += (a[k].abs() > 1e-8) as usize;
            }
            // Every function sees this environment (none is invariant by accident of zeros).
            assert!(
                nonzero > n * 9 / 10,
                "{nonzero} of {n} projections non-zero"
            );
        }
    }
}

/// The energy through the B functions equals the energy of the converted C-tilde model, for
/// every potential (density, ZBL and distance inner cutoffs).
#[test]
fn b_basis_energy_equals_c_tilde_energy() {
    for name in ["alcu", "cu_zbl", "cu_distance"] {
        let pot = load(name);
        let ne = pot.elements().len();
        let mut rng = Rng(5);
        let mut ws = PaceScratch::default();
        let mut grad = vec![];
        for trial in 0..6 {
            // Include atoms inside the inner cutoffs (1.2 to 2.1 Å).
            let (mut rij, sj) = environment(&mut rng, 12, ne);
            if trial % 2 == 1 {
                let s = 0.55 + 0.1 * trial as f64 / 6.0;
                rij[0] = [rij[0][0] * s, rij[0][1] * s, rij[0][2] * s];
            }
            let si = trial % ne;
            let e_b = pot.atom_energy(&mut ws, si, &rij, &sj).unwrap();
            grad.resize(rij.len(), [0.0; 3]);
            let e_c = pot
                .model()
                .atom_energy_grad(&mut ws, si, &rij, &sj, &mut grad)
                .unwrap();
            assert!(
                (e_b - e_c).abs() <= 1e-12 * e_c.abs().max(1.0),
                "{name} trial {trial}: B {e_b} vs C-tilde {e_c}"
            );
        }
    }
}

#[test]
fn function_counts_and_order() {
    let pot = load("alcu");
    assert_eq!(pot.elements(), ["Al", "Cu"]);
    // 33 functions in block Al (one skipped) and 18 in 'Al Cu' (one skipped).
    assert_eq!(pot.nfunctions(0), 32 + 18);
    assert_eq!(pot.nprojections(0), 2 * 50);
    assert_eq!(pot.projection_sizes(), vec![(50, 100), (49, 98)]);
    let labels = pot.function_labels(0);
    // Rank 1 first, sorted by species then n.
    assert_eq!(labels[0], "Al Al nr=[1] nl=[0]");
    assert_eq!(labels[4], "Al Al nr=[6] nl=[0]");
    assert_eq!(labels[5], "Al Cu nr=[1] nl=[0]");
    let rank = |l: &str| l.split(" nr=").next().unwrap().split(' ').count() - 1;
    assert!(labels.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])));
    // Compression merges the m-tuples of equal factors and sorts the factors: `Al Al Cu Al Cu`
    // becomes `Al Al Al Cu Cu` (lint kept as it was, as in ML-PACE); `Al Cu Al` has nothing to
    // merge and keeps its order.
    let has = |l: &str| labels.iter().any(|x| x == l);
    assert!(has(
        "Al Al Al Cu Cu nr=[1, 1, 1, 1] nl=[1, 1, 1, 1] lint=[0, 0]"
    ));
    assert!(!labels.iter().any(|x| x.starts_with("Al Al Cu Al Cu")));
    assert!(has("Al Cu Al nr=[2, 1] nl=[2, 2]"));
}

#[test]
fn grades_of_a_structure() {
    let pot = load("alcu");
    let sizes = pot.projection_sizes();
    let mut rng = Rng(9);
    let matrices: Vec<AsiMatrix> = sizes
        .iter()
        .map(|&(n, _)| AsiMatrix {
            n,
            data: (0..n * n).map(|_| rng.sym()).collect(),
        })
        .collect();
    let set = asi::ActiveSet {
        elements: pot.elements().to_vec(),
        linear: true,
        matrices,
    };
    let s = Structure {
        positions: vec![
            [0.0, 0.0, 0.0],
            [2.5, 0.1, 0.2],
            [0.3, 2.4, -0.5],
            [9.0, 9.0, 9.0],
        ],
        symbols: ["Al", "Cu", "Al", "Cu"].map(String::from).to_vec(),
        ..Default::default()
    };
    let g = pot.extrapolation_grades(&s, &set).unwrap();
    assert_eq!(g.len(), 4);
    assert!(g[..3].iter().all(|&x| x > 0.0 && x.is_finite()));
    assert_eq!(g[3], 0.0, "an isolated atom has no projections");
    // By hand for atom 0.
    let nl = crate::neighbors::build(&s, pot.model().max_cutoff()).unwrap();
    let r = nl.range(0);
    let sj: Vec<i32> = nl.j[r.clone()].iter().map(|&j| (j % 2) as i32).collect();
    let mut x = vec![0.0; sizes[0].0];
    let mut ws = PaceScratch::default();
    pot.atom_projections_linear(&mut ws, 0, &nl.rij[r], &sj, &mut x)
        .unwrap();
    assert_eq!(g[0], asi::gamma(&set.matrices[0], &x));
    // A non-linear set of linear size is refused.
    let wrong = asi::ActiveSet {
        linear: false,
        ..set.clone()
    };
    let e = pot
        .extrapolation_grades(&s, &wrong)
        .unwrap_err()
        .to_string();
    assert!(e.contains("projections"), "{e}");
    let s2 = Structure {
        symbols: ["Al", "Ni", "Al", "Cu"].map(String::from).to_vec(),
        ..s
    };
    let e = pot.extrapolation_grades(&s2, &set).unwrap_err().to_string();
    assert!(e.contains("'Ni'"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Reading: accepted forms and malformed files.

/// A small valid two-element potential (rank 1 to 4), the base of the malformed-file cases.
const SMALL: &str = "\
metadata: {user: test, note: 'made up'}
global:
  DeltaSplineBins: 0.001
species:
  - speciesblock: Ni
    ndensityi: 2
    npoti: FinnisSinclairShiftedScaled
    parameters: [1, 1, 1, 0.5]
    nradmaxi: 2
    lmaxi: 2
    rcutij: 4.5
    dcutij: 0.01
    nradbaseij: 3
    radbase: ChebExpCos
    radparameters: [5.0]
    radcoefficients: [[[1, 0, 0], [1, 0.1, 0], [1, 0, 0.2]], [[0, 1, 0], [0, 1, 0], [0.1, 1, 0]]]
    core-repulsion: [2, 1]
    nbody:
      - {type: Ni Ni, nr: [1], nl: [0], c: [0.5, -0.2]}
      - {type: Ni Ni Ni, nr: [1, 2], nl: [1, 1], c: [0.05, 0.01]}
      - {type: Ni Ni Ni Ni, nr: [1, 1, 2], nl: [1, 1, 2], lint: [2], c: [0.01, 0.002]}
      - {type: Ni Ni Ni Ni Ni, nr: [1, 1, 1, 1], nl: [1, 1, 1, 1], lint: [2, 2], c: [0.001, 0.0]}
  - speciesblock: Al
    ndensityi: 2
    npoti: FinnisSinclair
    parameters: [1, 1, 0.5, 0.75]
    nradmaxi: 2
    lmaxi: 2
    rcutij: 4.8
    dcutij: 0.01
    nradbaseij: 3
    radbase: SBessel
    radparameters: [1.0]
    radcoefficients: [[[1, 0, 0], [1, 0, 0], [1, 0, 0]], [[0, 1, 0], [0, 1, 0], [0, 1, 0]]]
    core-repulsion: [2, 1]
    nbody:
      - {type: Al Al, nr: [2], nl: [0], c: [0.3, 0.1]}
      - {type: Al Al Al, nr: [1, 1], nl: [2, 2], c: [0.02, 0.03]}
  - speciesblock: Al Ni
    nradmaxi: 1
    lmaxi: 1
    rcutij: 4.6
    dcutij: 0.01
    nradbaseij: 2
    radbase: ChebPow
    radparameters: [2.0]
    radcoefficients: [[[1, 0.5], [0.5, 1]]]
    core-repulsion: [2, 1]
    nbody:
      - {type: Al Ni, nr: [1], nl: [0], c: [0.1, 0.2]}
      - {type: Al Ni Al, nr: [1, 1], nl: [1, 1], c: [0.01, 0.02]}
  - speciesblock: Ni Al
    nbody:
      - {type: Ni Al Al, nr: [1, 1], nl: [0, 0], c: [0.01, 0.02]}
";

fn parse(text: &str) -> Result<BBasisPotential, PaceError> {
    BBasisPotential::parse("t.yaml", text)
}

#[test]
fn small_potential_reads() {
    let pot = parse(SMALL).unwrap_or_else(|e| panic!("{e}"));
    // Elements in lexicographic order, whatever the block order.
    assert_eq!(pot.elements(), ["Al", "Ni"]);
    assert_eq!(pot.nfunctions(0), 4);
    assert_eq!(pot.nfunctions(1), 5);
    let m = pot.model();
    assert_eq!((m.lmax, m.nradmax, m.nradbase), (2, 2, 3));
    // 'Ni Al' took the radial basis of 'Al Ni' (cutoff 4.6).
    assert_eq!(m.pairs[1].spec.cut, 4.6);
    assert_eq!(m.pairs[2].spec.cut, 4.6);
    assert_eq!(m.pairs[2].spec.family, Family::ChebPow);
    // A scalar `c` for one density, `skip`, and `lint` below rank 3 (ignored, as in ML-PACE).
    let one = SMALL
        .replace("ndensityi: 2", "ndensityi: 1")
        .replace("parameters: [1, 1, 1, 0.5]", "parameters: [1, 1]")
        .replace("parameters: [1, 1, 0.5, 0.75]", "parameters: [1, 0.8]")
        .replace("c: [0.5, -0.2]", "c: 0.5")
        .replace("c: [0.05, 0.01]", "c: [0.05], skip: true")
        .replace(
            "nl: [2, 2], c: [0.02, 0.03]",
            "nl: [2, 2], lint: [7], c: [0.02]",
        );
    let one = regex_free_second_coefficients(&one);
    let pot = parse(&one).unwrap_or_else(|e| panic!("{e}\n{one}"));
    assert_eq!(pot.ndensity(0), 1);
    assert_eq!(pot.nfunctions(1), 4, "the skipped function is left out");
    // The old flat radcoefficients (k slowest, then n, then l) and embedding settings in a pair
    // block (ignored), as older pacemaker versions wrote them. Radial coefficients of the pair
    // Al-Ni as [n=0][l][k] (padded to the global nradbase 3): flat k0 l0, k0 l1, k1 l0, k1 l1.
    let crad = |p: &BBasisPotential| {
        let c = &p.model().pairs[1].spec.crad;
        [c[0], c[1], c[3], c[4]]
    };
    assert_eq!(crad(&parse(SMALL).unwrap()), [1.0, 0.5, 0.5, 1.0]);
    let old = SMALL.replace(
        "radcoefficients: [[[1, 0.5], [0.5, 1]]]",
        "radcoefficients: [1, 0.25, 0.5, 1]\n    rho_core_cut: 7\n    npoti: Morse",
    );
    let b = parse(&old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(crad(&b), [1.0, 0.5, 0.25, 1.0]);
    assert_eq!(b.model().species[0].rho_core_cut, 100000.0);
}

/// Drop the second value of every `c: [a, b]` list.
fn regex_free_second_coefficients(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("c: [") {
            Some(i) => {
                let rest = &l[i + 4..];
                let end = rest.find(']').unwrap();
                let first = rest[..end].split(',').next().unwrap();
                format!("{}c: [{first}{}", &l[..i], &rest[end..])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Line number (1-based) where `needle` first occurs in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("'{needle}' not in the text"));
    text[..at].matches('\n').count() + 1
}

#[test]
fn malformed_potentials_name_key_and_line() {
    // (replace, with, key of the error, line marker (text on the faulty line), message part)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "    lmaxi: 2\n    rcutij: 4.5",
            "    lmaxi: 2\n    lmaxx: 2\n    rcutij: 4.5",
            "species[0].lmaxx",
            "lmaxx",
            "unknown key",
        ),
        (
            "nl: [0], c: [0.5, -0.2]}",
            "nl: [0], c: [0.5, -0.2], foo: 1}",
            "species[0].nbody[0].foo",
            "foo: 1",
            "unknown key",
        ),
        (
            "global:",
            "globals: 1\nglobal:",
            "globals",
            "globals",
            "unknown key",
        ),
        (
            "radbase: SBessel",
            "radbase: Bessel",
            "species[1].radbase",
            "Bessel",
            "unknown radial basis",
        ),
        (
            "npoti: FinnisSinclair\n",
            "npoti: Morse\n",
            "species[1].npoti",
            "Morse",
            "unknown embedding",
        ),
        (
            "[[[1, 0.5], [0.5, 1]]]",
            "[[[1, 0.5], [0.5]]]",
            "species[2].radcoefficients",
            "[0.5]]]",
            "shape",
        ),
        (
            "[[[1, 0.5], [0.5, 1]]]",
            "[1, 0.5, 0.5]",
            "species[2].radcoefficients",
            "[1, 0.5, 0.5]",
            "3 numbers in the flat (old) layout",
        ),
        (
            "nr: [1, 2], nl: [1, 1]",
            "nr: [1, 2, 1], nl: [1, 1]",
            "species[0].nbody[1].nr",
            "nr: [1, 2, 1]",
            "needs 2",
        ),
        (
            "c: [0.05, 0.01]",
            "c: [0.05]",
            "species[0].nbody[1].c",
            "c: [0.05]}",
            "ndensityi = 2",
        ),
        (
            "c: [0.05, 0.01]",
            "c: [.nan, 0.01]",
            "species[0].nbody[1].c",
            ".nan",
            "not a finite number",
        ),
        (
            "nl: [1, 1, 2], lint: [2]",
            "nl: [1, 1, 2], lint: [1]",
            "species[0].nbody[2]",
            "lint: [1]",
            "last value",
        ),
        (
            "lint: [2, 2]",
            "lint: [2, 0]",
            "species[0].nbody[3]",
            "lint: [2, 0]",
            "last two",
        ),
        (
            "nl: [1, 1, 2], lint: [2]",
            "nl: [1, 1, 2, 0], lint: [2]",
            "species[0].nbody[2].nl",
            "nl: [1, 1, 2, 0]",
            "needs 3",
        ),
        (
            "nr: [1, 1, 2], nl: [1, 1, 2]",
            "nr: [1, 1, 2], nl: [1, 0, 2]",
            "species[0].nbody[2]",
            "nl: [1, 0, 2]",
            "even",
        ),
        (
            "nl: [1, 1, 2], lint: [2]",
            "nl: [0, 0, 2], lint: [2]",
            "species[0].nbody[2]",
            "nl: [0, 0, 2]",
            "triangle",
        ),
        (
            "{type: Al Al, nr: [2]",
            "{type: Ni Al, nr: [2]",
            "species[1].nbody[0].type",
            "type: Ni Al, nr: [2]",
            "central element",
        ),
        (
            "{type: Al Al Al, nr",
            "{type: Al Al Ni, nr",
            "species[1].nbody[1].type",
            "type: Al Al Ni",
            "not one of block",
        ),
        (
            "{type: Ni Ni Ni, nr: [1, 2]",
            "{type: Ni Ni Ni, nr: [1, 3]",
            "species[0].nbody[1]",
            "nr: [1, 3]",
            "nradmaxi = 2",
        ),
        (
            "{type: Al Ni Al, nr: [1, 1], nl: [1, 1]",
            "{type: Al Ni Al, nr: [1, 1], nl: [2, 2]",
            "species[2].nbody[1]",
            "type: Al Ni Al",
            "lmaxi = 1 of the pair Al-Ni",
        ),
        (
            "parameters: [1, 1, 0.5, 0.75]",
            "parameters: [1, 1, 0.5]",
            "species[1].parameters",
            "parameters: [1, 1, 0.5]",
            "needs 4",
        ),
        (
            "  - speciesblock: Ni Al\n",
            "  - speciesblock: Ni Al\n    lmaxi: 1\n    nradmaxi: 1\n    rcutij: 4.6\n    \
             dcutij: 0.01\n    nradbaseij: 2\n    radbase: ChebPow\n    radparameters: [2.5]\n    \
             radcoefficients: [[[1, 0.5], [0.5, 1]]]\n",
            "species[3]",
            "speciesblock: Ni Al",
            "differs",
        ),
        (
            "    core-repulsion: [2, 1]\n    nbody:\n      - {type: Al Al,",
            "    core-repulsion: [2, 1]\n    inner_cutoff_type: distance\n    nbody:\n      - \
             {type: Al Al,",
            "species[1].inner_cutoff_type",
            "inner_cutoff_type: distance",
            "must be the same",
        ),
        (
            "  - speciesblock: Ni Al\n",
            "  - speciesblock: Al\n    density: 1\n  - speciesblock: Ni Al\n",
            "species[3].density",
            "density: 1",
            "old B-basis layout",
        ),
        (
            "  - speciesblock: Ni Al\n",
            "  - speciesblock: Al  Ni\n  - speciesblock: Ni Al\n",
            "species[3].speciesblock",
            "speciesblock: Al  Ni",
            "given twice",
        ),
        (
            "    nradmaxi: 2\n    lmaxi: 2\n    rcutij: 4.8",
            "    nradmaxi: 2\n    rcutij: 4.8",
            "species[1].nradmaxi",
            "nradmaxi: 2\n    rcutij: 4.8",
            "partially defined",
        ),
        (
            "DeltaSplineBins: 0.001",
            "DeltaSplineBins: -1",
            "global.DeltaSplineBins",
            "DeltaSplineBins",
            "positive",
        ),
        (
            "{type: Ni Ni, nr: [1]",
            "{type: Ni, nr: [1]",
            "species[0].nbody[0].type",
            "type: Ni, nr",
            "at least one neighbour",
        ),
    ];
    for &(from, to, key, marker, part) in cases {
        assert!(SMALL.contains(from), "case '{from}' does not apply");
        let text = SMALL.replacen(from, to, 1);
        let err = match parse(&text) {
            Ok(_) => panic!("accepted with '{to}'"),
            Err(e) => e,
        };
        let PaceError::Format {
            file,
            line,
            key: k,
            message,
        } = &err
        else {
            panic!("not a format error: {err}");
        };
        assert_eq!(file, "t.yaml");
        assert_eq!(k, key, "{err}");
        let want_line = line_of(&text, marker);
        assert_eq!(*line, want_line, "{err}");
        assert!(message.contains(part), "'{part}' not in: {err}");
    }
}

#[test]
fn missing_blocks_are_named() {
    // No 'Ni Al' block: the pair Ni-Al has no radial basis.
    let cut = SMALL.find("  - speciesblock: Ni Al").unwrap();
    let e = parse(&SMALL[..cut]).unwrap_err().to_string();
    assert!(e.contains("pair Ni-Al"), "{e}");
    // No 'Al' block at all: no embedding (and no Al-Al radial basis).
    let start = SMALL.find("  - speciesblock: Al\n").unwrap();
    let end = SMALL.find("  - speciesblock: Al Ni").unwrap();
    let text = format!("{}{}", &SMALL[..start], &SMALL[end..]);
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("Al-Al") || e.contains("embedding for Al"), "{e}");
    // Not a B-basis file.
    let e = parse("elements: [Cu]\n").unwrap_err().to_string();
    assert!(e.contains("unknown key") && e.contains("elements"), "{e}");
    let e = parse("- 1\n").unwrap_err().to_string();
    assert!(e.contains("expected a mapping"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Active-set files.

fn els(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn asi_round_trip_and_header_versions() {
    let a = AsiMatrix {
        n: 2,
        data: vec![1.0, 2.0, 3.0, 4.0],
    };
    let b = AsiMatrix {
        n: 4,
        data: (0..16).map(|i| i as f64 * 0.25 - 1.0).collect(),
    };
    let bytes = asi::asi_bytes(&els(&["Al", "Cu"]), &[a.clone(), b.clone()]).unwrap();
    // Sizes (linear, non-linear) per element: both matrices non-linear here.
    let set = asi::parse_asi("x.asi", &bytes, &els(&["Al", "Cu"]), &[(1, 2), (2, 4)]).unwrap();
    assert!(!set.linear);
    assert_eq!(set.matrices, vec![a.clone(), b.clone()]);
    // Element order of the potential, not of the archive.
    let set = asi::parse_asi("x.asi", &bytes, &els(&["Cu", "Al"]), &[(4, 8), (2, 4)]).unwrap();
    assert!(set.linear);
    assert_eq!(set.matrices, vec![b, a.clone()]);
    // Versions 2 and 3 of the .npy header; Fortran order is the transpose of the bytes.
    for major in [2u8, 3] {
        let npy = test_support::npy(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }",
            major,
            &[1.0, 2.0, 3.0, 4.0],
        );
        let z = test_support::zip(&[("Al.npy".into(), npy)]);
        let set = asi::parse_asi("v.asi", &z, &els(&["Al"]), &[(2, 4)]).unwrap();
        assert_eq!(set.matrices[0].data, vec![1.0, 3.0, 2.0, 4.0]);
    }
    // gamma = max_i |sum_k x_k M[k][i]|.
    assert_eq!(asi::gamma(&a, &[1.0, -1.0]), 2.0);
    assert_eq!(asi::gamma(&a, &[0.5, 1.0]), 5.0);
}

#[test]
fn malformed_asi_files_are_refused() {
    let good = |n: usize| AsiMatrix {
        n,
        data: vec![0.5; n * n],
    };
    let one = asi::asi_bytes(&els(&["Al"]), &[good(2)]).unwrap();
    let check = |bytes: &[u8], elements: &[&str], sizes: &[(usize, usize)], part: &str| {
        let e = asi::parse_asi("bad.asi", bytes, &els(elements), sizes)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.asi: "), "{e}");
        assert!(e.contains(part), "'{part}' not in: {e}");
    };
    // Wrong size for the potential, wrong element, missing element.
    check(&one, &["Al"], &[(3, 6)], "element Al: a 2 x 2 matrix");
    check(&one, &["Cu"], &[(2, 4)], "'Al' is not an element");
    check(&one, &["Al", "Cu"], &[(2, 4), (2, 4)], "1 arrays (Al)");
    // Linear for one element, non-linear for the other.
    let two = asi::asi_bytes(&els(&["Al", "Cu"]), &[good(2), good(4)]).unwrap();
    check(&two, &["Al", "Cu"], &[(2, 4), (2, 4)], "one kind");
    // Not square; dtype; NaN; not a zip; truncated; damaged; compressed.
    let npy =
        |h: &str, d: &[f64]| test_support::zip(&[("Al.npy".into(), test_support::npy(h, 1, d))]);
    check(
        &npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
            &[0.0; 6],
        ),
        &["Al"],
        &[(2, 4)],
        "square",
    );
    check(
        &npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }",
            &[0.0],
        ),
        &["Al"],
        &[(1, 2)],
        "dtype '<f4'",
    );
    check(
        &npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            &[0.0; 3],
        ),
        &["Al"],
        &[(2, 4)],
        "24 data bytes",
    );
    check(
        &npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            &[0.0, f64::NAN, 0.0, 0.0],
        ),
        &["Al"],
        &[(2, 4)],
        "entry [0, 1] is NaN",
    );
    check(b"hello", &["Al"], &[(2, 4)], "not an .npz archive");
    check(
        &one[..one.len() / 2],
        &["Al"],
        &[(2, 4)],
        "not an .npz archive",
    );
    let mut damaged = one.clone();
    damaged[120] ^= 0x10;
    check(&damaged, &["Al"], &[(2, 4)], "CRC-32 mismatch");
    // Deflate: the method field of the local (offset 8) and central headers set to 8.
    let mut deflated = one.clone();
    deflated[8] = 8;
    let cd = deflated
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    deflated[cd + 10] = 8;
    check(&deflated, &["Al"], &[(2, 4)], "np.savez_compressed");
}

#[test]
fn asi_writer_refuses_inconsistent_input() {
    let e = asi::asi_bytes(
        &els(&["Al"]),
        &[AsiMatrix {
            n: 2,
            data: vec![0.0; 3],
        }],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("element Al: 3 values"), "{e}");
    let e = asi::asi_bytes(&els(&["Al", "Al"]), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 elements but 0 matrices"), "{e}");
}

#[test]
fn big_integers_round_once() {
    // 2^100 + 1 rounds to 2^100; 2^70 - 1 rounds up to 2^70 (ties to even via the sticky bit).
    let mut a = Big::from_u64(1);
    for _ in 0..100 {
        a.mul_small(2);
    }
    let a1 = a.plus(&Big::from_u64(1));
    let (f, e) = a1.mant_exp();
    assert_eq!(scale2(f, e), 2f64.powi(100));
    let mut b = Big::from_u64(1);
    for _ in 0..70 {
        b.mul_small(2);
    }
    let b1 = b.minus(&Big::from_u64(1));
    let (f, e) = b1.mant_exp();
    assert_eq!(scale2(f, e), 2f64.powi(70));
    // (2^53 + 1) * 2^20 is exactly between two doubles: ties to even (2^53 * 2^20).
    let mut c = Big::from_u64((1 << 53) + 1);
    for _ in 0..20 {
        c.mul_small(2);
    }
    let (f, e) = c.mant_exp();
    assert_eq!(scale2(f, e), 2f64.powi(73));
    let (f, e) = c.plus(&Big::from_u64(1)).mant_exp();
    assert_eq!(scale2(f, e), 2f64.powi(73) + 2f64.powi(21));
    assert_eq!(c.times(&b).cmp_big(&b.times(&c)), Ordering::Equal);
}

/// Blocks of three species hold functions only; species with different numbers of densities.
#[test]
fn three_species_blocks() {
    let path = repo("fuzz/corpus/pace_bbasis/three_elements_triple_block.yaml");
    let pot = BBasisPotential::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pot.elements(), ["Al", "Cu", "Ni"]);
    assert_eq!(
        (0..3).map(|s| pot.ndensity(s)).collect::<Vec<_>>(),
        vec![2, 1, 2]
    );
    // Al: its block (2), 'Al Ni' (2), 'Al Cu Ni' (2); Cu: its block (2), 'Cu Ni' (1).
    assert_eq!(pot.nfunctions(0), 6);
    assert_eq!(pot.nfunctions(1), 3);
    // Nothing to merge (the two Ni factors have l = 0): the order of the file is kept.
    let labels = pot.function_labels(0);
    assert_eq!(
        labels[5], "Al Ni Cu Al Ni nr=[1, 1, 1, 1] nl=[0, 1, 1, 0] lint=[1, 1]",
        "{labels:?}"
    );
    let mut ws = PaceScratch::default();
    let mut rng = Rng(21);
    let mut grad = vec![];
    for si in 0..3 {
        let (rij, sj) = environment(&mut rng, 10, 3);
        let e_b = pot.atom_energy(&mut ws, si, &rij, &sj).unwrap();
        grad.resize(rij.len(), [0.0; 3]);
        let e_c = pot
            .model()
            .atom_energy_grad(&mut ws, si, &rij, &sj, &mut grad)
            .unwrap();
        assert!(
            (e_b - e_c).abs() <= 1e-12 * e_c.abs().max(1.0),
            "{e_b} {e_c}"
        );
    }
}

/// A potential cut short at a line end (before an element's functions) is refused as a format
/// error naming the element, for B-basis YAML and the C-tilde `.yace`; the whole files load.
#[test]
fn a_file_cut_before_an_elements_functions_is_refused() {
    let dir = std::env::temp_dir().join(format!("aceuq-pace-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(repo("tests/data/pace/bbasis_cu_zbl.yaml")).unwrap();
    let whole = dir.join("whole.yaml");
    std::fs::write(&whole, &text).unwrap();
    assert!(crate::pace::PacePotential::load(&whole).is_ok());
    // Every line up to, not including, the first `nbody:`.
    let cut: String = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with("nbody:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let p = dir.join("cut.yaml");
    std::fs::write(&p, cut).unwrap();
    let e = crate::pace::PacePotential::load(&p).unwrap_err();
    assert!(matches!(e, PaceError::Incomplete(_)), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("element Cu has no basis function") && m.contains("cut.yaml"),
        "{m}"
    );
    let status: crate::error::Error = e.into();
    assert_eq!(status.kind, crate::error::ErrorKind::Format);
    std::fs::remove_dir_all(&dir).unwrap();
}
