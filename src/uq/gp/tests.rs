//! Tests of the sparse Gaussian process ([`super`]).

use super::*;
use rand::RngExt;
use rand_distr::Distribution;

fn sample_gp_1d(n: usize, l: f64, noise: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..6.0)).collect();
    let k = Mat::from_fn(n, n, |i, j| {
        kern(&[x[i]], &[x[j]], &[1.0 / (l * l)], 1.0) + if i == j { 1e-8 } else { 0.0 }
    });
    let llt = k.llt(Side::Lower).unwrap();
    let nrm = rand_distr::StandardNormal;
    let zv = Mat::<f64>::from_fn(n, 1, |_, _| nrm.sample(&mut rng));
    let mut f = Mat::<f64>::zeros(n, 1);
    matmul(
        f.as_mut(),
        Accum::Replace,
        llt.L(),
        zv.as_ref(),
        1.0,
        Par::Seq,
    );
    let y = (0..n)
        .map(|i| {
            f[(i, 0)]
                + noise * {
                    let v: f64 = nrm.sample(&mut rng);
                    v
                }
                + 0.3
        })
        .collect();
    (x, y)
}

#[test]
fn dtc_gradient_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (n, dim) = (60, 2);
    let x: Vec<f64> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| (2.0 * x[2 * i]).sin() + 0.3 * x[2 * i + 1])
        .collect();
    let z = kmeans(&x, dim, 12, 20, &mut rng);
    for ard in [true, false] {
        let dtc = Dtc {
            x: &x,
            y: &y,
            z: &z,
            dim,
            ard,
        };
        let theta: Vec<f64> = if ard {
            vec![-0.4, 0.3, 0.1, -1.5]
        } else {
            vec![-0.2, 0.1, -1.5]
        };
        let mut g = vec![0.0; theta.len()];
        dtc.nll(&theta, &mut g);
        for p in 0..theta.len() {
            let h = 1e-5;
            let (mut tp, mut tm) = (theta.clone(), theta.clone());
            tp[p] += h;
            tm[p] -= h;
            let fd = (dtc.nll(&tp, &mut []) - dtc.nll(&tm, &mut [])) / (2.0 * h);
            assert!(
                (fd - g[p]).abs() < 1e-5 * fd.abs().max(1.0),
                "ard={ard} param {p}: analytic {} vs fd {fd}",
                g[p]
            );
        }
    }
}

#[test]
fn variance_is_small_at_inducing_points_grows_away_and_plateaus_at_the_prior() {
    let (x, y) = sample_gp_1d(200, 0.5, 0.01, 7);
    let z: Vec<f64> = (0..25).map(|i| 6.0 * i as f64 / 24.0).collect();
    let hyper = Hyper {
        lengthscale: vec![0.5],
        signal_var: 1.3,
        noise_var: 1e-6,
    };
    let gp = GpCore::condition(&x, &y, 1, z.clone(), hyper).unwrap();
    let mut sc = gp.scratch();
    for &zi in &z {
        let (_, v) = gp.predict(&[zi], &mut sc);
        assert!(v < 1e-4 * 1.3, "variance {v} at inducing point {zi}");
    }
    let mut last = -1.0;
    for d in [0.25, 0.5, 1.0, 2.0, 4.0] {
        let (_, v) = gp.predict(&[6.0 + d], &mut sc);
        assert!(
            v > last,
            "variance must grow away from the data: {v} after {last}"
        );
        last = v;
    }
    for far in [20.0, 1e3, -1e6] {
        let (mu, v) = gp.predict(&[far], &mut sc);
        assert!((v - 1.3).abs() < 1e-9, "plateau {v}");
        assert!(
            (mu - gp.mean).abs() < 1e-9,
            "mean reverts: {mu} vs {}",
            gp.mean
        );
    }
    // The mean interpolates the data.
    let resid = x
        .iter()
        .zip(&y)
        .map(|(xi, yi)| (gp.predict(&[*xi], &mut sc).0 - yi).powi(2))
        .sum::<f64>()
        / x.len() as f64;
    assert!(resid.sqrt() < 0.1, "rms residual {}", resid.sqrt());
}

#[test]
fn marginal_likelihood_recovers_known_length_scales() {
    let (x, y) = sample_gp_1d(400, 0.6, 0.05, 11);
    let settings = Settings {
        inducing: 50,
        ard: true,
        restarts: 3,
        ..Default::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (gp, _, _) = fit_gp(&x, &y, 1, &settings, &mut rng).unwrap();
    let l = gp.hyper.lengthscale[0];
    assert!((l - 0.6).abs() < 0.15, "length scale {l}");
    assert!(gp.hyper.noise_var.sqrt() < 0.1, "{:?}", gp.hyper);
    // 2-D ARD: a function that varies fast along x0 and slowly along x1.
    let mut rng2 = ChaCha8Rng::seed_from_u64(4);
    let n = 500;
    let x2: Vec<f64> = (0..2 * n).map(|_| rng2.random_range(0.0..4.0)).collect();
    let nrm = rand_distr::StandardNormal;
    let y2: Vec<f64> = (0..n)
        .map(|i| {
            (2.0 * x2[2 * i]).sin()
                + 0.3 * (0.3 * x2[2 * i + 1]).cos()
                + 0.02 * {
                    let v: f64 = nrm.sample(&mut rng2);
                    v
                }
        })
        .collect();
    let (gp2, _, _) = fit_gp(&x2, &y2, 2, &settings, &mut rng).unwrap();
    let (l0, l1) = (gp2.hyper.lengthscale[0], gp2.hyper.lengthscale[1]);
    assert!(l1 > 3.0 * l0, "ARD should find x1 smoother: {l0} {l1}");
}

/// The vectorized exponential of the kernel values is within 2 ulp of `f64::exp` over the
/// kernel's range, exact at 0, and falls back to `f64::exp` outside it (NaN, +inf, -inf,
/// positive and subnormal-range arguments), including in a partial group of four.
#[test]
fn kernel_exp_matches_std_exp() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut x: Vec<f64> = (0..20000)
        .map(|k| match k % 3 {
            0 => -rng.random_range(0.0..1.0),
            1 => -rng.random_range(0.0..50.0),
            _ => -rng.random_range(0.0..708.0),
        })
        .collect();
    x.extend([
        0.0,
        -0.0,
        -708.0,
        -708.5,
        -745.0,
        -800.0,
        f64::NEG_INFINITY,
        f64::NAN,
        1.5,
        f64::INFINITY,
        -1e-300,
    ]);
    let mut y = x.clone();
    exp_in_place(&mut y);
    let mut worst = 0u64;
    for (&a, &e) in x.iter().zip(&y) {
        let r = a.exp();
        if r.is_nan() {
            assert!(e.is_nan(), "exp({a}) = {e}, expected NaN");
            continue;
        }
        let ulp = (e.to_bits() as i64 - r.to_bits() as i64).unsigned_abs();
        worst = worst.max(ulp);
        assert!(ulp <= 2, "exp({a}) = {e:e}, std gives {r:e} ({ulp} ulp)");
    }
    let mut z = [0.0];
    exp_in_place(&mut z);
    assert_eq!(z[0], 1.0);
    eprintln!("kernel exp: worst {worst} ulp over {} arguments", x.len());
}

#[test]
fn build_on_a_fitted_model_and_round_trip() {
    use crate::model::fit;
    use crate::testing::{random_structure, small_cfg, tiny_cfg};
    use crate::uq::{descriptor_table, force_errors};
    let names = vec!["Li".to_string()];
    let mut data: Vec<crate::Structure> = (0..14)
        .map(|k| random_structure(&["Li"], 2, 600 + k as u64, k % 2 == 0))
        .collect();
    let mut teacher =
        fit::build_skeleton(&names, &small_cfg(), &fit::FitConfig::default(), &data).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for v in teacher.coefs[0].iter_mut() {
        *v = rng.random_range(-0.05..0.05);
    }
    teacher.rebuild_derived();
    let mut ws = crate::model::Workspace::new(&teacher);
    for s in data.iter_mut() {
        let p = teacher.predict(s, &mut ws).unwrap();
        s.energy = Some(p.energy);
        s.forces = Some(p.forces);
    }
    let valid = data.split_off(8);
    let model = fit::fit(
        &names,
        &tiny_cfg(),
        &fit::FitConfig::default(),
        &data,
        &[],
        false,
    )
    .unwrap();
    let tt = descriptor_table(&model, &data).unwrap();
    let vt = descriptor_table(&model, &valid).unwrap();
    let errs = force_errors(&model, &valid).unwrap();
    let settings = Settings {
        inducing: 20,
        max_components: 4,
        ..Default::default()
    };
    let g = SparseGp::build(&model, &tt, &vt, &errs, &settings, 3, false).unwrap();
    let mut sc = Scratch::new(&g);
    // The blocked form (explicit triangular inverses, matrix products over column panels)
    // equals the row-by-row substitutions up to rounding, on a whole block and on a
    // partial one, with more than one panel (the last one partial).
    let n_ind = g.species[0].gp.weights.len();
    assert!(
        n_ind > SOLVE_PANEL && !n_ind.is_multiple_of(SOLVE_PANEL),
        "{n_ind} inducing inputs"
    );
    let vals = g.values(0, &vt.per_species[0].rows);
    assert!(
        vals.len() > BLOCK,
        "test data should span more than one block"
    );
    for (r, v) in vals.iter().enumerate() {
        let one = g.value(0, vt.per_species[0].row(r), &mut sc);
        assert!(v.is_finite() && *v > 0.0);
        assert!((v - one).abs() <= 1e-10 * one, "row {r}: {v} vs {one}");
    }
    // Far from everything: exp(mean + 2 s_f).
    let far: Vec<f64> = vt.per_species[0]
        .row(0)
        .iter()
        .map(|v| v * 50.0 + 3.0)
        .collect();
    let (mu, sd) = g.predict(0, &far, &mut sc);
    let h = g.hyper(0);
    assert!(
        (sd - h.signal_var.sqrt()).abs() < 1e-6 * h.signal_var.sqrt(),
        "{sd} {h:?}"
    );
    assert!((mu - g.meta.species[0].mean).abs() < 1e-6);
    let mut c = Container::default();
    g.save(&mut c);
    let p = Path::new("g.aceuq");
    let bytes = Container::from_bytes(p, &c.to_bytes()).unwrap();
    let back = SparseGp::load(p, &bytes, &model).unwrap().unwrap();
    let mut sc2 = Scratch::new(&back);
    for r in 0..vt.per_species[0].len() {
        let b = vt.per_species[0].row(r);
        assert_eq!(back.value(0, b, &mut sc2), g.value(0, b, &mut sc));
    }
    let mut bad_c = c.clone();
    let mut l = back.species[0].gp.chol_a.clone();
    l[1] = 0.5; // above the diagonal
    put_f64(&mut bad_c, "uq.gp.0.chol_a", vec![20, 20], &l);
    let e = SparseGp::load(p, &bad_c, &model).unwrap_err().to_string();
    assert!(e.contains("uq.gp.0.chol_a"), "{e}");
    let mut bad_c = c.clone();
    bad_c.meta["uq"]["gp"]["species"][0]
        .as_table_mut()
        .unwrap()
        .insert("inducing".into(), toml::Value::Integer(1 << 62));
    let e = SparseGp::load(p, &bad_c, &model).unwrap_err().to_string();
    assert!(e.contains("uq.gp.0.inducing"), "{e}");
    let mut bad_c = c.clone();
    put_f64(&mut bad_c, "uq.gp.0.lengthscale", vec![1], &[1.0]);
    let e = SparseGp::load(p, &bad_c, &model).unwrap_err().to_string();
    assert!(e.contains("uq.gp.0.lengthscale"), "{e}");
}
