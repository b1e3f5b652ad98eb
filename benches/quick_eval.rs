//! Quick evaluation timing used during development (the full comparison is `make bench`).
use aceuq::model::Workspace;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = aceuq::io::modelfile::load(std::path::Path::new(&args[1])).unwrap();
    let data = aceuq::io::extxyz::read_file(&args[2], &Default::default()).unwrap();
    let s = &data[0];
    let mut ws = Workspace::new(&model);
    let sp = model.map_species(s).unwrap();
    let nl = aceuq::neighbors::build(s, model.max_cutoff()).unwrap();
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let t = Instant::now();
    let mut e = 0.0;
    for _ in 0..reps {
        e += model.predict_with(&sp, &nl, &mut ws).energy;
    }
    let dt = t.elapsed().as_secs_f64() / (reps * s.len()) as f64;
    println!(
        "{:.3} us/atom-step ({:.0} atom-steps/s), neighbours/atom {:.1}, e={e:.3}",
        dt * 1e6,
        1.0 / dt,
        nl.j.len() as f64 / s.len() as f64
    );
}
