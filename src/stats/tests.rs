//! Tests against independent values from scipy (tests/data/stats/make_vectors.py writes
//! vectors.txt and the samples; both are committed) and properties that could fail.
//!
//! Tolerances (relative unless stated) and why:
//! - incomplete gamma P, Q and the distributions' pdf/cdf/sf: 1e-12 (a <= 1000) and 1e-10
//!   (a = 1e4, where ln-prefactor rounding of O(sqrt(a)) ulps dominates); values below 1e-300
//!   are compared absolutely. scipy's own functions are accurate to ~1e-15.
//! - quantiles (ppf/isf, incl. q = 1e-15): 1e-11; the Newton solve stops at a few ulps, the
//!   residual error is the conditioning of the inverse at the tails.
//! - ln Gamma, digamma, trigamma: 1e-13 (Lanczos in statrs; series here).
//! - Kolmogorov distribution: 1e-10; where scipy uses Pomeranz's recursion we use Durbin's
//!   matrix (both exact, they differ by rounding only).
//! - KS statistic: 1e-14 absolute (same arithmetic); p-values: 1e-9.
//! - Fits: Maxwell sigma 1e-13 (closed form); Gamma shape and scale 1e-9 (both solve the same
//!   equation; scipy's root finder stops at ~1e-12 in a); generalized Gamma: our
//!   log-likelihood must be >= the reference optimum minus 1e-7 * n (the reference is a
//!   multi-start Nelder–Mead, itself converged to ~1e-9 in log-likelihood) and parameters
//!   within 2e-3 (Nelder–Mead stops at ~1e-5 relative, and the likelihood is flat along the
//!   a-c ridge, so parameters are less determined than the likelihood).

use std::collections::HashMap;

use super::dist::{ContinuousDistribution, Distribution, Gamma, GenGamma, Maxwell};
use super::fit::{fit_gamma, fit_gengamma, fit_maxwell};
use super::ks::{kolmogorov_cdf, kolmogorov_sf, ks_test, smirnov_sf};
use super::metrics::{roc_auc, spearman};
use super::special::{digamma, gamma_p, gamma_p_inv, gamma_q, gamma_q_inv, ln_gamma, trigamma};

const VECTORS: &str = include_str!("../../tests/data/stats/vectors.txt");

/// One record of vectors.txt: kind plus key=value pairs (numbers parsed when possible).
struct Rec {
    kind: String,
    num: HashMap<String, f64>,
    text: HashMap<String, String>,
}

impl Rec {
    fn f(&self, k: &str) -> f64 {
        *self
            .num
            .get(k)
            .unwrap_or_else(|| panic!("record {} lacks {k}", self.kind))
    }
    fn s(&self, k: &str) -> &str {
        self.text
            .get(k)
            .unwrap_or_else(|| panic!("record {} lacks {k}", self.kind))
    }
}

fn records(kind: &str) -> Vec<Rec> {
    let v: Vec<Rec> = VECTORS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            if k != kind {
                return None;
            }
            let mut num = HashMap::new();
            let mut text = HashMap::new();
            for kv in it {
                let (key, val) = kv.split_once('=').expect("key=value");
                match val.parse::<f64>() {
                    Ok(x) => {
                        num.insert(key.to_string(), x);
                    }
                    Err(_) => {
                        text.insert(key.to_string(), val.to_string());
                    }
                }
                text.entry(key.to_string())
                    .or_insert_with(|| val.to_string());
            }
            Some(Rec {
                kind: k.to_string(),
                num,
                text,
            })
        })
        .collect();
    assert!(!v.is_empty(), "no records of kind {kind} in vectors.txt");
    v
}

pub(crate) fn sample(name: &str) -> Vec<f64> {
    let path = format!(
        "{}/tests/data/stats/samples/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| l.trim().parse::<f64>().expect("number"))
        .collect()
}

/// Relative error, with values of magnitude below `floor` compared absolutely.
fn rel_err(got: f64, want: f64, floor: f64) -> f64 {
    if want == got {
        return 0.0;
    }
    (got - want).abs() / want.abs().max(floor)
}

/// Collects comparison failures so that a test reports all of them at once.
#[derive(Default)]
struct Checker {
    fails: Vec<String>,
    worst: f64,
}

impl Checker {
    fn check(&mut self, what: &str, got: f64, want: f64, tol: f64) {
        let err = rel_err(got, want, 1e-300);
        if err <= tol || (want.is_infinite() && got == want) {
            if err.is_finite() {
                self.worst = self.worst.max(err);
            }
        } else {
            self.fails.push(format!(
                "{what}: got {got:e}, want {want:e}, rel err {err:e} > {tol:e}"
            ));
        }
    }
    #[track_caller]
    fn finish(self, name: &str) {
        eprintln!(
            "{name}: worst relative error of passing checks {:e}",
            self.worst
        );
        assert!(
            self.fails.is_empty(),
            "{name}: {} failures:\n{}",
            self.fails.len(),
            self.fails.join("\n")
        );
    }
}

/// Single comparison (panics on failure).
#[track_caller]
fn check(what: &str, got: f64, want: f64, tol: f64) {
    let mut c = Checker::default();
    c.check(what, got, want, tol);
    assert!(c.fails.is_empty(), "{}", c.fails.join("\n"));
}

#[test]
fn stats_special_functions_match_scipy() {
    let mut ck = Checker::default();
    for r in records("gammainc") {
        let (a, x) = (r.f("a"), r.f("x"));
        let tol = if a > 1000.0 { 1e-10 } else { 1e-12 };
        ck.check(&format!("P({a},{x})"), gamma_p(a, x), r.f("p"), tol);
        ck.check(&format!("Q({a},{x})"), gamma_q(a, x), r.f("q"), tol);
    }
    for r in records("gammainccinv") {
        let (a, q) = (r.f("a"), r.f("q"));
        ck.check(
            &format!("Qinv({a},{q})"),
            gamma_q_inv(a, q),
            r.f("x"),
            1e-11,
        );
    }
    for r in records("gammaincinv") {
        let (a, p) = (r.f("a"), r.f("p"));
        ck.check(
            &format!("Pinv({a},{p})"),
            gamma_p_inv(a, p),
            r.f("x"),
            1e-11,
        );
    }
    for r in records("special") {
        let x = r.f("x");
        // ln Gamma has zeros at 1 and 2: compare absolutely below 1.
        let e = (ln_gamma(x) - r.f("lgamma")).abs() / r.f("lgamma").abs().max(1.0);
        ck.check(&format!("lgamma({x})"), 1.0 + e, 1.0, 1e-13);
        ck.check(&format!("digamma({x})"), digamma(x), r.f("digamma"), 1e-13);
        ck.check(
            &format!("trigamma({x})"),
            trigamma(x),
            r.f("trigamma"),
            1e-13,
        );
    }
    ck.finish("special functions");
}

fn dist_checks(kind: &str, make: impl Fn(&Rec) -> Distribution) {
    let mut ck = Checker::default();
    for r in records(kind) {
        let d = make(&r);
        let x = r.f("x");
        let what = format!("{kind} {} at x={x}", d.params_string());
        ck.check(&format!("{what} pdf"), d.pdf(x), r.f("pdf"), 1e-11);
        ck.check(&format!("{what} cdf"), d.cdf(x), r.f("cdf"), 1e-12);
        ck.check(&format!("{what} sf"), d.sf(x), r.f("sf"), 1e-12);
        let lp = r.f("logpdf");
        if lp.is_finite() {
            let e = (d.ln_pdf(x) - lp).abs() / lp.abs().max(1.0);
            assert!(e < 1e-12, "{what} logpdf: got {}, want {lp}", d.ln_pdf(x));
        }
    }
    for r in records(&format!("{kind}_ppf")) {
        let d = make(&r);
        let p = r.f("p");
        ck.check(&format!("{kind} ppf({p})"), d.ppf(p), r.f("x"), 1e-11);
    }
    for r in records(&format!("{kind}_isf")) {
        let d = make(&r);
        let q = r.f("q");
        ck.check(&format!("{kind} isf({q})"), d.isf(q), r.f("x"), 1e-11);
    }
    for r in records(&format!("{kind}_mean")) {
        let d = make(&r);
        check(&format!("{kind} mean"), d.mean(), r.f("mean"), 1e-12);
    }
    ck.finish(kind);
}

#[test]
fn stats_maxwell_matches_scipy() {
    dist_checks("maxwell", |r| Maxwell::new(r.f("sigma")).unwrap().into());
}

#[test]
fn stats_gamma_matches_scipy() {
    dist_checks("gamma", |r| {
        Gamma::new(r.f("a"), r.f("scale")).unwrap().into()
    });
}

#[test]
fn stats_gengamma_matches_scipy() {
    dist_checks("gengamma", |r| {
        GenGamma::new(r.f("a"), r.f("c"), r.f("scale"))
            .unwrap()
            .into()
    });
}

#[test]
fn stats_maxwell_cutoff_table_of_methods() {
    // Maxwell x_c / sigma at CDF = 1 - 1/N, to 1e-5.
    let table = [
        (5, 2.15444),
        (50, 3.13646),
        (100, 3.36821),
        (1000, 4.03314),
        (1100, 4.05807),
        (2200, 4.23448),
        (10000, 4.59429),
    ];
    let m = Maxwell::new(1.0).unwrap();
    for (n, want) in table {
        let got = super::cutoff::cutoff_for_n(&m, n).unwrap();
        assert!((got - want).abs() <= 1e-5, "N={n}: {got} vs {want}");
    }
    // And at full precision against scipy, up to N = 1e7 (the scale cancels).
    for r in records("maxwell_cutoff") {
        let n = r.f("n") as u64;
        let m = Maxwell::new(0.37).unwrap();
        let got = super::cutoff::cutoff_for_n(&m, n).unwrap() / 0.37;
        check(
            &format!("Maxwell x_c/sigma, N={n}"),
            got,
            r.f("xc_over_sigma"),
            1e-12,
        );
    }
}

#[test]
fn stats_kolmogorov_distribution_matches_scipy() {
    let mut ck = Checker::default();
    for r in records("kstwo") {
        let (n, d) = (r.f("n") as usize, r.f("d"));
        let sf = kolmogorov_sf(n, d);
        let cdf = kolmogorov_cdf(n, d);
        // Tiny tails are compared relative to 1e-250 (scipy itself underflows differently).
        let e1 = rel_err(sf, r.f("sf"), 1e-250);
        let e2 = rel_err(cdf, r.f("cdf"), 1e-250);
        if e1 > 1e-10 {
            ck.fails.push(format!(
                "kstwo.sf(n={n}, d={d}): got {sf:e}, want {:e}",
                r.f("sf")
            ));
        }
        if e2 > 1e-10 {
            ck.fails.push(format!(
                "kstwo.cdf(n={n}, d={d}): got {cdf:e}, want {:e}",
                r.f("cdf")
            ));
        }
        ck.worst = ck.worst.max(e1.min(1.0)).max(e2.min(1.0));
    }
    for r in records("smirnov") {
        let (n, x) = (r.f("n") as usize, r.f("x"));
        ck.check(
            &format!("smirnov({n},{x})"),
            smirnov_sf(n, x),
            r.f("sf"),
            1e-10,
        );
    }
    ck.finish("Kolmogorov distribution");
}

#[test]
fn stats_kstest_matches_scipy() {
    for r in records("kstest") {
        let x = sample(r.s("sample"));
        let d: Distribution = match r.s("dist") {
            "maxwell" => Maxwell::new(r.f("sigma")).unwrap().into(),
            "gamma" => Gamma::new(r.f("a"), r.f("scale")).unwrap().into(),
            "gengamma" => GenGamma::new(r.f("a"), r.f("c"), r.f("scale"))
                .unwrap()
                .into(),
            other => panic!("unknown dist {other}"),
        };
        let res = ks_test(&x, &d).unwrap();
        let what = format!("kstest {} n={} vs {}", r.s("sample"), x.len(), r.s("dist"));
        assert!(
            (res.statistic - r.f("d")).abs() < 1e-14,
            "{what}: D {} vs {}",
            res.statistic,
            r.f("d")
        );
        check(&format!("{what}: p"), res.p_value, r.f("p"), 1e-9);
    }
}

#[test]
fn stats_fits_match_scipy() {
    for r in records("fit_maxwell") {
        let x = sample(r.s("sample"));
        let m = fit_maxwell(&x).unwrap();
        check(
            &format!("maxwell fit {}", r.s("sample")),
            m.sigma(),
            r.f("sigma"),
            1e-13,
        );
        check("maxwell ll", m.log_likelihood(&x), r.f("ll"), 1e-12);
    }
    for r in records("fit_gamma") {
        let x = sample(r.s("sample"));
        let g = fit_gamma(&x).unwrap();
        check(
            &format!("gamma fit {} shape", r.s("sample")),
            g.shape(),
            r.f("a"),
            1e-9,
        );
        check(
            &format!("gamma fit {} scale", r.s("sample")),
            g.scale(),
            r.f("scale"),
            1e-9,
        );
    }
    for r in records("fit_gengamma") {
        let x = sample(r.s("sample"));
        let f = fit_gengamma(&x).unwrap();
        let d = f.dist;
        let n = x.len() as f64;
        let what = format!("gengamma fit {}", r.s("sample"));
        // The reported log-likelihood is the actual one at the returned parameters.
        check(
            &format!("{what} ll consistency"),
            f.log_likelihood,
            d.log_likelihood(&x),
            1e-10,
        );
        assert!(
            f.log_likelihood >= r.f("ll") - 1e-7 * n,
            "{what}: ll {} < reference {}",
            f.log_likelihood,
            r.f("ll")
        );
        // At least as good as scipy's own gengamma.fit (which can stop at a poor local optimum).
        assert!(f.log_likelihood >= r.f("scipy_ll") - 1e-7 * n);
        assert!(!f.at_bound, "{what}: unexpectedly at a bound");
        check(&format!("{what} a"), d.a(), r.f("a"), 2e-3);
        check(&format!("{what} c"), d.c(), r.f("c"), 2e-3);
        check(&format!("{what} scale"), d.scale(), r.f("scale"), 2e-3);
        eprintln!(
            "{what}: a={:.6} c={:.6} scale={:.6} ll={:.9} (ref ll {:.9}, scipy.fit ll {:.9}), {} evaluations",
            d.a(),
            d.c(),
            d.scale(),
            f.log_likelihood,
            r.f("ll"),
            r.f("scipy_ll"),
            f.evaluations
        );
    }
}

#[test]
fn stats_rank_metrics_match_scipy() {
    let r = &records("spearman")[0];
    let (u, e) = (sample(r.s("sample_u")), sample(r.s("sample_e")));
    check("spearman", spearman(&u, &e).unwrap(), r.f("rho"), 1e-12);
    let r = &records("roc_auc")[0];
    let labels: Vec<bool> = e.iter().map(|&v| v > r.f("threshold")).collect();
    check("roc auc", roc_auc(&u, &labels).unwrap(), r.f("auc"), 1e-12);
}

// ---------------------------------------------------------------------------------------------
// Seeded random samples (rand_distr) for the property tests in this module and the others.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution as _;

/// A seeded generator.
pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// n draws of Maxwell(sigma): the norm of three N(0, sigma^2) components.
pub(crate) fn draw_maxwell(rng: &mut ChaCha8Rng, sigma: f64, n: usize) -> Vec<f64> {
    let nd = rand_distr::Normal::new(0.0, sigma).expect("valid normal");
    (0..n)
        .map(|_| {
            let (a, b, c): (f64, f64, f64) = (nd.sample(rng), nd.sample(rng), nd.sample(rng));
            (a * a + b * b + c * c).sqrt()
        })
        .collect()
}

/// n draws of Gamma(shape, scale).
pub(crate) fn draw_gamma(rng: &mut ChaCha8Rng, shape: f64, scale: f64, n: usize) -> Vec<f64> {
    let g = rand_distr::Gamma::new(shape, scale).expect("valid gamma");
    (0..n).map(|_| g.sample(rng)).collect()
}

/// n draws of gengamma(a, c, scale): scale * Z^(1/c), Z ~ Gamma(a, 1).
pub(crate) fn draw_gengamma(
    rng: &mut ChaCha8Rng,
    a: f64,
    c: f64,
    scale: f64,
    n: usize,
) -> Vec<f64> {
    draw_gamma(rng, a, 1.0, n)
        .into_iter()
        .map(|z| scale * z.powf(1.0 / c))
        .collect()
}

/// n draws of a generalized Pareto distribution GPD(xi, sigma) by inversion.
pub(crate) fn draw_gpd(rng: &mut ChaCha8Rng, xi: f64, sigma: f64, n: usize) -> Vec<f64> {
    let g = super::gpd::Gpd::new(xi, sigma).expect("valid GPD");
    let u = rand_distr::Open01;
    (0..n)
        .map(|_| {
            let q: f64 = u.sample(rng);
            super::dist::ContinuousDistribution::isf(&g, q)
        })
        .collect()
}

/// n draws of a log-normal with log-mean mu and log-sd s.
pub(crate) fn draw_lognormal(rng: &mut ChaCha8Rng, mu: f64, s: f64, n: usize) -> Vec<f64> {
    let d = rand_distr::LogNormal::new(mu, s).expect("valid lognormal");
    (0..n).map(|_| d.sample(rng)).collect()
}

#[test]
fn stats_fits_recover_known_parameters_on_large_samples() {
    let mut r = rng(7);
    let n = 20_000;
    let x = draw_maxwell(&mut r, 0.2, n);
    let m = fit_maxwell(&x).unwrap();
    // Standard error of sigma-hat is sigma / sqrt(6 n) ~ 0.0014 sigma; allow 4 standard errors.
    assert!(
        (m.sigma() / 0.2 - 1.0).abs() < 0.006,
        "maxwell sigma {}",
        m.sigma()
    );

    let x = draw_gamma(&mut r, 2.5, 0.4, n);
    let g = fit_gamma(&x).unwrap();
    assert!(
        (g.shape() / 2.5 - 1.0).abs() < 0.04,
        "gamma shape {}",
        g.shape()
    );
    assert!(
        (g.scale() / 0.4 - 1.0).abs() < 0.04,
        "gamma scale {}",
        g.scale()
    );

    for (a, c, s) in [
        (1.7, 0.8, 1.3),
        (2.0, -1.5, 0.5),
        (0.7, 4.0, 0.05),
        (1.5, 2.0, 0.3),
    ] {
        let x = draw_gengamma(&mut r, a, c, s, n);
        let f = fit_gengamma(&x).unwrap();
        let d = f.dist;
        let truth = GenGamma::new(a, c, s).unwrap();
        // a and c trade off along a ridge, so check them loosely and the fitted
        // distribution itself tightly (cdf at the true quantiles, incl. the 1 - 1e-4 tail).
        assert!(
            (d.a() / a - 1.0).abs() < 0.2,
            "gengamma({a},{c},{s}): a = {}",
            d.a()
        );
        assert!(
            (d.c() / c - 1.0).abs() < 0.15,
            "gengamma({a},{c},{s}): c = {}",
            d.c()
        );
        assert!(!f.at_bound);
        for p in [0.01, 0.25, 0.5, 0.75, 0.99, 0.9999] {
            let xq = truth.ppf(p);
            assert!(
                (d.cdf(xq) - p).abs() < 0.01 * p.min(1.0 - p).max(0.0) + 0.003,
                "gengamma({a},{c},{s}): cdf at true {p}-quantile is {}",
                d.cdf(xq)
            );
        }
        // The MLE beats the truth on its own sample.
        assert!(f.log_likelihood >= truth.log_likelihood(&x) - 1e-9);
    }
}

#[test]
fn stats_gengamma_fit_is_robust() {
    let mut r = rng(11);
    let mut cases: Vec<(&str, Vec<f64>)> = vec![
        // ln x at exact normal quantiles: symmetric with normal kurtosis, so the likelihood
        // increases all the way to the log-normal limit c -> 0.
        (
            "log-normal quantiles (flat toward c -> 0)",
            (1..=2000)
                .map(|i| {
                    let p = (i as f64 - 0.5) / 2000.0;
                    let z =
                        std::f64::consts::SQRT_2 * statrs::function::erf::erf_inv(2.0 * p - 1.0);
                    (0.5 * z).exp()
                })
                .collect(),
        ),
        ("lognormal draws", draw_lognormal(&mut r, 0.0, 0.5, 3000)),
        ("exponential", draw_gamma(&mut r, 1.0, 3.0, 500)),
        ("uniform-ish", (1..=400).map(|i| i as f64 / 400.0).collect()),
        ("two values", vec![1.0, 2.0]),
        ("three values", vec![0.1, 0.2, 10.0]),
        (
            "huge range",
            (0..200)
                .map(|i| 10f64.powf(-10.0 + 0.1 * i as f64))
                .collect(),
        ),
        ("tiny scale", draw_maxwell(&mut r, 1e-9, 300)),
        ("huge scale", draw_maxwell(&mut r, 1e9, 300)),
        ("heavy tail", draw_gengamma(&mut r, 0.5, -0.7, 1.0, 1000)),
        (
            "near-constant",
            (0..100).map(|i| 1.0 + 1e-9 * i as f64).collect(),
        ),
    ];
    cases.push(("bimodal", {
        let mut v = draw_gamma(&mut r, 30.0, 0.01, 500);
        v.extend(draw_gamma(&mut r, 30.0, 0.1, 500));
        v
    }));
    for (name, x) in &cases {
        let f = fit_gengamma(x).unwrap_or_else(|e| panic!("{name}: {e}"));
        let d = f.dist;
        assert!(
            d.a().is_finite() && d.c().is_finite() && d.scale().is_finite(),
            "{name}: {d:?}"
        );
        assert!(
            f.log_likelihood.is_finite(),
            "{name}: ll {}",
            f.log_likelihood
        );
        // The 1 - 1e-7 quantile exists; it may overflow only for a boundary fit (e.g. three
        // points fitted with |c| at its limit).
        let xq = d.isf(1e-7);
        assert!(
            xq > 0.0 && (xq.is_finite() || f.at_bound),
            "{name}: isf {xq}, {d:?}"
        );
        // Never worse than the Gamma (c = 1) or the Maxwell (a = 3/2, c = 2), both special cases.
        if let Ok(g) = fit_gamma(x) {
            assert!(
                f.log_likelihood >= g.log_likelihood(x) - 1e-6 * x.len() as f64,
                "{name}"
            );
        }
        let m = fit_maxwell(x).unwrap();
        assert!(
            f.log_likelihood >= m.log_likelihood(x) - 1e-6 * x.len() as f64,
            "{name}"
        );
    }
    // The log-normal-quantile sample has no interior maximum: the fit must say so.
    let f = fit_gengamma(&cases[0].1).unwrap();
    assert!(f.at_bound, "{:?}", f.dist);
    // Scale equivariance: fitting k x gives the same a, c and k times the scale.
    let x = &cases[2].1;
    let f1 = fit_gengamma(x).unwrap().dist;
    let kx: Vec<f64> = x.iter().map(|v| v * 1e6).collect();
    let f2 = fit_gengamma(&kx).unwrap().dist;
    assert!((f1.a() / f2.a() - 1.0).abs() < 1e-6 && (f1.c() / f2.c() - 1.0).abs() < 1e-6);
    assert!((f2.scale() / (1e6 * f1.scale()) - 1.0).abs() < 1e-6);
}

#[test]
fn stats_fits_reject_bad_samples() {
    use super::StatsError;
    assert!(matches!(
        fit_maxwell(&[1.0]),
        Err(StatsError::TooFewSamples { .. })
    ));
    assert!(matches!(
        fit_gamma(&[1.0, 0.0, 2.0]),
        Err(StatsError::BadValue { index: 1, .. })
    ));
    assert!(matches!(
        fit_gengamma(&[1.0, f64::NAN]),
        Err(StatsError::BadValue { index: 1, .. })
    ));
    assert!(matches!(
        fit_gamma(&[2.0; 10]),
        Err(StatsError::Degenerate { .. })
    ));
    assert!(matches!(
        fit_gengamma(&[2.0; 10]),
        Err(StatsError::Degenerate { .. })
    ));
    // Maxwell is defined for equal values.
    assert!((fit_maxwell(&[2.0; 10]).unwrap().sigma() - 2.0 / 3f64.sqrt()).abs() < 1e-15);
}

#[test]
fn stats_ks_p_values_are_uniform_under_the_null() {
    let mut r = rng(3);
    let d = Gamma::new(2.0, 1.0).unwrap();
    let reps = 400;
    let mut below = 0;
    for _ in 0..reps {
        let x = draw_gamma(&mut r, 2.0, 1.0, 50);
        if ks_test(&x, &d).unwrap().p_value < 0.1 {
            below += 1;
        }
    }
    // Binomial(400, 0.1): mean 40, sd 6; allow 4 sd.
    assert!(
        (16..=64).contains(&below),
        "{below} of {reps} p-values below 0.1"
    );
}

#[test]
fn stats_kolmogorov_sf_is_monotone_across_branches() {
    for n in [3usize, 10, 140, 141, 1000, 100_000, 100_001] {
        let mut prev = 1.0;
        // Small n: the whole range; large n: up to n d^2 = 64 (sf ~ 1e-55), which crosses the
        // Durbin / Pelz-Good / Smirnov switches at n d^1.5 = 1.4 and n d^2 = 2.2, 18.
        let (steps, d_max) = if n <= 1000 {
            (2000, 1.0)
        } else {
            (150, 8.0 / (n as f64).sqrt())
        };
        for i in 1..steps {
            let d = d_max * i as f64 / steps as f64;
            let sf = kolmogorov_sf(n, d);
            assert!((0.0..=1.0).contains(&sf), "n={n} d={d}: {sf}");
            // Branch switches may leave rounding-level steps, never a real increase.
            assert!(
                sf <= prev + 1e-9,
                "n={n}: sf rises from {prev} to {sf} at d={d}"
            );
            prev = sf;
        }
    }
}

#[test]
fn sig_digits_keeps_small_and_large_parameters() {
    use super::sig_digits;
    // An error scale's slope of 2.6e-4 printed with 4 digits, not as 0.0003.
    assert_eq!(sig_digits(2.6328e-4, 4), "2.633e-4");
    assert_eq!(sig_digits(0.098348, 4), "0.09835");
    assert_eq!(sig_digits(845.110381, 6), "845.110");
    assert_eq!(sig_digits(1.2e-5, 6), "1.20000e-5");
    assert_eq!(sig_digits(-0.5, 3), "-0.500");
    assert_eq!(sig_digits(0.0, 4), "0");
    assert_eq!(sig_digits(f64::NAN, 4), "NaN");
}

/// The families are scale families: a sample and its fit scaled by c give the same KS statistic
/// and a log-likelihood lower by n ln c, down to scales where x^2 over- or underflows (Maxwell's
/// functions squared x before dividing by sigma: at 1e250 its log-likelihood was NaN and its KS
/// D 0, so `aceuq cutoff` chose it for data it does not fit).
#[test]
fn families_are_scale_invariant_at_extreme_scales() {
    let x = sample("maxwell_200");
    for d in [
        Distribution::from(fit_maxwell(&x).unwrap()),
        Distribution::from(fit_gamma(&x).unwrap()),
    ] {
        let base = ks_test(&x, &d).unwrap().statistic;
        let ll: f64 = x.iter().map(|&v| d.ln_pdf(v)).sum();
        for c in [1e250, 1e-250, 1e154, 1e-160] {
            let xs: Vec<f64> = x.iter().map(|v| v * c).collect();
            let ds = match d {
                Distribution::Maxwell(m) => {
                    Distribution::from(Maxwell::new(m.sigma() * c).unwrap())
                }
                Distribution::Gamma(g) => {
                    Distribution::from(Gamma::new(g.shape(), g.scale() * c).unwrap())
                }
                _ => unreachable!(),
            };
            let ks = ks_test(&xs, &ds).unwrap().statistic;
            assert!(
                (ks - base).abs() < 1e-12,
                "{} at scale {c}: D {ks} vs {base}",
                ds.family()
            );
            let lls: f64 = xs.iter().map(|&v| ds.ln_pdf(v)).sum();
            let want = ll - x.len() as f64 * c.ln();
            assert!(
                (lls - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{} at scale {c}: log-lik {lls} vs {want}",
                ds.family()
            );
        }
    }
}
