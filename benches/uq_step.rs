//! Per-step cost of the step engine (`aceuq::engine::Engine`, what the C ABI's `aceuq_compute`
//! calls), with atoms laid out the way the LAMMPS pair style passes them (owned atoms, one ghost
//! per periodic image in the neighbour list, ensemble force columns folded onto owners before
//! `Engine::ensemble_sigma`). Used to measure the uncertainty
//! overheads without LAMMPS, and under callgrind (instruction counts are repeatable on a busy
//! machine).
//!
//! `cargo bench --bench uq_step -- [MODES] [STEPS]`, MODES a comma-separated list of
//! `none`, `gamma`, `gamma_local`, `ensemble`, `distance`, `gp`, `all`, or methods joined by `+`
//! (default: each of them).
//! The model (the Li model of `make bench`: default basis, every estimator) is fitted once and
//! cached in target/bench-uq/li.aceuq. Environment: BENCH_REPLICATE (2: the 250-atom test frame
//! replicated n×n×n), BENCH_REPEATS (3; best kept), BENCH_CLOCK (`step`: fastest single step in
//! wall time instead of thread CPU time per repeat).
//!
//! Under callgrind, run the built binary with `--collect-atstart=no --toggle-collect=*Engine*`
//! so that only the engine's calls are counted.

use aceuq::engine::{Atoms, Engine, Outputs};
use aceuq::uq::Method;
use std::path::Path;

/// CPU time of this thread (ns, from /proc/thread-self/schedstat): on a machine shared with other
/// jobs, wall time mostly measures the scheduler.
fn cpu_ns() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The atoms of one rank: positions, species, owner of each atom (itself for owned atoms), CSR
/// neighbour list.
struct Layout {
    nlocal: usize,
    x: Vec<f64>,
    species: Vec<i32>,
    owner: Vec<usize>,
    offsets: Vec<i32>,
    neigh: Vec<i32>,
}

fn layout(s: &aceuq::Structure, model: &aceuq::model::Model) -> Layout {
    let nl = aceuq::neighbors::build(s, model.max_cutoff()).unwrap();
    let sp = model.map_species(s).unwrap();
    let n = s.len();
    let mut x: Vec<f64> = s.positions.iter().flat_map(|p| *p).collect();
    let mut species: Vec<i32> = sp.iter().map(|&v| v as i32).collect();
    let mut owner: Vec<usize> = (0..n).collect();
    let mut ghost = std::collections::HashMap::new();
    let mut offsets = vec![0i32];
    let mut neigh = vec![];
    for i in 0..n {
        for k in nl.range(i) {
            let j = nl.j[k] as usize;
            let p = [
                s.positions[i][0] + nl.rij[k][0],
                s.positions[i][1] + nl.rij[k][1],
                s.positions[i][2] + nl.rij[k][2],
            ];
            let shift: [i64; 3] =
                std::array::from_fn(|d| ((p[d] - s.positions[j][d]) * 1e3).round() as i64);
            let idx = if shift == [0; 3] {
                j
            } else {
                *ghost.entry((j, shift)).or_insert_with(|| {
                    let g = species.len();
                    x.extend(p);
                    species.push(sp[j] as i32);
                    owner.push(j);
                    g
                })
            };
            neigh.push(idx as i32);
        }
        offsets.push(neigh.len() as i32);
    }
    Layout {
        nlocal: n,
        x,
        species,
        owner,
        offsets,
        neigh,
    }
}

fn replicate(s: &aceuq::Structure, r: usize) -> aceuq::Structure {
    let cell = s.cell.expect("periodic frame");
    let mut out = s.clone();
    out.positions.clear();
    out.symbols.clear();
    out.arrays.clear();
    for a in 0..r {
        for b in 0..r {
            for c in 0..r {
                for (p, sym) in s.positions.iter().zip(&s.symbols) {
                    out.positions.push(std::array::from_fn(|d| {
                        p[d] + a as f64 * cell[0][d] + b as f64 * cell[1][d] + c as f64 * cell[2][d]
                    }));
                    out.symbols.push(sym.clone());
                }
            }
        }
    }
    out.cell = Some(std::array::from_fn(|k| {
        std::array::from_fn(|d| cell[k][d] * r as f64)
    }));
    out
}

fn model_file(root: &Path) -> std::path::PathBuf {
    let dir = root.join("target/bench-uq");
    let path = dir.join("li.aceuq");
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let read = |f: &str| {
        aceuq::io::extxyz::read_file(root.join("tests/data/li").join(f), &Default::default())
            .unwrap()
    };
    let (train, valid) = (read("train.xyz"), read("valid.xyz"));
    let species = vec!["Li".to_string()];
    let mut model = aceuq::Potential::new(
        aceuq::model::fit::fit(
            &species,
            &Default::default(),
            &Default::default(),
            &train,
            &valid,
            false,
        )
        .unwrap(),
    );
    aceuq::uq::build(
        &model.model,
        &mut model.uq,
        &train,
        &valid,
        &aceuq::uq::UqConfig::everything(),
        false,
    )
    .unwrap();
    model.save(&path).unwrap();
    path
}

/// Index of `m` in [`Method::ALL`] (its slot in `Runner::uq`).
fn method_id(m: Method) -> usize {
    Method::ALL.iter().position(|x| *x == m).expect("in ALL")
}

struct Runner {
    engine: Engine,
    lay: Layout,
    ilist: Vec<i32>,
    fij: Vec<f64>,
    eatom: Vec<f64>,
    uq: Vec<Vec<f64>>,
    ens: Vec<f64>,
    /// Ensemble force columns per atom.
    n_cols: usize,
}

impl Runner {
    /// One step: compute, then (ensemble) fold the force columns of ghosts onto owners and sigma.
    fn step(&mut self, methods: &[Method]) -> f64 {
        let l = &self.lay;
        let nall = l.species.len();
        let atoms = Atoms {
            nlocal: l.nlocal,
            x: &l.x,
            species: &l.species,
            tag: None,
            ilist: &self.ilist,
            offsets: &l.offsets,
            neigh: &l.neigh,
        };
        let want_ens = methods.contains(&Method::Ensemble);
        let mut out = Outputs {
            eatom: Some(&mut self.eatom),
            fij: &mut self.fij,
            uq: Method::ALL
                .into_iter()
                .zip(self.uq.iter_mut())
                .filter(|(m, _)| methods.contains(m))
                .map(|(m, v)| (m, v.as_mut_slice()))
                .collect(),
            ens_forces: if want_ens { &mut self.ens } else { &mut [] },
            gamma_local_cluster: None,
        };
        let energy = self.engine.step(&atoms, &mut out).expect("step");
        if want_ens {
            let w = 3 * self.n_cols;
            for g in l.nlocal..nall {
                let o = l.owner[g];
                for k in 0..w {
                    self.ens[o * w + k] += self.ens[g * w + k];
                }
            }
            let n = l.nlocal;
            let slot = method_id(Method::Ensemble);
            self.engine
                .ensemble_sigma(
                    &l.species[..n],
                    &self.ilist,
                    &self.ens[..n * w],
                    &mut self.uq[slot],
                )
                .expect("ensemble sigma");
        }
        energy
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = model_file(root);
    let pot = aceuq::Potential::load(&path).unwrap();
    let model = &pot.model;
    let all = pot.uq.methods();
    let modes: Vec<(String, Vec<Method>)> = {
        let names = args
            .first()
            .map_or("none,gamma,gamma_local,ensemble,distance,gp,all", |s| s);
        names
            .split(',')
            .map(|n| {
                let ms = match n {
                    "none" => vec![],
                    "all" => all.clone(),
                    _ => n
                        .split('+')
                        .map(|x| *all.iter().find(|m| m.name() == x).expect("known method"))
                        .collect(),
                };
                (n.to_string(), ms)
            })
            .collect()
    };
    let steps: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10);
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (rep, repeats) = (env("BENCH_REPLICATE", 2), env("BENCH_REPEATS", 3));
    let test =
        aceuq::io::extxyz::read_file(root.join("tests/data/li/test.xyz"), &Default::default())
            .unwrap();
    let s = replicate(&test[0], rep);
    let lay = layout(&s, model);
    let nall = lay.species.len();
    let engine = Engine::new(pot.clone()).expect("engine");
    let n_cols = engine.ensemble_columns();
    let mut r = Runner {
        engine,
        ilist: (0..lay.nlocal as i32).collect(),
        fij: vec![0.0; 3 * lay.neigh.len()],
        eatom: vec![0.0; lay.nlocal],
        uq: vec![vec![0.0; lay.nlocal]; 5],
        ens: vec![0.0; 3 * n_cols * nall],
        n_cols,
        lay,
    };
    // Thread CPU time over all steps of a repeat, or (BENCH_CLOCK=step) the fastest single step
    // in wall time: on a host whose CPU accounting is coarse (tick-based) or that preempts the
    // VM in bursts, the per-step minimum is the steadier of the two.
    let per_step = std::env::var("BENCH_CLOCK").is_ok_and(|v| v == "step");
    println!(
        "uq_step: {} atoms ({} with ghosts), {} neighbours/atom, {steps} steps, best of {repeats} ({})",
        r.lay.nlocal,
        nall,
        r.lay.neigh.len() as f64 / r.lay.nlocal as f64,
        if per_step {
            "fastest step, wall time"
        } else {
            "thread CPU time"
        }
    );
    let mut best = vec![f64::INFINITY; modes.len()];
    let mut sink = 0.0;
    for _ in 0..repeats {
        for (k, (_, ms)) in modes.iter().enumerate() {
            if per_step {
                for _ in 0..steps {
                    let t = std::time::Instant::now();
                    sink += r.step(ms);
                    let dt = t.elapsed().as_secs_f64() / r.lay.nlocal as f64;
                    best[k] = best[k].min(dt);
                }
                continue;
            }
            let t = cpu_ns();
            for _ in 0..steps {
                sink += r.step(ms);
            }
            best[k] = best[k].min((cpu_ns() - t) * 1e-9 / (steps * r.lay.nlocal) as f64);
        }
    }
    let base = modes.iter().position(|(n, _)| n == "none").map(|k| best[k]);
    for ((n, _), t) in modes.iter().zip(&best) {
        let ratio = base.map_or(String::new(), |b| format!("{:.3}x", t / b));
        println!("{n:<12} {:>8.3} us/atom-step {ratio}", t * 1e6);
    }
    println!("[{sink:.3}]");
    // Forces of an ensemble step (model in lane 0 of the lane pass) against a plain step.
    if r.n_cols > 0 {
        r.step(&[]);
        let plain = r.fij.clone();
        r.step(&[Method::Ensemble]);
        let fmax = plain.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let (mut dmax, mut rel) = (0.0f64, 0.0f64);
        for (a, b) in plain.iter().zip(&r.fij) {
            dmax = dmax.max((a - b).abs());
            if a.abs() > 1e-3 * fmax {
                rel = rel.max((a - b).abs() / a.abs());
            }
        }
        println!(
            "fij, ensemble step vs plain step: max |diff| {dmax:.3e} eV/A (max |fij| {fmax:.3e}), max relative {rel:.3e} (entries above 1e-3 max)"
        );
    }
    // BENCH_DUMP=file: per-atom values of every method (one step, all methods), one line per
    // method, to compare the outputs of two builds.
    if let Some(p) = std::env::var_os("BENCH_DUMP") {
        r.step(&all);
        let mut text = String::new();
        for m in &all {
            let v = &r.uq[method_id(*m)];
            text += m.name();
            for x in v {
                text += &format!(" {x:.17e}");
            }
            text += "\n";
        }
        std::fs::write(p, text).unwrap();
    }
}
