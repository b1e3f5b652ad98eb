//! Quick evaluation timing used during development (the full comparison is `make bench`).
//! `quick_eval MODEL DATA [energy|basis]`: energy+forces only, or energy+forces+basis vector;
//! `quick_eval POT.ace DATA pace`: a pacemaker potential's energy+forces.
use aceuq::model::Workspace;
use aceuq::model::eval::LaneAtom;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(3).is_some_and(|m| m == "pace") {
        return pace_timing(&args[1], &args[2]);
    }
    let pot = aceuq::Potential::load(std::path::Path::new(&args[1])).unwrap();
    let model = &pot.model;
    let data = aceuq::io::extxyz::read_file(&args[2], &Default::default()).unwrap();
    let with_b = args.get(3).is_some_and(|m| m == "basis");
    if args.get(3).is_some_and(|m| m == "parts") {
        return parts_timing(&pot, &data[0]);
    }
    if args.get(3).is_some_and(|m| m == "lanes") {
        return lanes_timing(&pot, &data[0]);
    }
    if args.get(3).is_some_and(|m| m == "interleave") {
        return interleave(&pot, &data[0]);
    }
    let s = &data[0];
    let mut ws = Workspace::new(model);
    let sp = model.map_species(s).unwrap();
    let nl = aceuq::neighbors::build(s, model.max_cutoff()).unwrap();
    let envs = aceuq::model::env::Environments::from_parts(sp.clone(), nl.clone());
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut b = vec![0.0; model.nfuncs(0)];
    let mut grad = vec![[0.0; 3]; 200];
    let t = Instant::now();
    let mut e = 0.0;
    for _ in 0..reps {
        if with_b {
            e += run_basis(model, &mut ws, &sp, &nl, &mut b, &mut grad);
        } else {
            e += model.predict_with(&envs, &mut ws).energy;
        }
    }
    let dt = t.elapsed().as_secs_f64() / (reps * s.len()) as f64;
    println!(
        "{:.3} us/atom-step ({:.0} atom-steps/s), neighbours/atom {:.1}, e={e:.3}",
        dt * 1e6,
        1.0 / dt,
        nl.j.len() as f64 / s.len() as f64
    );
}

#[inline(never)]
fn run_basis(
    model: &aceuq::model::Model,
    ws: &mut Workspace,
    sp: &[u16],
    nl: &aceuq::neighbors::NeighborList,
    b: &mut [f64],
    grad: &mut Vec<[f64; 3]>,
) -> f64 {
    let mut e = 0.0;
    let mut sj = Vec::new();
    for i in 0..sp.len() {
        let r = nl.range(i);
        sj.clear();
        sj.extend(nl.j[r.clone()].iter().map(|&j| sp[j as usize]));
        grad.resize(r.len(), [0.0; 3]);
        e += model.atom_energy_grad(ws, sp[i] as usize, &nl.rij[r], &sj, grad, Some(b));
    }
    e
}

/// Side-by-side timing of energy+forces, energy+forces+B, and the gamma GEMM for one frame,
/// repeated in alternation (`quick_eval MODEL DATA parts`), single thread.
fn parts_timing(pot: &aceuq::Potential, s: &aceuq::Structure) {
    let model = &pot.model;
    let mut ws = Workspace::new(model);
    let sp = model.map_species(s).unwrap();
    let nl = aceuq::neighbors::build(s, model.max_cutoff()).unwrap();
    let envs = aceuq::model::env::Environments::from_parts(sp.clone(), nl.clone());
    let n = s.len();
    let m = model.nfuncs(0);
    let mut rows = vec![0.0; n * m];
    let mut grad = vec![[0.0; 3]; 200];
    let mut gam = vec![0.0; n];
    let mut sc = aceuq::uq::UqScratch::new(model, &pot.uq);
    let (mut t_e, mut t_b, mut t_g) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let mut sink = 0.0;
    for _ in 0..30 {
        let t = Instant::now();
        for _ in 0..4 {
            sink += model.predict_with(&envs, &mut ws).energy;
        }
        t_e = t_e.min(t.elapsed().as_secs_f64() / 4.0);
        let t = Instant::now();
        for _ in 0..4 {
            let mut sj = Vec::new();
            for i in 0..n {
                let r = nl.range(i);
                sj.clear();
                sj.extend(nl.j[r.clone()].iter().map(|&j| sp[j as usize]));
                grad.resize(r.len(), [0.0; 3]);
                sink += model.atom_energy_grad(
                    &mut ws,
                    0,
                    &nl.rij[r],
                    &sj,
                    &mut grad,
                    Some(&mut rows[i * m..(i + 1) * m]),
                );
            }
        }
        t_b = t_b.min(t.elapsed().as_secs_f64() / 4.0);
        if pot.uq.active_set.is_some() {
            let t = Instant::now();
            for _ in 0..4 {
                pot.uq
                    .evaluate_rows(aceuq::uq::Method::Gamma, 0, &rows, &mut gam, &mut sc)
                    .unwrap();
                sink += gam[0];
            }
            t_g = t_g.min(t.elapsed().as_secs_f64() / 4.0);
        }
    }
    let per = |t: f64| t / n as f64 * 1e6;
    println!(
        "per atom, best of 30: energy+forces {:.2} us; +B {:.2} us ({:.2}x); gamma GEMM {:.2} us ({:.2}x of E+F) [{sink:.1}]",
        per(t_e),
        per(t_b),
        t_b / t_e,
        per(t_g),
        t_g / t_e
    );
}

/// E+F time with and without a gamma GEMM between evaluations (effects of the GEMM's SIMD on
/// the code around it).
fn interleave(pot: &aceuq::Potential, s: &aceuq::Structure) {
    let model = &pot.model;
    let mut ws = Workspace::new(model);
    let sp = model.map_species(s).unwrap();
    let nl = aceuq::neighbors::build(s, model.max_cutoff()).unwrap();
    let envs = aceuq::model::env::Environments::from_parts(sp.clone(), nl.clone());
    let n = s.len();
    let m = model.nfuncs(0);
    let rows: Vec<f64> = (0..n * m)
        .map(|k| ((k * 7919) % 1000) as f64 * 1e-3)
        .collect();
    let mut gam = vec![0.0; n];
    let mut sc = aceuq::uq::UqScratch::new(model, &pot.uq);
    let mut sink = 0.0;
    for with in [false, true, false, true] {
        let (mut te, mut tg) = (0.0, 0.0);
        for _ in 0..40 {
            let t = Instant::now();
            sink += model.predict_with(&envs, &mut ws).energy;
            te += t.elapsed().as_secs_f64();
            if with {
                let t = Instant::now();
                pot.uq
                    .evaluate_rows(aceuq::uq::Method::Gamma, 0, &rows, &mut gam, &mut sc)
                    .unwrap();
                tg += t.elapsed().as_secs_f64();
                sink += gam[0];
            }
        }
        println!(
            "gemm between: {with}: E+F {:.2} us/atom, GEMM {:.2} us/atom [{sink:.0}]",
            te / 40.0 / n as f64 * 1e6,
            tg / 40.0 / n as f64 * 1e6
        );
    }
}

/// Side-by-side timing of the scalar energy+forces pass and the lane pass of an MD step with the
/// ensemble (the model and its spread directions in one pass), best of 40 alternating rounds
/// (`quick_eval MODEL DATA lanes`; the model needs an ensemble).
fn lanes_timing(pot: &aceuq::Potential, s: &aceuq::Structure) {
    let model = &pot.model;
    // Thread CPU time (s): on a shared machine wall time mostly measures the scheduler.
    let cpu = || -> f64 {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `ts` is a valid timespec for the duration of the call.
        if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
            return f64::NAN;
        }
        ts.sec as f64 + ts.nsec as f64 * 1e-9
    };
    let ens = pot.uq.ensemble.as_ref().expect("the model has no ensemble");
    let tables = ens.step_tables(model).unwrap();
    let mut ws = Workspace::new(model);
    let sp = model.map_species(s).unwrap();
    let nl = aceuq::neighbors::build(s, model.max_cutoff()).unwrap();
    let n = s.len();
    let ne = ens.n_directions() + 1;
    let mut grad = vec![[0.0; 3]; 200 * ne];
    let mut en = vec![0.0; ne];
    // Per atom: its neighbours' range in the list and their species.
    let atoms: Vec<(std::ops::Range<usize>, Vec<u16>)> = (0..n)
        .map(|i| {
            let r = nl.range(i);
            let sj = nl.j[r.clone()].iter().map(|&j| sp[j as usize]).collect();
            (r, sj)
        })
        .collect();
    let (mut t_s, mut t_l, mut t_p) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let mut sink = 0.0;
    let mut ws2 = Workspace::new(model);
    let (mut en2, mut grad2) = (vec![0.0; ne], vec![[0.0; 3]; 200 * ne]);
    for _ in 0..40 {
        let t = cpu();
        for (i, (r, sj)) in atoms.iter().enumerate() {
            let si = sp[i] as usize;
            sink += model.atom_energy_grad(&mut ws, si, &nl.rij[r.clone()], sj, &mut grad, None);
        }
        t_s = t_s.min(cpu() - t);
        let t = cpu();
        for (i, (r, sj)) in atoms.iter().enumerate() {
            let si = sp[i] as usize;
            let (rij, tab) = (&nl.rij[r.clone()], &tables[si]);
            model.atom_energy_grad_lanes(&mut ws, si, rij, sj, tab, &mut en, &mut grad, None);
            sink += en[0];
        }
        t_l = t_l.min(cpu() - t);
        // Two atoms per pass (atoms of one species, taken in order).
        let t = cpu();
        let mut pending: Vec<Option<usize>> = vec![None; model.nspecies()];
        for i in 0..n {
            let si = sp[i] as usize;
            let Some(k) = pending[si].take() else {
                pending[si] = Some(i);
                continue;
            };
            let (r0, sj0) = &atoms[k];
            let (r1, sj1) = &atoms[i];
            model.atom_energy_grad_lanes_pair(
                si,
                &tables[si],
                [
                    LaneAtom {
                        ws: &mut ws,
                        rij: &nl.rij[r0.clone()],
                        sj: sj0,
                        energies: &mut en,
                        grads: &mut grad,
                        b: None,
                    },
                    LaneAtom {
                        ws: &mut ws2,
                        rij: &nl.rij[r1.clone()],
                        sj: sj1,
                        energies: &mut en2,
                        grads: &mut grad2,
                        b: None,
                    },
                ],
            );
            sink += en[0] + en2[0];
        }
        for (si, k) in pending.iter().enumerate() {
            if let Some(k) = *k {
                let (r, sj) = &atoms[k];
                let (rij, tab) = (&nl.rij[r.clone()], &tables[si]);
                model.atom_energy_grad_lanes(&mut ws, si, rij, sj, tab, &mut en, &mut grad, None);
                sink += en[0];
            }
        }
        t_p = t_p.min(cpu() - t);
    }
    let per = |t: f64| t / n as f64 * 1e6;
    println!(
        "per atom, best of 40: scalar E+F {:.3} us; lane pass ({ne} lanes) {:.3} us ({:.3}x, +{:.3} us) [{sink:.1}]",
        per(t_s),
        per(t_l),
        t_l / t_s,
        per(t_l - t_s)
    );
    println!(
        "two atoms per pass: {:.3} us ({:.3}x of scalar, {:.3}x of single lane pass) [{sink:.1}]",
        per(t_p),
        t_p / t_s,
        t_p / t_l
    );
}

/// Energy and forces of a pacemaker potential (`quick_eval POT.ace DATA pace`), atom by atom as
/// the MD step calls them, single thread.
fn pace_timing(pot: &str, data: &str) {
    let m = aceuq::pace::PaceModel::load(std::path::Path::new(pot)).unwrap();
    let data = aceuq::io::extxyz::read_file(data, &Default::default()).unwrap();
    let s = &data[0];
    let sp: Vec<i32> = s
        .symbols
        .iter()
        .map(|x| m.species_index(x).unwrap() as i32)
        .collect();
    let nl = aceuq::neighbors::build(s, m.max_cutoff()).unwrap();
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut ws = aceuq::pace::PaceScratch::default();
    let (mut sj, mut grad) = (Vec::new(), Vec::new());
    let mut e = 0.0;
    let t = Instant::now();
    for _ in 0..reps {
        for i in 0..s.len() {
            let r = nl.range(i);
            sj.clear();
            sj.extend(nl.j[r.clone()].iter().map(|&j| sp[j as usize]));
            grad.resize(r.len(), [0.0; 3]);
            e += m
                .atom_energy_grad(&mut ws, sp[i] as usize, &nl.rij[r], &sj, &mut grad)
                .unwrap();
        }
    }
    let dt = t.elapsed().as_secs_f64() / (reps * s.len()) as f64;
    println!("{:.3} us/atom-step, e={:.9}", dt * 1e6, e / reps as f64);
}
