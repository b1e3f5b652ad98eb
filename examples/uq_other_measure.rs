//! Measure the ensemble, latent-distance and sparse-GP estimators on a data directory holding
//! train/valid/test/novel .xyz files (default tests/data/li): build time, Spearman rho per atom
//! between uncertainty and |force error| on test + novel, ROC-AUC of the structure max
//! uncertainty (test = in-distribution, novel = positive), and per-atom evaluation cost relative
//! to energy + forces (`atom_energy_grad`), measured side by side.
//!
//! `cargo run --release --example uq_other_measure -- [DATA_DIR] [--quick]`
//! (`--quick`: only the default variant of each estimator).

use aceuq::basis::BasisConfig;
use aceuq::model::fit::{self, FitConfig};
use aceuq::model::{Model, Workspace};
use aceuq::stats::{roc_auc, spearman};
use aceuq::structure::Structure;
use aceuq::uq::{self, distance, ensemble, gp};
use std::hint::black_box;
use std::time::Instant;

fn read(dir: &str, name: &str) -> Vec<Structure> {
    aceuq::io::extxyz::read_file(format!("{dir}/{name}.xyz"), &Default::default())
        .unwrap_or_else(|e| panic!("{dir}/{name}.xyz: {e}"))
}

/// Per-atom uncertainties of every structure.
type PerAtom = Vec<Vec<f64>>;

fn report(
    name: &str,
    build_s: f64,
    cost: f64,
    u_test: &PerAtom,
    u_novel: &PerAtom,
    e_test: &PerAtom,
    e_novel: &PerAtom,
) {
    let flat =
        |a: &PerAtom, b: &PerAtom| -> Vec<f64> { a.iter().chain(b).flatten().cloned().collect() };
    let rho_all = spearman(&flat(u_test, u_novel), &flat(e_test, e_novel)).unwrap_or(f64::NAN);
    let rho_test = spearman(&flat(u_test, &vec![]), &flat(e_test, &vec![])).unwrap_or(f64::NAN);
    let rho_novel = spearman(&flat(u_novel, &vec![]), &flat(e_novel, &vec![])).unwrap_or(f64::NAN);
    let smax = |u: &PerAtom| -> Vec<f64> {
        u.iter()
            .map(|v| v.iter().cloned().fold(0.0, f64::max))
            .collect()
    };
    let scores: Vec<f64> = smax(u_test).into_iter().chain(smax(u_novel)).collect();
    let labels: Vec<bool> = (0..u_test.len())
        .map(|_| false)
        .chain((0..u_novel.len()).map(|_| true))
        .collect();
    let auc = roc_auc(&scores, &labels).unwrap_or(f64::NAN);
    let mean = |u: &PerAtom| {
        let f: Vec<f64> = u.iter().flatten().cloned().collect();
        f.iter().sum::<f64>() / f.len() as f64
    };
    println!(
        "| {name:<36} | {build_s:>7.1} | {cost:>5.2} | {rho_all:>6.3} | {rho_test:>6.3} | {rho_novel:>6.3} | {auc:>6.3} | {:>8.4} | {:>8.4} |",
        mean(u_test),
        mean(u_novel)
    );
}

fn per_atom_tables(model: &Model, data: &[Structure]) -> uq::DescriptorTable {
    uq::descriptor_table(model, data).expect("descriptors")
}

/// Per-structure, per-atom values of a row-wise estimator from a descriptor table.
fn by_structure(data: &[Structure], table: &uq::DescriptorTable, vals: &[Vec<f64>]) -> PerAtom {
    let mut out: PerAtom = data.iter().map(|s| vec![0.0; s.len()]).collect();
    for (sp, rows) in table.per_species.iter().enumerate() {
        for k in 0..rows.len() {
            out[rows.structure[k] as usize][rows.atom[k] as usize] = vals[sp][k];
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "tests/data/li".into());
    let (train, valid, test, novel) = (
        read(&dir, "train"),
        read(&dir, "valid"),
        read(&dir, "test"),
        if std::path::Path::new(&format!("{dir}/novel.xyz")).exists() {
            read(&dir, "novel")
        } else {
            eprintln!("{dir}/novel.xyz not found: novel-structure columns are empty");
            vec![]
        },
    );
    let species = {
        let mut s: Vec<String> = train.iter().flat_map(|s| s.symbols.clone()).collect();
        s.sort();
        s.dedup();
        s
    };
    let t = Instant::now();
    let model = fit::fit(
        &species,
        &BasisConfig::default(),
        &FitConfig::default(),
        &train,
        &valid,
        false,
    )
    .expect("fit");
    println!(
        "model: species {species:?}, {:?} functions, fit {:.1} s; {}",
        (0..species.len())
            .map(|s| model.nfuncs(s))
            .collect::<Vec<_>>(),
        t.elapsed().as_secs_f64(),
        fit::metrics_table(&model.fit_info.metrics)
            .lines()
            .last()
            .unwrap_or("")
    );
    let e_valid = uq::force_errors(&model, &valid).unwrap();
    let e_test = uq::force_errors(&model, &test).unwrap();
    let e_novel = uq::force_errors(&model, &novel).unwrap();
    let t_tr = per_atom_tables(&model, &train);
    let t_va = per_atom_tables(&model, &valid);
    let t_te = per_atom_tables(&model, &test);
    let t_no = per_atom_tables(&model, &novel);
    let rmse = |e: &PerAtom| {
        let f: Vec<f64> = e.iter().flatten().cloned().collect();
        (f.iter().map(|v| v * v).sum::<f64>() / f.len() as f64).sqrt()
    };
    println!(
        "|F error| rms: valid {:.4}, test {:.4}, novel {:.4} eV/Å; {} test + {} novel structures, {} + {} atoms",
        rmse(&e_valid),
        rmse(&e_test),
        rmse(&e_novel),
        test.len(),
        novel.len(),
        e_test.iter().flatten().count(),
        e_novel.iter().flatten().count()
    );
    println!();
    println!(
        "| estimator                            | build s | cost  | rho    | rho    | rho    | ROC    | mean u   | mean u   |"
    );
    println!(
        "|                                      |         | /E+F  | all    | test   | novel  | AUC    | test     | novel    |"
    );
    println!(
        "|--------------------------------------|---------|-------|--------|--------|--------|--------|----------|----------|"
    );
    let seed = 2024;
    // Cost column: single-threaded time of the estimator on 4 test structures relative to
    // `Model::predict` (energy + forces, neighbour list included) on the same structures; for
    // distance and GP the estimator time is `value(B_i)` per atom (B_i comes almost for free
    // with the forces: see the side-by-side table at the end).
    let timing = &test[..4.min(test.len())];
    let best_of = |f: &mut dyn FnMut()| {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    };
    let predict_time = || {
        let mut ws = Workspace::new(&model);
        best_of(&mut || {
            for s in timing {
                black_box(model.predict(s, &mut ws).unwrap());
            }
        })
    };
    let t_timing = per_atom_tables(&model, timing);

    // Ensembles.
    let ens_variants: Vec<(String, usize, ensemble::Settings)> = if quick {
        vec![(
            "ensemble bootstrap n_e=8".into(),
            8,
            ensemble::Settings::default(),
        )]
    } else {
        vec![
            (
                "ensemble bootstrap n_e=8".into(),
                8,
                ensemble::Settings::default(),
            ),
            (
                "ensemble bootstrap n_e=4".into(),
                4,
                ensemble::Settings::default(),
            ),
            (
                "ensemble bootstrap-poisson n_e=8".into(),
                8,
                ensemble::Settings {
                    resampling: ensemble::Resampling::Poisson,
                    ..Default::default()
                },
            ),
            (
                "ensemble posterior n_e=8".into(),
                8,
                ensemble::Settings {
                    sampling: ensemble::Sampling::Posterior,
                    ..Default::default()
                },
            ),
        ]
    };
    let mut ens8 = None;
    for (name, ne, st) in ens_variants {
        let t = Instant::now();
        let ens = ensemble::Ensemble::build(&model, &train, &valid, &e_valid, ne, &st, seed, false)
            .unwrap();
        let bt = t.elapsed().as_secs_f64();
        let eval = |d: &[Structure]| -> PerAtom {
            let mut ws = Workspace::new(&model);
            d.iter()
                .map(|s| ens.sigma_structure(&model, s, &mut ws).unwrap())
                .collect()
        };
        let base = predict_time();
        let mut ws = Workspace::new(&model);
        let cost = best_of(&mut || {
            for s in timing {
                black_box(ens.member_forces(&model, s, &mut ws).unwrap());
            }
        }) / base;
        report(
            &name,
            bt,
            cost,
            &eval(&test),
            &eval(&novel),
            &e_test,
            &e_novel,
        );
        if ens8.is_none() && ne == 8 {
            ens8 = Some(ens);
        }
    }

    // Latent distance.
    let ns = model.nspecies();
    let dist_variants: Vec<(String, distance::Settings)> = if quick {
        vec![("distance default".into(), distance::Settings::default())]
    } else {
        vec![
            (
                "distance default (2000 random refs)".into(),
                distance::Settings::default(),
            ),
            (
                "distance 2000 farthest refs".into(),
                distance::Settings {
                    reference: distance::Reference::Farthest,
                    ..Default::default()
                },
            ),
            (
                "distance 1000 random refs".into(),
                distance::Settings {
                    max_reference: 1000,
                    ..Default::default()
                },
            ),
            (
                "distance 4000 random refs".into(),
                distance::Settings {
                    max_reference: 4000,
                    ..Default::default()
                },
            ),
            (
                "distance all refs".into(),
                distance::Settings {
                    max_reference: usize::MAX,
                    ..Default::default()
                },
            ),
            (
                "distance no residual".into(),
                distance::Settings {
                    residual: false,
                    ..Default::default()
                },
            ),
            (
                "distance 8 components".into(),
                distance::Settings {
                    max_components: 8,
                    ..Default::default()
                },
            ),
            (
                "distance 32 components".into(),
                distance::Settings {
                    max_components: 32,
                    ..Default::default()
                },
            ),
        ]
    };
    let mut dist_default = None;
    for (name, st) in dist_variants {
        let t = Instant::now();
        let dm = distance::DistanceModel::build(&model, &t_tr, &t_va, &e_valid, &st, seed, false)
            .unwrap();
        let bt = t.elapsed().as_secs_f64();
        let eval = |d: &[Structure], tab: &uq::DescriptorTable| -> PerAtom {
            let v: Vec<Vec<f64>> = (0..ns)
                .map(|s| dm.values(s, &tab.per_species[s].rows))
                .collect();
            by_structure(d, tab, &v)
        };
        println!(
            "|   ({} PCA components, sigma = {:?})",
            dm.components(0),
            dm.sigma(0)
                .iter()
                .map(|v| format!("{v:.3e}"))
                .collect::<Vec<_>>()
        );
        let base = predict_time();
        let mut sc = distance::Scratch::new(&dm);
        let cost = best_of(&mut || {
            for sp in 0..ns {
                let rows = &t_timing.per_species[sp];
                for r in 0..rows.len() {
                    black_box(dm.value(sp, rows.row(r), &mut sc));
                }
            }
        }) / base;
        report(
            &name,
            bt,
            cost,
            &eval(&test, &t_te),
            &eval(&novel, &t_no),
            &e_test,
            &e_novel,
        );
        if dist_default.is_none() {
            dist_default = Some(dm);
        }
    }

    // Sparse GP.
    let gp_variants: Vec<(String, gp::Settings)> = if quick {
        vec![("gp default (ARD)".into(), gp::Settings::default())]
    } else {
        vec![
            (
                "gp default (ARD, 8 comp + residual)".into(),
                gp::Settings::default(),
            ),
            (
                "gp isotropic".into(),
                gp::Settings {
                    ard: false,
                    ..Default::default()
                },
            ),
            (
                "gp no residual".into(),
                gp::Settings {
                    residual: false,
                    ..Default::default()
                },
            ),
            (
                "gp 16 components".into(),
                gp::Settings {
                    max_components: 16,
                    ..Default::default()
                },
            ),
        ]
    };
    let mut gp_default = None;
    for (name, st) in gp_variants {
        let t = Instant::now();
        let g = gp::SparseGp::build(&model, &t_tr, &t_va, &e_valid, &st, seed, false).unwrap();
        let bt = t.elapsed().as_secs_f64();
        let h = g.hyper(0);
        println!(
            "|   (lengthscales {:?}, s_f {:.3}, s_n {:.3})",
            h.lengthscale
                .iter()
                .map(|v| format!("{v:.2}"))
                .collect::<Vec<_>>(),
            h.signal_var.sqrt(),
            h.noise_var.sqrt()
        );
        let eval = |d: &[Structure], tab: &uq::DescriptorTable| -> PerAtom {
            let v: Vec<Vec<f64>> = (0..ns)
                .map(|s| g.values(s, &tab.per_species[s].rows))
                .collect();
            by_structure(d, tab, &v)
        };
        let base = predict_time();
        let mut sc = gp::Scratch::new(&g);
        let cost = best_of(&mut || {
            for sp in 0..ns {
                let rows = &t_timing.per_species[sp];
                for r in 0..rows.len() {
                    black_box(g.value(sp, rows.row(r), &mut sc));
                }
            }
        }) / base;
        report(
            &name,
            bt,
            cost,
            &eval(&test, &t_te),
            &eval(&novel, &t_no),
            &e_test,
            &e_novel,
        );
        if gp_default.is_none() {
            gp_default = Some(g);
        }
    }

    if let (Some(d), Some(g)) = (&dist_default, &gp_default) {
        println!("\n[uq.distance] of the default:\n{}", d.summary());
        println!("[uq.gp] of the default:\n{}", g.summary());
    }
    // Per config_type: mean and max |force error| and each default estimator's mean and max.
    if let (Some(ens), Some(dm), Some(g)) = (&ens8, &dist_default, &gp_default) {
        let all: Vec<&Structure> = test.iter().chain(&novel).collect();
        let errs: Vec<&Vec<f64>> = e_test.iter().chain(&e_novel).collect();
        let mut ws = Workspace::new(&model);
        let u_e: PerAtom = all
            .iter()
            .map(|s| ens.sigma_structure(&model, s, &mut ws).unwrap())
            .collect();
        let tab =
            |d: &[Structure], t: &uq::DescriptorTable, f: &dyn Fn(usize, &[f64]) -> Vec<f64>| {
                let v: Vec<Vec<f64>> = (0..ns).map(|s| f(s, &t.per_species[s].rows)).collect();
                by_structure(d, t, &v)
            };
        let u_d: PerAtom = tab(&test, &t_te, &|s, r| dm.values(s, r))
            .into_iter()
            .chain(tab(&novel, &t_no, &|s, r| dm.values(s, r)))
            .collect();
        let u_g: PerAtom = tab(&test, &t_te, &|s, r| g.values(s, r))
            .into_iter()
            .chain(tab(&novel, &t_no, &|s, r| g.values(s, r)))
            .collect();
        let mut groups: Vec<String> = vec![];
        let key = |k: usize| -> String {
            let ct = all[k].config_type.clone().unwrap_or_default();
            if k < test.len() {
                format!("test {ct}")
            } else {
                ct
            }
        };
        for k in 0..all.len() {
            if !groups.contains(&key(k)) {
                groups.push(key(k));
            }
        }
        println!("\nper config_type (defaults; mean / max over atoms, eV/Å):");
        println!("| group | frames | atoms | error mean/max | ensemble | distance | gp |");
        println!("|---|---|---|---|---|---|---|");
        for gname in &groups {
            let ks: Vec<usize> = (0..all.len()).filter(|&k| &key(k) == gname).collect();
            let stat = |u: &dyn Fn(usize) -> Vec<f64>| {
                let v: Vec<f64> = ks.iter().flat_map(|&k| u(k)).collect();
                format!(
                    "{:.3}/{:.3}",
                    v.iter().sum::<f64>() / v.len() as f64,
                    v.iter().cloned().fold(0.0, f64::max)
                )
            };
            println!(
                "| {gname} | {} | {} | {} | {} | {} | {} |",
                ks.len(),
                ks.iter().map(|&k| all[k].len()).sum::<usize>(),
                stat(&|k| errs[k].clone()),
                stat(&|k| u_e[k].clone()),
                stat(&|k| u_d[k].clone()),
                stat(&|k| u_g[k].clone())
            );
        }
    }
    // Per-atom cost, side by side on the first test structure.
    let ens8 = ens8.as_ref().expect("an n_e = 8 ensemble");
    let dm = dist_default.as_ref().expect("distance");
    let g = gp_default.as_ref().expect("gp");
    let ens4 = ensemble::Ensemble::build(
        &model,
        &train,
        &valid,
        &e_valid,
        4,
        &Default::default(),
        seed,
        false,
    )
    .unwrap();
    let s = &test[0];
    let sp = model.map_species(s).unwrap();
    let nl = aceuq::neighbors::build(s, model.max_cutoff()).unwrap();
    let n = s.len();
    let sjs: Vec<Vec<u16>> = (0..n)
        .map(|i| nl.j[nl.range(i)].iter().map(|&j| sp[j as usize]).collect())
        .collect();
    let maxnn = (0..n).map(|i| nl.range(i).len()).max().unwrap_or(0);
    let mut ws = Workspace::new(&model);
    let mut grad = vec![[0.0; 3]; maxnn * 8];
    let mut b = vec![
        0.0;
        (0..model.nspecies())
            .map(|s| model.nfuncs(s))
            .max()
            .unwrap_or(0)
    ];
    let bs: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut b = vec![0.0; model.nfuncs(sp[i] as usize)];
            let si = sp[i] as usize;
            model.atom_descriptor(&mut ws, si, &nl.rij[nl.range(i)], &sjs[i], &mut b);
            b
        })
        .collect();
    let mut en = [0.0; 8];
    let mut dsc = distance::Scratch::new(dm);
    let mut gsc = gp::Scratch::new(g);
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let names = [
        "energy+forces (atom_energy_grad)",
        "energy+forces+B_i",
        "distance value(B_i) only",
        "gp value(B_i) only",
        "members n_e=4 (energies+grads)",
        "members n_e=8 (energies+grads)",
        "descriptor B_i only (A + forward)",
    ];
    let mut best = [f64::INFINITY; 7];
    for _round in 0..7 {
        for (k, bestk) in best.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..reps {
                for i in 0..n {
                    let r = nl.range(i);
                    let rij = &nl.rij[r.clone()];
                    let si = sp[i] as usize;
                    let nn = rij.len();
                    let v = match k {
                        0 => {
                            model.atom_energy_grad(&mut ws, si, rij, &sjs[i], &mut grad[..nn], None)
                        }
                        1 => model.atom_energy_grad(
                            &mut ws,
                            si,
                            rij,
                            &sjs[i],
                            &mut grad[..nn],
                            Some(&mut b),
                        ),
                        2 => dm.value(si, &bs[i], &mut dsc),
                        3 => g.value(si, &bs[i], &mut gsc),
                        4 => {
                            model.atom_energy_grad_members(
                                &mut ws,
                                si,
                                rij,
                                &sjs[i],
                                &ens4.tables()[si],
                                &mut en[..4],
                                &mut grad[..nn * 4],
                            );
                            en[0]
                        }
                        5 => {
                            model.atom_energy_grad_members(
                                &mut ws,
                                si,
                                rij,
                                &sjs[i],
                                &ens8.tables()[si],
                                &mut en[..8],
                                &mut grad[..nn * 8],
                            );
                            en[0]
                        }
                        _ => {
                            model.atom_descriptor(
                                &mut ws,
                                si,
                                rij,
                                &sjs[i],
                                &mut b[..model.nfuncs(si)],
                            );
                            b[0]
                        }
                    };
                    black_box(v);
                    black_box(&grad);
                }
            }
            *bestk = bestk.min(t.elapsed().as_secs_f64() / (reps * n) as f64);
        }
    }
    println!();
    println!(
        "per-atom cost on {} ({} atoms, {:.1} neighbours/atom), best of 7 rounds x {reps} sweeps:",
        s.origin,
        n,
        nl.j.len() as f64 / n as f64
    );
    for k in 0..7 {
        println!(
            "  {:<36} {:>8.2} us  ({:.2} x energy+forces)",
            names[k],
            best[k] * 1e6,
            best[k] / best[0]
        );
    }
    println!(
        "  => distance total (E+F+B + value) / E+F = {:.2}; gp total / E+F = {:.2}; ensemble: main E+F + members: n_e=4 {:.2}, n_e=8 {:.2} (members alone {:.2}, {:.2})",
        (best[1] + best[2]) / best[0],
        (best[1] + best[3]) / best[0],
        (best[0] + best[4]) / best[0],
        (best[0] + best[5]) / best[0],
        best[4] / best[0],
        best[5] / best[0]
    );

    // Scaling of the shared-descriptor member kernel with the member count (tables built from
    // copies of the model's coefficients; the cost does not depend on the values).
    let mut line = String::from("  members kernel / energy+forces by n_e:");
    for ne in [1usize, 2, 4, 8, 12, 16] {
        let c: Vec<&[f64]> = (0..ne).map(|_| model.coefs[0].as_slice()).collect();
        let tab = model.member_tables(0, &c, &vec![0.0; ne]).unwrap();
        let mut g = vec![[0.0; 3]; maxnn * ne];
        let mut e = vec![0.0; ne];
        let mut bt = f64::INFINITY;
        let mut b0 = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                for i in (0..n).filter(|&i| sp[i] == 0) {
                    let r = nl.range(i);
                    let nn = r.len();
                    model.atom_energy_grad(
                        &mut ws,
                        sp[i] as usize,
                        &nl.rij[r],
                        &sjs[i],
                        &mut grad[..nn],
                        None,
                    );
                    black_box(&grad);
                }
            }
            b0 = b0.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..reps {
                for i in (0..n).filter(|&i| sp[i] == 0) {
                    let r = nl.range(i);
                    let nn = r.len();
                    model.atom_energy_grad_members(
                        &mut ws,
                        sp[i] as usize,
                        &nl.rij[r],
                        &sjs[i],
                        &tab,
                        &mut e,
                        &mut g[..nn * ne],
                    );
                    black_box(&g);
                }
            }
            bt = bt.min(t.elapsed().as_secs_f64());
        }
        line.push_str(&format!(" {ne}: {:.2}", bt / b0));
    }
    println!("{line}");
}
