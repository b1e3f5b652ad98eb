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
use super::special::{
    digamma, gamma_p, gamma_p_inv, gamma_q, gamma_q_inv, ln_gamma, trigamma,
};

const VECTORS: &str = include_str!("../../tests/data/stats/vectors.txt");

/// One record of vectors.txt: kind plus key=value pairs (numbers parsed when possible).
struct Rec {
    kind: String,
    num: HashMap<String, f64>,
    text: HashMap<String, String>,
}

impl Rec {
    fn f(&self, k: &str) -> f64 {
        *self.num.get(k).unwrap_or_else(|| panic!("record {} lacks {k}", self.kind))
    }
    fn s(&self, k: &str) -> &str {
        self.text.get(k).unwrap_or_else(|| panic!("record {} lacks {k}", self.kind))
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
                text.entry(key.to_string()).or_insert_with(|| val.to_string());
            }
            Some(Rec { kind: k.to_string(), num, text })
        })
        .collect();
    assert!(!v.is_empty(), "no records of kind {kind} in vectors.txt");
    v
}

pub(crate) fn sample(name: &str) -> Vec<f64> {
    let path = format!("{}/tests/data/stats/samples/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines().map(|l| l.trim().parse::<f64>().expect("number")).collect()
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
            self.fails.push(format!("{what}: got {got:e}, want {want:e}, rel err {err:e} > {tol:e}"));
        }
    }
    #[track_caller]
    fn finish(self, name: &str) {
        eprintln!("{name}: worst relative error of passing checks {:e}", self.worst);
        assert!(self.fails.is_empty(), "{name}: {} failures:\n{}", self.fails.len(), self.fails.join("\n"));
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
        ck.check(&format!("Qinv({a},{q})"), gamma_q_inv(a, q), r.f("x"), 1e-11);
    }
    for r in records("gammaincinv") {
        let (a, p) = (r.f("a"), r.f("p"));
        ck.check(&format!("Pinv({a},{p})"), gamma_p_inv(a, p), r.f("x"), 1e-11);
    }
    for r in records("special") {
        let x = r.f("x");
        // ln Gamma has zeros at 1 and 2: compare absolutely below 1.
        let e = (ln_gamma(x) - r.f("lgamma")).abs() / r.f("lgamma").abs().max(1.0);
        ck.check(&format!("lgamma({x})"), 1.0 + e, 1.0, 1e-13);
        ck.check(&format!("digamma({x})"), digamma(x), r.f("digamma"), 1e-13);
        ck.check(&format!("trigamma({x})"), trigamma(x), r.f("trigamma"), 1e-13);
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
    dist_checks("gamma", |r| Gamma::new(r.f("a"), r.f("scale")).unwrap().into());
}

#[test]
fn stats_gengamma_matches_scipy() {
    dist_checks("gengamma", |r| GenGamma::new(r.f("a"), r.f("c"), r.f("scale")).unwrap().into());
}

#[test]
fn stats_maxwell_cutoff_table_of_methods() {
    // METHODS.md §5, x_c / sigma at CDF = 1 - 1/N, to 1e-5.
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
        check(&format!("Maxwell x_c/sigma, N={n}"), got, r.f("xc_over_sigma"), 1e-12);
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
            ck.fails.push(format!("kstwo.sf(n={n}, d={d}): got {sf:e}, want {:e}", r.f("sf")));
        }
        if e2 > 1e-10 {
            ck.fails.push(format!("kstwo.cdf(n={n}, d={d}): got {cdf:e}, want {:e}", r.f("cdf")));
        }
        ck.worst = ck.worst.max(e1.min(1.0)).max(e2.min(1.0));
    }
    for r in records("smirnov") {
        let (n, x) = (r.f("n") as usize, r.f("x"));
        ck.check(&format!("smirnov({n},{x})"), smirnov_sf(n, x), r.f("sf"), 1e-10);
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
            "gengamma" => GenGamma::new(r.f("a"), r.f("c"), r.f("scale")).unwrap().into(),
            other => panic!("unknown dist {other}"),
        };
        let res = ks_test(&x, &d).unwrap();
        let what = format!("kstest {} n={} vs {}", r.s("sample"), x.len(), r.s("dist"));
        assert!((res.statistic - r.f("d")).abs() < 1e-14, "{what}: D {} vs {}", res.statistic, r.f("d"));
        check(&format!("{what}: p"), res.p_value, r.f("p"), 1e-9);
    }
}

#[test]
fn stats_fits_match_scipy() {
    for r in records("fit_maxwell") {
        let x = sample(r.s("sample"));
        let m = fit_maxwell(&x).unwrap();
        check(&format!("maxwell fit {}", r.s("sample")), m.sigma(), r.f("sigma"), 1e-13);
        check("maxwell ll", m.log_likelihood(&x), r.f("ll"), 1e-12);
    }
    for r in records("fit_gamma") {
        let x = sample(r.s("sample"));
        let g = fit_gamma(&x).unwrap();
        check(&format!("gamma fit {} shape", r.s("sample")), g.shape(), r.f("a"), 1e-9);
        check(&format!("gamma fit {} scale", r.s("sample")), g.scale(), r.f("scale"), 1e-9);
    }
    for r in records("fit_gengamma") {
        let x = sample(r.s("sample"));
        let f = fit_gengamma(&x).unwrap();
        let d = f.dist;
        let n = x.len() as f64;
        let what = format!("gengamma fit {}", r.s("sample"));
        // The reported log-likelihood is the actual one at the returned parameters.
        check(&format!("{what} ll consistency"), f.log_likelihood, d.log_likelihood(&x), 1e-10);
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
