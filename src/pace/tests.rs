//! Tests of the pacemaker reader and evaluator on synthetic `.ace` files written here: forces and
//! virials against finite differences of the energy for every radial family and embedding
//! (periodic and cluster, and through the core-repulsion switch), and malformed files rejected
//! with the key and line of the fault.

use super::*;
use crate::structure::Structure;

const LMAX: usize = 3;
const NRADBASE: usize = 6;
const NRADMAX: usize = 3;
const NDENS: usize = 2;

const FAMILIES: [&str; 4] = ["ChebExpCos", "ChebPow", "ChebLinear", "SBessel"];
const EMBEDDINGS: [&str; 2] = ["FinnisSinclair", "FinnisSinclairShiftedScaled"];

/// Deterministic pseudo-random numbers (splitmix64).
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

/// Settings of a synthetic single-element `.ace` file (lmax 3, nradbase 6, nradmax 3, two
/// densities, rank 1 to 4).
#[derive(Clone, Debug)]
struct Gen {
    family: &'static str,
    embedding: &'static str,
    /// `(w_p, m_p)` flattened, two densities.
    fs: [f64; 4],
    /// `rho_core_cut`, `drho_core_cut`.
    core_cut: [f64; 2],
    e0: f64,
    /// Core repulsion prefactor and exponent.
    core_rep: [f64; 2],
    lambda: f64,
    cut: f64,
    dcut: f64,
    delta: f64,
    seed: u64,
    /// Couple the m's of each function with Wigner 3j symbols (rotation-invariant functions)
    /// instead of independent random coefficients.
    invariant: bool,
}

impl Gen {
    fn new(family: &'static str, embedding: &'static str) -> Gen {
        let (lambda, dcut) = match family {
            // dcut 0.3 so that the second cosine envelope covers several neighbour shells.
            "ChebExpCos" => (3.0, 0.3),
            "ChebPow" => (2.0, 0.01),
            _ => (1.0, 0.01),
        };
        Gen {
            family,
            embedding,
            fs: [1.0, 1.0, 0.8, 0.75],
            core_cut: [100000.0, 250.0],
            e0: -1.25,
            core_rep: [20.0, 1.0],
            lambda,
            cut: 5.0,
            dcut,
            delta: 0.001,
            seed: 7,
            invariant: false,
        }
    }
}

/// Every m-tuple with `|m_t| <= l_t` and `sum m_t = 0`, in lexicographic order.
fn ms_tuples(ls: &[usize]) -> Vec<Vec<i32>> {
    fn rec(ls: &[usize], prefix: &mut Vec<i32>, out: &mut Vec<Vec<i32>>) {
        let t = prefix.len();
        if t == ls.len() {
            if prefix.iter().sum::<i32>() == 0 {
                out.push(prefix.clone());
            }
            return;
        }
        let l = ls[t] as i32;
        for m in -l..=l {
            prefix.push(m);
            rec(ls, prefix, out);
            prefix.pop();
        }
    }
    let mut out = vec![];
    rec(ls, &mut vec![], &mut out);
    out
}

/// Functions of rank >= 2: `(n, l)` per factor.
fn higher_functions() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![1, 1], vec![0, 0]),
        (vec![1, 1], vec![1, 1]),
        (vec![2, 1], vec![2, 2]),
        (vec![3, 2], vec![3, 3]),
        (vec![2, 3], vec![1, 1]),
        (vec![1, 1, 2], vec![1, 1, 2]),
        (vec![1, 2, 1], vec![0, 1, 1]),
        (vec![2, 2, 3], vec![2, 2, 2]),
        (vec![1, 2, 3], vec![1, 2, 3]),
        (vec![1, 1, 1, 1], vec![1, 1, 1, 1]),
        (vec![1, 2, 1, 2], vec![0, 1, 1, 2]),
        (vec![2, 1, 3, 1], vec![2, 2, 1, 1]),
        (vec![1, 1, 2, 3], vec![3, 3, 2, 2]),
    ]
}

fn factorial(n: i32) -> f64 {
    (1..=n).map(f64::from).product()
}

/// Wigner 3j symbol `(j1 j2 j3; m1 m2 m3)` (Racah's formula).
fn wigner_3j(j: [i32; 3], m: [i32; 3]) -> f64 {
    let [j1, j2, j3] = j;
    let [m1, m2, m3] = m;
    if m1 + m2 + m3 != 0
        || (0..3).any(|t| m[t].abs() > j[t])
        || j3 < (j1 - j2).abs()
        || j3 > j1 + j2
    {
        return 0.0;
    }
    let tri = factorial(j1 + j2 - j3) * factorial(j1 - j2 + j3) * factorial(j2 + j3 - j1)
        / factorial(j1 + j2 + j3 + 1);
    let pre = (tri
        * (0..3)
            .map(|t| factorial(j[t] + m[t]) * factorial(j[t] - m[t]))
            .product::<f64>())
    .sqrt();
    let mut sum = 0.0;
    for k in 0..=j1 + j2 + j3 {
        let args = [
            k,
            j3 - j2 + k + m1,
            j3 - j1 + k - m2,
            j1 + j2 - j3 - k,
            j1 - k - m1,
            j2 - k + m2,
        ];
        if args.iter().all(|&a| a >= 0) {
            let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
            sum += sign / args.iter().map(|&a| factorial(a)).product::<f64>();
        }
    }
    let sign = if (j1 - j2 - m3).rem_euclid(2) == 0 {
        1.0
    } else {
        -1.0
    };
    sign * pre * sum
}

/// Rotation-invariant coupling of the m-tuple `ms` of a function with `ls`: `(l1 l2 0)` for
/// rank 2, `(l1 l2 l3)` for rank 3, `(l1 l2 L)(L l3 l4) (-1)^(L-M)` with the largest allowed
/// `L` for rank 4.
fn coupling(ls: &[usize], ms: &[i32]) -> f64 {
    let l: Vec<i32> = ls.iter().map(|&x| x as i32).collect();
    match (l.as_slice(), ms) {
        (&[l1, l2], &[m1, m2]) => wigner_3j([l1, l2, 0], [m1, m2, 0]),
        (&[l1, l2, l3], &[m1, m2, m3]) => wigner_3j([l1, l2, l3], [m1, m2, m3]),
        (&[l1, l2, l3, l4], &[m1, m2, m3, m4]) => {
            let big = (l1 + l2).min(l3 + l4);
            assert!(
                big >= (l1 - l2).abs().max((l3 - l4).abs()),
                "{ls:?}: no coupling"
            );
            let mm = m1 + m2;
            let sign = if (big - mm).rem_euclid(2) == 0 {
                1.0
            } else {
                -1.0
            };
            sign * wigner_3j([l1, l2, big], [m1, m2, -mm]) * wigner_3j([big, l3, l4], [mm, m3, m4])
        }
        _ => panic!("rank {} not coupled", ls.len()),
    }
}

fn join(v: &[impl std::fmt::Display]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of a synthetic `.ace` file, in the layout pacemaker writes.
fn ace_text(g: &Gen) -> String {
    let mut rng = Rng(g.seed);
    let mut out: Vec<String> = vec![
        "# synthetic potential written by the aceuq unit tests".into(),
        String::new(),
        "nelements=1".into(),
        "elements: Cu".into(),
        String::new(),
        format!("lmax={LMAX}"),
        String::new(),
        format!("embedding-function: {}", g.embedding),
        format!("4 FS parameters:  {}", join(&g.fs)),
        format!("core energy-cutoff parameters: {}", join(&g.core_cut)),
        format!("E0: {}", g.e0),
        String::new(),
        format!("radbasename={}", g.family),
        format!("nradbase={NRADBASE}"),
        format!("nradmax={NRADMAX}"),
        format!("cutoffmax={}", g.cut),
        format!("deltaSplineBins={}", g.delta),
        format!("core repulsion parameters: {}", join(&g.core_rep)),
        format!("radparameter= {}", g.lambda),
        format!("cutoff= {}", g.cut),
        format!("dcut= {}", g.dcut),
    ];
    // crad: k slowest, then n, then l (one line of lmax+1 values per (k, n)).
    for k in 0..NRADBASE {
        for n in 0..NRADMAX {
            let vals: Vec<String> = (0..=LMAX)
                .map(|l| {
                    // A dominant diagonal keeps the radial functions distinct.
                    let diag = if k == n { 1.0 } else { 0.0 };
                    format!("{:.15}", diag + 0.5 * rng.sym() + 0.05 * l as f64)
                })
                .collect();
            let head = if k == 0 && n == 0 { "crad= " } else { " " };
            out.push(format!("{head}{}", vals.join(" ")));
        }
    }
    out.push(String::new());
    let funcs = higher_functions();
    let max_ms = funcs
        .iter()
        .map(|(_, l)| ms_tuples(l).len())
        .max()
        .unwrap_or(1);
    out.push("rankmax=4".into());
    out.push(format!("ndensitymax={NDENS}"));
    out.push(String::new());
    out.push(format!("num_c_tilde_max={}", NRADBASE + funcs.len()));
    out.push(format!("num_ms_combinations_max={max_ms}"));
    out.push(format!("total_basis_size_rank1: {NRADBASE}"));
    let coef = |rng: &mut Rng, scale: f64| {
        (0..NDENS)
            .map(|_| format!("{:.15}", scale * rng.sym()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for n in 1..=NRADBASE {
        out.push("ctilde_basis_func: rank=1 ndens=2 mu0=0 mu=( 0 )".into());
        out.push(format!("n=( {n} )"));
        out.push("l=( 0 )".into());
        out.push("num_ms=1".into());
        out.push(format!("< 0 >:  {}", coef(&mut rng, 0.1)));
    }
    out.push(format!("total_basis_size: {}", funcs.len()));
    for (ns, ls) in &funcs {
        let rank = ns.len();
        let mut ms = ms_tuples(ls);
        // Coupled: one random weight per density times the coupling of each m-tuple (only
        // tuples where it is non-zero are written).
        let weights: Vec<f64> = (0..NDENS).map(|_| rng.sym()).collect();
        if g.invariant {
            ms.retain(|m| coupling(ls, m).abs() > 1e-12);
        }
        // Atomic bases are O(10): coefficients 0.1^rank keep every rank's share of the
        // densities O(1), where the two embeddings differ.
        let scale = 0.1f64.powi(rank as i32);
        out.push(format!(
            "ctilde_basis_func: rank={rank} ndens={NDENS} mu0=0 mu=( {} )",
            join(&vec![0; rank])
        ));
        out.push(format!("n=( {} )", join(ns)));
        out.push(format!("l=( {} )", join(ls)));
        out.push(format!("num_ms={}", ms.len()));
        for m in &ms {
            let c = if g.invariant {
                let k = coupling(ls, m);
                join(&weights.iter().map(|w| w * k * scale).collect::<Vec<_>>())
            } else {
                coef(&mut rng, scale)
            };
            out.push(format!("< {} >:  {c}", join(m)));
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

fn model(g: &Gen) -> PaceModel {
    PaceModel::parse_ace("synthetic.ace", &ace_text(g))
        .unwrap_or_else(|e| panic!("{} {}: {e}", g.family, g.embedding))
}

fn cu(n: usize) -> Vec<String> {
    vec!["Cu".to_string(); n]
}

/// Positions of the fcc sites of `cell` (conventional cubic basis in fractional coordinates of
/// `reps` repetitions), rattled by up to `rattle` Å per coordinate.
fn fcc_periodic(a: f64, shear: f64, rattle: f64, seed: u64) -> Structure {
    let reps = [2usize, 1, 1];
    let cell = [
        [2.0 * a, 0.0, 0.0],
        [shear * a, a, 0.0],
        [0.5 * shear * a, -0.7 * shear * a, a],
    ];
    let basis = [
        [0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
        [0.5, 0.0, 0.5],
        [0.0, 0.5, 0.5],
    ];
    let mut rng = Rng(seed);
    let mut positions = vec![];
    for i in 0..reps[0] {
        for b in basis {
            let f = [(i as f64 + b[0]) / reps[0] as f64, b[1], b[2]];
            let mut p = [0.0; 3];
            for (d, pd) in p.iter_mut().enumerate() {
                *pd = (0..3).map(|c| f[c] * cell[c][d]).sum::<f64>() + rattle * rng.sym();
            }
            positions.push(p);
        }
    }
    Structure {
        cell: Some(cell),
        pbc: [true; 3],
        symbols: cu(positions.len()),
        positions,
        ..Default::default()
    }
}

/// A 10-atom fcc fragment (centre, its 12 neighbours minus three), rattled.
fn fcc_cluster(a: f64, rattle: f64, seed: u64) -> Structure {
    let h = a / 2.0;
    let mut sites = vec![[0.0, 0.0, 0.0]];
    for (x, y) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
        sites.push([x * h, y * h, 0.0]);
        sites.push([x * h, 0.0, y * h]);
        sites.push([0.0, x * h, y * h]);
    }
    sites.truncate(10);
    let mut rng = Rng(seed);
    let positions: Vec<[f64; 3]> = sites
        .iter()
        .map(|p| {
            [
                p[0] + rattle * rng.sym(),
                p[1] + rattle * rng.sym(),
                p[2] + rattle * rng.sym(),
            ]
        })
        .collect();
    Structure {
        symbols: cu(positions.len()),
        positions,
        ..Default::default()
    }
}

/// Apply the deformation `x_a += e x_b` to positions and cell.
fn deform(s: &Structure, a: usize, b: usize, e: f64) -> Structure {
    let mut t = s.clone();
    for p in &mut t.positions {
        p[a] += e * p[b];
    }
    if let Some(c) = &mut t.cell {
        for row in c.iter_mut() {
            row[a] += e * row[b];
        }
    }
    t
}

/// Largest errors of a finite-difference check.
#[derive(Debug, Default, Clone, Copy)]
struct FdReport {
    force_err: f64,
    force_scale: f64,
    virial_err: f64,
    virial_scale: f64,
}

/// Forces and virial against central differences of the energy; per-atom energies sum to the
/// total and forces to zero.
fn check_fd(m: &PaceModel, s: &Structure, label: &str) -> FdReport {
    let p = m.predict(s).unwrap_or_else(|e| panic!("{label}: {e}"));
    let sum: f64 = p.atom_energies.iter().sum();
    assert!(
        (sum - p.energy).abs() <= 1e-10 * (1.0 + p.energy.abs()),
        "{label}: atom energies sum to {sum}, total {}",
        p.energy
    );
    assert!(p.energy.is_finite(), "{label}: energy {}", p.energy);
    let energy = |t: &Structure| {
        m.predict(t)
            .unwrap_or_else(|e| panic!("{label}: {e}"))
            .energy
    };
    let h = 1e-5;
    let mut r = FdReport::default();
    let mut fsum = [0.0; 3];
    for i in 0..s.len() {
        for d in 0..3 {
            let mut t = s.clone();
            t.positions[i][d] += h;
            let ep = energy(&t);
            t.positions[i][d] -= 2.0 * h;
            let em = energy(&t);
            let fd = -(ep - em) / (2.0 * h);
            r.force_err = r.force_err.max((fd - p.forces[i][d]).abs());
            r.force_scale = r.force_scale.max(p.forces[i][d].abs());
            fsum[d] += p.forces[i][d];
        }
    }
    for a in 0..3 {
        for b in 0..3 {
            // E(x + e E_ab x): dE/de = sum_k g_a r_b = -virial[b][a].
            let fd = (energy(&deform(s, a, b, h)) - energy(&deform(s, a, b, -h))) / (2.0 * h);
            r.virial_err = r.virial_err.max((fd + p.virial[b][a]).abs());
            r.virial_scale = r.virial_scale.max(p.virial[b][a].abs());
        }
    }
    let fs = r.force_scale.max(1.0);
    assert!(
        fsum.iter().all(|f| f.abs() < 1e-9 * fs * s.len() as f64),
        "{label}: forces sum to {fsum:?}"
    );
    assert!(
        r.force_err < 1e-6 * fs,
        "{label}: force error {:.3e} (largest force {:.3e})",
        r.force_err,
        r.force_scale
    );
    assert!(
        r.virial_err < 1e-5 * r.virial_scale.max(1.0),
        "{label}: virial error {:.3e} (largest component {:.3e})",
        r.virial_err,
        r.virial_scale
    );
    eprintln!(
        "{label:<52} E {:>12.5}  |F|max {:>9.3e} err {:>8.2e}  |W|max {:>9.3e} err {:>8.2e}",
        p.energy, r.force_scale, r.force_err, r.virial_scale, r.virial_err
    );
    r
}

/// Core densities per atom, from the analytic pair function (for choosing the test structure).
fn rho_core(m: &PaceModel, s: &Structure) -> Vec<f64> {
    let nl = crate::neighbors::build(s, m.max_cutoff()).unwrap();
    (0..s.len())
        .map(|i| {
            nl.rij[nl.range(i)]
                .iter()
                .map(|d| (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt())
                .filter(|&r| r < m.pairs[0].spec.cut)
                .map(|r| m.pairs[0].spec.core(r).0)
                .sum()
        })
        .collect()
}

#[test]
fn synthetic_file_parses_as_written() {
    let g = Gen::new("ChebPow", "FinnisSinclairShiftedScaled");
    let m = model(&g);
    assert_eq!(m.elements, ["Cu"]);
    assert_eq!(
        (m.lmax, m.nradbase, m.nradmax, m.ndensity),
        (LMAX, NRADBASE, NRADMAX, NDENS)
    );
    let sp = &m.species[0];
    assert_eq!(sp.rank1.len(), NRADBASE);
    assert_eq!(sp.funcs.len(), higher_functions().len());
    let ranks: Vec<usize> = sp.funcs.iter().map(CFunc::rank).collect();
    assert!(ranks.contains(&2) && ranks.contains(&3) && ranks.contains(&4));
    assert_eq!(sp.e0, g.e0);
    assert_eq!((sp.rho_core_cut, sp.drho_core_cut), (100000.0, 250.0));
    assert_eq!(m.pairs[0].spec.family, Family::ChebPow);
    // ms of a function: all tuples with sum 0, stored flat.
    let f = &sp.funcs[1]; // l = (1 1)
    assert_eq!(f.ms, [-1, 1, 0, 0, 1, -1]);
    assert_eq!(f.coefs.len(), 3 * NDENS);
    // An isolated atom has the energy E0 (both embeddings vanish at zero density).
    for emb in EMBEDDINGS {
        let m = model(&Gen::new("ChebPow", emb));
        let s = Structure {
            positions: vec![[0.0; 3]],
            symbols: cu(1),
            ..Default::default()
        };
        let p = m.predict(&s).unwrap();
        assert!((p.energy - g.e0).abs() < 1e-14, "{emb}: {}", p.energy);
        assert_eq!(p.forces, [[0.0; 3]]);
    }
}

/// E0 shifts every atom's energy and nothing else.
#[test]
fn e0_shifts_atom_energies() {
    let s = fcc_cluster(3.6, 0.1, 3);
    let mut g = Gen::new("SBessel", "FinnisSinclair");
    let a = model(&g).predict(&s).unwrap();
    g.e0 = 0.0;
    let b = model(&g).predict(&s).unwrap();
    for (x, y) in a.atom_energies.iter().zip(&b.atom_energies) {
        assert!((x - y + 1.25).abs() < 1e-12, "{x} {y}");
    }
    assert_eq!(a.forces, b.forces);
}

/// Forces and virial agree with finite differences of the energy for every radial family and
/// embedding, on a rattled triclinic periodic cell and on a cluster.
#[test]
fn forces_and_virial_match_finite_differences() {
    // ChebLinear is not zero at the cutoff (ML-PACE's definition): its table drops to zero
    // over the last look-up interval, too steep for finite differences. Rattle with the first
    // seed that keeps every pair out of the last two intervals.
    let clear = |s: &Structure| {
        let nl = crate::neighbors::build(s, 5.0).unwrap();
        nl.rij.iter().all(|d| {
            let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            !(5.0 - 0.002..5.0).contains(&r)
        })
    };
    let periodic = (11..)
        .map(|seed| fcc_periodic(3.6, 0.08, 0.1, seed))
        .find(|s| clear(s))
        .unwrap();
    let cluster = (5..)
        .map(|seed| fcc_cluster(3.6, 0.1, seed))
        .find(|s| clear(s))
        .unwrap();
    assert_eq!(periodic.len(), 8);
    assert_eq!(cluster.len(), 10);
    for fam in FAMILIES {
        for emb in EMBEDDINGS {
            let m = model(&Gen::new(fam, emb));
            assert_eq!(m.max_cutoff(), 5.0);
            for (s, what) in [(&periodic, "periodic"), (&cluster, "cluster")] {
                check_fd(&m, s, &format!("{fam} {emb} {what}"));
            }
        }
    }
}

/// A compressed structure whose core density lies inside the switch `[rho_cut - drho_cut,
/// rho_cut]` for some atoms (and beyond it for none): forces through the switch.
#[test]
fn forces_through_the_core_repulsion_switch() {
    for fam in FAMILIES {
        for emb in EMBEDDINGS {
            let mut g = Gen::new(fam, emb);
            g.core_cut = [5.0, 4.0];
            g.core_rep = [50.0, 1.0];
            let m = model(&g);
            for (s, what) in [
                (fcc_periodic(2.85, 0.05, 0.12, 17), "compressed periodic"),
                (fcc_cluster(2.6, 0.12, 19), "compressed cluster"),
            ] {
                let rho = rho_core(&m, &s);
                let inside = rho.iter().filter(|&&r| r > 1.0 && r < 5.0).count();
                assert!(
                    inside >= s.len() / 2,
                    "{what}: core densities {rho:?} mostly outside the switch"
                );
                check_fd(&m, &s, &format!("{fam} {emb} {what} ({inside} in switch)"));
            }
            // Fully switched off: the energy is the core repulsion plus E0.
            let s = fcc_cluster(1.6, 0.0, 1);
            let rho = rho_core(&m, &s);
            let p = m.predict(&s).unwrap();
            assert!(rho[0] > 5.0, "{rho:?}");
            assert!((p.atom_energies[0] - rho[0] - g.e0).abs() < 1e-6 * rho[0]);
        }
    }
}

/// A rotation matrix (Rodrigues) about `axis` by `angle`.
fn rotation(axis: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
    let n = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let [x, y, z] = axis.map(|a| a / n);
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [c + x * x * t, x * y * t - z * s, x * z * t + y * s],
        [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
        [z * x * t - y * s, z * y * t + x * s, c + z * z * t],
    ]
}

fn rotate(r: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|a| (0..3).map(|b| r[a][b] * v[b]).sum())
}

/// With 3j-coupled coefficients (the form pacemaker writes) the energy is invariant under
/// rotations, and forces and virial rotate with the structure. Checks the spherical harmonics
/// (normalisation and phase across m, including the negative m) and the m bookkeeping.
#[test]
fn coupled_functions_are_rotation_invariant() {
    assert!((wigner_3j([1, 1, 2], [-1, 0, 1]) + 0.1f64.sqrt()).abs() < 1e-15);
    assert!((wigner_3j([2, 2, 2], [-2, 1, 1]) + 0.29277002188455997).abs() < 1e-15);
    assert!((wigner_3j([1, 2, 3], [1, 1, -2]) + 0.3086066999241838).abs() < 1e-15);
    let r = rotation([0.3, -0.5, 0.8], 1.1);
    for fam in FAMILIES {
        for emb in EMBEDDINGS {
            let mut g = Gen::new(fam, emb);
            g.invariant = true;
            // Fixed and random coefficients: the latter must break the invariance (so the
            // check below can fail).
            let m = model(&g);
            g.invariant = false;
            let m_random = model(&g);
            for s in [fcc_cluster(3.6, 0.15, 9), fcc_periodic(3.6, 0.08, 0.1, 23)] {
                let mut t = s.clone();
                t.positions = s.positions.iter().map(|&p| rotate(&r, p)).collect();
                t.cell = s.cell.map(|c| c.map(|row| rotate(&r, row)));
                let (a, b) = (m.predict(&s).unwrap(), m.predict(&t).unwrap());
                let label = format!("{fam} {emb} pbc {}", s.pbc[0]);
                for (x, y) in a.atom_energies.iter().zip(&b.atom_energies) {
                    assert!(
                        (x - y).abs() < 1e-9 * (1.0 + x.abs()),
                        "{label}: {x} vs {y}"
                    );
                }
                let fmax = a
                    .forces
                    .iter()
                    .flatten()
                    .fold(1.0f64, |m, f| m.max(f.abs()));
                for (fa, fb) in a.forces.iter().zip(&b.forces) {
                    let fr = rotate(&r, *fa);
                    assert!(
                        (0..3).all(|d| (fr[d] - fb[d]).abs() < 1e-9 * fmax),
                        "{label}: {fr:?} vs {fb:?}"
                    );
                }
                // W' = R W R^T.
                let wmax = a
                    .virial
                    .iter()
                    .flatten()
                    .fold(1.0f64, |m, w| m.max(w.abs()));
                for i in 0..3 {
                    for j in 0..3 {
                        let w: f64 = (0..3)
                            .flat_map(|k| (0..3).map(move |l| (k, l)))
                            .map(|(k, l)| r[i][k] * a.virial[k][l] * r[j][l])
                            .sum();
                        assert!((w - b.virial[i][j]).abs() < 1e-9 * wmax, "{label}: virial");
                    }
                }
                let (x, y) = (
                    m_random.predict(&s).unwrap().energy,
                    m_random.predict(&t).unwrap().energy,
                );
                assert!(
                    (x - y).abs() > 1e-6,
                    "{label}: uncoupled model invariant too"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed files.

/// 1-based number of the first line starting with `prefix` (after `skip` such lines).
fn line_of(text: &str, prefix: &str, skip: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(prefix))
        .nth(skip)
        .unwrap_or_else(|| panic!("no line '{prefix}'"))
        .0
        + 1
}

/// Replace line `n` (1-based).
fn with_line(text: &str, n: usize, new: &str) -> String {
    let mut v: Vec<&str> = text.lines().collect();
    v[n - 1] = new;
    v.join("\n") + "\n"
}

/// The first `n` lines.
fn head(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join("\n") + "\n"
}

fn line(text: &str, n: usize) -> &str {
    text.lines().nth(n - 1).unwrap()
}

/// Parsing fails with an error naming the file, `key` and `line`.
#[track_caller]
fn assert_err(text: &str, key: &str, line: usize, also: &str) {
    let e = match PaceModel::parse_ace("bad.ace", text) {
        Ok(_) => panic!("accepted (expected '{key}' at line {line})"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with(&format!("bad.ace: line {line}: '{key}': ")) && e.contains(also),
        "expected '{key}' at line {line} mentioning '{also}', got: {e}"
    );
}

#[test]
fn malformed_files_name_key_and_line() {
    let good = ace_text(&Gen::new("ChebPow", "FinnisSinclairShiftedScaled"));
    PaceModel::parse_ace("bad.ace", &good).unwrap();

    // Unknown radial basis.
    let n = line_of(&good, "radbasename=", 0);
    assert_err(
        &with_line(&good, n, "radbasename=Gauss"),
        "radbasename",
        n,
        "Gauss",
    );

    // crad cut short: the file ends inside it.
    let crad = line_of(&good, "crad=", 0);
    assert_err(&head(&good, crad + 3), "crad", crad + 3, "ends");

    // A NaN (and an infinity, and a word) in crad.
    for bad in ["nan", "inf", "-1e400", "x1.0"] {
        let mut v: Vec<String> = line(&good, crad + 2)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        v[2] = bad.to_string();
        assert_err(
            &with_line(&good, crad + 2, &v.join(" ")),
            "crad",
            crad + 2,
            bad,
        );
    }

    // n beyond nradmax in a rank-2 function, beyond nradbase in a rank-1 function, and 0.
    let n2 = line_of(&good, "n=( 1 1 )", 0);
    assert_err(&with_line(&good, n2, "n=( 4 1 )"), "n", n2, "4 is larger");
    let n1 = line_of(&good, "n=( 6 )", 0);
    assert_err(&with_line(&good, n1, "n=( 7 )"), "n", n1, "7 is larger");
    assert_err(&with_line(&good, n1, "n=( 0 )"), "n", n1, "start at 1");

    // l beyond lmax, and a rank-1 function with l > 0.
    let l2 = line_of(&good, "l=( 1 1 )", 0);
    assert_err(&with_line(&good, l2, "l=( 4 1 )"), "l", l2, "4 is larger");
    let l1 = line_of(&good, "l=( 0 )", 0);
    assert_err(&with_line(&good, l1, "l=( 1 )"), "l", l1, "l = 0");

    // A rank-2 function among the rank-1 ones, a rank-1 function among the higher ones, rank 0.
    let r1 = line_of(&good, "ctilde_basis_func: rank=1", 0);
    let r2 = line_of(&good, "ctilde_basis_func: rank=2", 0);
    let as_rank = |n: usize, from: &str, to: &str| line(&good, n).replace(from, to);
    assert_err(
        &with_line(&good, r1, &as_rank(r1, "rank=1", "rank=2")),
        "rank",
        r1,
        "rank-1 list",
    );
    assert_err(
        &with_line(&good, r2, &as_rank(r2, "rank=2", "rank=1")),
        "rank",
        r2,
        "higher-rank",
    );
    assert_err(
        &with_line(&good, r2, &as_rank(r2, "rank=2", "rank=0")),
        "rank",
        r2,
        "rank 0",
    );
    assert_err(
        &with_line(&good, r2, &as_rank(r2, "rank=2", "rank=5")),
        "rank",
        r2,
        "larger",
    );

    // |m| > l (l = (1 1): the first ms line is "< -1 1 >:"), including values that wrap when
    // narrowed to 8 or 16 bits.
    let ms = l2 + 2;
    assert!(
        line(&good, ms).starts_with("< -1 1 >:"),
        "{}",
        line(&good, ms)
    );
    let tail = line(&good, ms).split(">:").nth(1).unwrap().to_string();
    for bad in [
        "< -2 2 >:",
        "< 65536 0 >:",
        "< 256 -256 >:",
        "< -2147483648 0 >:",
    ] {
        assert_err(
            &with_line(&good, ms, &format!("{bad}{tail}")),
            "ms",
            ms,
            "exceeds l",
        );
    }
    assert_err(
        &with_line(&good, ms, &format!("< 1 x >:{tail}")),
        "ms",
        ms,
        "not an integer",
    );

    // ndens different from ndensitymax.
    let f2 = line_of(&good, "ctilde_basis_func: rank=2", 0);
    let wrong = line(&good, f2).replace("ndens=2", "ndens=1");
    assert_err(
        &with_line(&good, f2, &wrong),
        "ndens",
        f2,
        "ndensitymax is 2",
    );

    // Several elements: the .ace format holds one; pointed to .yace.
    let ne = line_of(&good, "nelements=", 0);
    assert_err(
        &with_line(&good, ne, "nelements=2"),
        "nelements",
        ne,
        ".yace",
    );

    // Unknown embedding function; too few FS parameters for two densities.
    let emb = line_of(&good, "embedding-function:", 0);
    assert_err(
        &with_line(&good, emb, "embedding-function: Tanh"),
        "embedding-function",
        emb,
        "unknown embedding 'Tanh'",
    );
    let fs = line_of(&good, "4 FS parameters:", 0);
    assert_err(
        &with_line(&good, fs, "2 FS parameters: 1.0 1.0"),
        "FS parameters",
        fs,
        "need 2 per density",
    );

    // The file ends inside a function: after its n=, and inside an ms line.
    let f3 = line_of(&good, "ctilde_basis_func: rank=3", 1);
    assert_err(&head(&good, f3 + 1), "l", f3 + 1, "ends");
    let cut = head(&good, f3 + 4);
    let last = line(&cut, f3 + 4);
    let short = last.rsplit_once(' ').unwrap().0;
    assert_err(&with_line(&cut, f3 + 4, short), "ctilde", f3 + 4, "ends");
    // ... and between functions (total_basis_size promises more).
    let end = good.lines().count();
    assert_err(&head(&good, end - 1), "ms", end - 1, "ends");

    // Trailing garbage after the last function.
    let g = format!("{good}garbage 1 2\n");
    assert_err(&g, "end of file", end + 1, "garbage");

    // Zero sizes that would leave nothing to evaluate (or index empty tables).
    let nd = line_of(&good, "ndensitymax=", 0);
    assert_err(
        &with_line(&good, nd, "ndensitymax=0"),
        "ndensitymax",
        nd,
        "at least 1",
    );
    let nb = line_of(&good, "nradbase=", 0);
    assert_err(
        &with_line(&good, nb, "nradbase=0"),
        "nradbase",
        nb,
        "at least 1",
    );

    // Radial tables too fine to build: refused, not allocated.
    let d = line_of(&good, "deltaSplineBins=", 0);
    for (v, what) in [
        ("1e-7", "look-up nodes"),
        ("0", "positive"),
        ("-0.1", "positive"),
    ] {
        let e = PaceModel::parse_ace(
            "bad.ace",
            &with_line(&good, d, &format!("deltaSplineBins={v}")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("bad.ace: ") && e.contains(what), "{v}: {e}");
    }

    // Empty text and binary junk.
    assert_err("", "nelements", 0, "ends");
    assert!(PaceModel::parse_ace("bad.ace", "\u{0}\u{1}nelements=").is_err());
}

/// The fuzz corpus of `.ace` files: the well-formed ones load and evaluate a cluster, the
/// malformed ones are refused.
#[test]
fn fuzz_corpus_files_load_or_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pace_ace");
    let bad = [
        "bad_radbasename.ace",
        "truncated_in_crad.ace",
        "two_elements_m_too_large.ace",
    ];
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let r = PaceModel::load(&path);
        if bad.contains(&name.as_str()) {
            assert!(r.is_err(), "{name} accepted");
            continue;
        }
        let m = r.unwrap_or_else(|e| panic!("{e}"));
        let p = m.predict(&fcc_cluster(3.6, 0.1, 4)).unwrap();
        assert!(p.energy.is_finite(), "{name}");
        n += 1;
    }
    assert!(n >= 3, "{n} valid corpus files");
}

#[test]
fn load_reports_paths_and_formats() {
    let missing = Path::new("/nonexistent-aceuq-dir/pot.ace");
    let e = PaceModel::load(missing).unwrap_err().to_string();
    assert!(
        e.contains("/nonexistent-aceuq-dir/pot.ace") && e.contains("cannot read"),
        "{e}"
    );

    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let xyz = dir.join(format!("aceuq-pace-test-{pid}.xyz"));
    std::fs::write(&xyz, "1\n\nCu 0 0 0\n").unwrap();
    let e = PaceModel::load(&xyz).unwrap_err().to_string();
    std::fs::remove_file(&xyz).ok();
    assert!(
        e.contains(".xyz") && e.contains("not a pacemaker potential"),
        "{e}"
    );

    // .yaml is pacemaker's B-basis (not evaluated): pointed to the converters. (.yace is read:
    // tests_yace.rs.)
    let yaml = dir.join(format!("aceuq-pace-test-{pid}.yaml"));
    let e = PaceModel::load(&yaml).unwrap_err().to_string();
    assert!(e.contains(".yaml") && e.contains("pace_yaml2ace"), "{e}");

    let g = Gen::new("ChebExpCos", "FinnisSinclair");
    let ace = dir.join(format!("aceuq-pace-test-{pid}.ace"));
    std::fs::write(&ace, ace_text(&g)).unwrap();
    let loaded = PaceModel::load(&ace);
    std::fs::remove_file(&ace).ok();
    let s = fcc_cluster(3.6, 0.1, 2);
    let a = loaded.unwrap().predict(&s).unwrap();
    let b = model(&g).predict(&s).unwrap();
    assert_eq!(a.energy, b.energy);
    assert!(PaceModel::is_pace_file(&ace) && !PaceModel::is_pace_file(&xyz));
}

/// Structures the model cannot evaluate are errors, not panics.
#[test]
fn evaluation_errors() {
    let m = model(&Gen::new("ChebLinear", "FinnisSinclair"));
    let mut s = fcc_cluster(3.6, 0.0, 1);
    s.symbols[3] = "Ag".into();
    let e = m.predict(&s).unwrap_err().to_string();
    assert!(e.contains("atom 3") && e.contains("'Ag'"), "{e}");
    let mut s = fcc_cluster(3.6, 0.0, 1);
    s.positions[1] = [0.0, 0.0, 0.0005];
    let e = m.predict(&s).unwrap_err().to_string();
    assert!(e.contains("apart"), "{e}");
    // Coefficients that overflow the energy.
    let text = ace_text(&Gen::new("ChebLinear", "FinnisSinclair"));
    let n = line_of(&text, "< 0 >:", 0);
    let huge = with_line(&text, n, "< 0 >:  1e308 1e308");
    let m = PaceModel::parse_ace("huge.ace", &huge).unwrap();
    let e = m
        .predict(&fcc_cluster(3.6, 0.0, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-finite"), "{e}");
}

/// Per atom of `s`: its species, neighbour vectors and neighbour species.
fn environments(m: &PaceModel, s: &Structure) -> Vec<(usize, Vec<[f64; 3]>, Vec<i32>)> {
    let species = m.species_of(s).unwrap();
    let nl = crate::neighbors::build(s, m.max_cutoff()).unwrap();
    (0..s.len())
        .map(|i| {
            let range = nl.range(i);
            let sj = nl.j[range.clone()]
                .iter()
                .map(|&j| species[j as usize])
                .collect();
            (species[i] as usize, nl.rij[range].to_vec(), sj)
        })
        .collect()
}

/// The product DAG (shared prefixes, mirror-image m-combinations merged) gives the densities
/// of the m-combinations evaluated one by one, for every radial family and embedding, and for
/// a file whose m do not sum to zero (the mirror's real part then differs in sign).
#[test]
fn product_dag_densities_equal_the_m_combinations() {
    let s = fcc_periodic(3.6, 0.08, 0.1, 11);
    let odd = {
        let text = ace_text(&Gen::new("ChebPow", "FinnisSinclair"));
        let n = line_of(&text, "< 1 -1 >:", 0);
        let coefs = line(&text, n).split_once(':').unwrap().1.to_string();
        PaceModel::parse_ace("odd.ace", &with_line(&text, n, &format!("< 1 0 >:{coefs}"))).unwrap()
    };
    let models = FAMILIES
        .iter()
        .flat_map(|fam| EMBEDDINGS.iter().map(move |emb| (*fam, *emb)))
        .map(|(fam, emb)| (format!("{fam} {emb}"), model(&Gen::new(fam, emb))))
        .chain([("m summing to 1".to_string(), odd)]);
    // Independent coefficients per m-combination: mirror images differ.
    for (what, m) in models {
        let mut ws = PaceScratch::default();
        for (si, rij, sj) in environments(&m, &s) {
            let mut grad = vec![[0.0; 3]; rij.len()];
            m.atom_energy_grad_body(&mut ws, si, &rij, &sj, &mut grad)
                .unwrap();
            let dag = ws.rho.clone();
            // Reference: every m-combination's product one by one, per function.
            let (sp, fb) = (&m.species[si], &m.flat[si]);
            let (nd, nb) = (sp.embedding.params.len(), m.nradbase);
            let nf = sp.rank1.len() + sp.funcs.len();
            let mut direct = vec![0.0; nd * nf];
            for (f, cf) in sp.rank1.iter().enumerate() {
                let a = ws.a1[cf.mus[0] as usize * nb + cf.ns[0] as usize - 1];
                for p in 0..nd {
                    direct[p * nf + f] = cf.coefs[p] * a;
                }
            }
            let (mut q, mut c) = (0, 0);
            for (k, &ncomb) in fb.ncomb.iter().enumerate() {
                for _ in 0..ncomb {
                    let rank = fb.rank[c] as usize;
                    let mut b = C64::new(1.0, 0.0);
                    for &i in &fb.idx[q..q + rank] {
                        b = b.mul(ws.a[i as usize]);
                    }
                    for p in 0..nd {
                        direct[p * nf + sp.rank1.len() + k] += b.re * fb.coef[c * nd + p];
                    }
                    (q, c) = (q + rank, c + 1);
                }
            }
            let rho: Vec<f64> = (0..nd)
                .map(|p| direct[p * nf..(p + 1) * nf].iter().sum())
                .collect();
            assert!(rho.iter().any(|x| *x != 0.0), "{what}: zero densities");
            for (a, b) in dag.iter().zip(&rho) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "{what}: DAG density {a} vs one by one {b}"
                );
            }
            // The projections (per function, times dF/drho) read the same DAG products.
            let mut out = vec![0.0; m.nprojections(si)];
            m.atom_projections_from_base(&mut ws, si, &mut out);
            for p in 0..nd {
                let scale = ws.drho[p];
                for f in 0..nf {
                    let (a, b) = (out[p * nf + f], direct[p * nf + f] * scale);
                    assert!(
                        (a - b).abs() <= 1e-12 * b.abs().max(1e-3 * scale.abs().max(1.0)),
                        "{what}: projection {f} density {p}: {a} vs one by one {b}"
                    );
                }
            }
            // After the energy they reuse its DAG values; from a fresh base they run their own
            // forward pass: the same numbers bit for bit.
            let mut fresh = vec![0.0; out.len()];
            m.atom_projections(&mut PaceScratch::default(), si, &rij, &sj, &mut fresh)
                .unwrap();
            assert_eq!(
                out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                fresh.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{what}: projections after the energy vs from a fresh base"
            );
        }
    }
}

/// The AVX2 build of the per-atom evaluation (also the one AVX-512 hosts run) gives the portable
/// build's energies and gradients bit for bit (same operations in the same order, no fused
/// multiply-adds).
#[test]
fn vector_build_equals_portable_build_bit_for_bit() {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = crate::simd::cpu_features();
        if !cpu.avx2_fma() {
            eprintln!("no AVX2 + FMA on this CPU: nothing to compare");
            return;
        }
        let s = fcc_periodic(3.6, 0.08, 0.1, 11);
        for fam in FAMILIES {
            for emb in EMBEDDINGS {
                let m = model(&Gen::new(fam, emb));
                let mut ws = PaceScratch::default();
                for (si, rij, sj) in environments(&m, &s) {
                    let mut g1 = vec![[0.0; 3]; rij.len()];
                    let mut g2 = g1.clone();
                    let e1 = m
                        .atom_energy_grad_body(&mut ws, si, &rij, &sj, &mut g1)
                        .unwrap();
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    let e2 = unsafe { m.atom_energy_grad_avx2(&mut ws, si, &rij, &sj, &mut g2) }
                        .unwrap();
                    assert_eq!(e1.to_bits(), e2.to_bits(), "{fam} {emb}");
                    assert_eq!(g1, g2, "{fam} {emb}");
                }
            }
        }
    }
}
