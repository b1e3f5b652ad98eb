//! The three continuous distributions of Annevelink & Viswanathan, all with location 0 and support x > 0:
//! Maxwell (scale sigma), Gamma (shape, scale) and scipy's generalized Gamma `gengamma`
//! (a, c, scale). Parameters match scipy.stats exactly, so fitted values can be compared.
//!
//! Every function is total: x <= 0 lies outside the support (pdf 0, cdf 0, sf 1), and
//! probabilities outside [0, 1] give NaN from the quantile functions. Constructors validate
//! the parameters, so a constructed distribution never yields NaN for valid input.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::special::{gamma_p, gamma_p_inv, gamma_q, gamma_q_inv, ln_gamma};

/// Common interface of the fitted distributions.
pub trait ContinuousDistribution {
    /// Probability density at x.
    fn pdf(&self, x: f64) -> f64 {
        self.ln_pdf(x).exp()
    }
    /// Natural log of the density at x (-inf outside the support).
    fn ln_pdf(&self, x: f64) -> f64;
    /// Cumulative distribution function P(X <= x).
    fn cdf(&self, x: f64) -> f64;
    /// Survival function P(X > x), computed directly (accurate in the far upper tail).
    fn sf(&self, x: f64) -> f64;
    /// Quantile function (percent point function): the x with cdf(x) = p.
    fn ppf(&self, p: f64) -> f64;
    /// Inverse survival function: the x with sf(x) = q. Use this for the 1 - 1/N cutoffs
    /// (`isf(1/N)`), where `ppf(1 - 1/N)` would lose digits to the rounding of 1 - 1/N.
    fn isf(&self, q: f64) -> f64;
    /// Mean (may be +inf for a heavy-tailed generalized Gamma with c < 0).
    fn mean(&self) -> f64;
    /// Sum of ln pdf over a sample.
    fn log_likelihood(&self, xs: &[f64]) -> f64 {
        xs.iter().map(|&x| self.ln_pdf(x)).sum()
    }
}

fn check_param(name: &'static str, value: f64, ok: bool) -> Result<(), StatsError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter { name, value })
    }
}

/// Maxwell distribution with scale sigma (location 0): the distribution of the norm of a
/// 3-vector of independent N(0, sigma^2) components, e.g. a force-error magnitude (eV/Å).
///
/// pdf sqrt(2/pi) x^2 exp(-x^2 / 2 sigma^2) / sigma^3, cdf P(3/2, x^2 / 2 sigma^2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MaxwellRaw")]
pub struct Maxwell {
    sigma: f64,
}

#[derive(Deserialize)]
struct MaxwellRaw {
    sigma: f64,
}

impl TryFrom<MaxwellRaw> for Maxwell {
    type Error = StatsError;
    fn try_from(r: MaxwellRaw) -> Result<Self, StatsError> {
        Maxwell::new(r.sigma)
    }
}

impl Maxwell {
    /// A Maxwell distribution with scale `sigma` > 0.
    pub fn new(sigma: f64) -> Result<Self, StatsError> {
        check_param("sigma", sigma, sigma > 0.0)?;
        Ok(Self { sigma })
    }
    /// The scale sigma (the standard deviation of each Cartesian component).
    pub fn sigma(&self) -> f64 {
        self.sigma
    }
}

impl ContinuousDistribution for Maxwell {
    fn ln_pdf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return f64::NEG_INFINITY;
        }
        // In z = x / sigma (x^2 and sigma^2 overflow or underflow at scales near 1e±154,
        // where z is still O(1)): ln pdf = ln sqrt(2/pi) + 2 ln z - z^2/2 - ln sigma.
        let s = self.sigma;
        let z = x / s;
        0.5 * (2.0 / std::f64::consts::PI).ln() + 2.0 * z.ln() - 0.5 * z * z - s.ln()
    }
    fn cdf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return 0.0;
        }
        let z = x / self.sigma;
        gamma_p(1.5, 0.5 * z * z)
    }
    fn sf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return 1.0;
        }
        let z = x / self.sigma;
        gamma_q(1.5, 0.5 * z * z)
    }
    fn ppf(&self, p: f64) -> f64 {
        self.sigma * (2.0 * gamma_p_inv(1.5, p)).sqrt()
    }
    fn isf(&self, q: f64) -> f64 {
        self.sigma * (2.0 * gamma_q_inv(1.5, q)).sqrt()
    }
    fn mean(&self) -> f64 {
        2.0 * self.sigma * (2.0 / std::f64::consts::PI).sqrt()
    }
}

/// Gamma distribution with shape k and scale theta (location 0), scipy's `gamma(a=k,
/// scale=theta)`: pdf x^(k-1) exp(-x/theta) / (Gamma(k) theta^k).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GammaRaw")]
pub struct Gamma {
    shape: f64,
    scale: f64,
}

#[derive(Deserialize)]
struct GammaRaw {
    shape: f64,
    scale: f64,
}

impl TryFrom<GammaRaw> for Gamma {
    type Error = StatsError;
    fn try_from(r: GammaRaw) -> Result<Self, StatsError> {
        Gamma::new(r.shape, r.scale)
    }
}

impl Gamma {
    /// A Gamma distribution with `shape` > 0 and `scale` > 0.
    pub fn new(shape: f64, scale: f64) -> Result<Self, StatsError> {
        check_param("shape", shape, shape > 0.0)?;
        check_param("scale", scale, scale > 0.0)?;
        Ok(Self { shape, scale })
    }
    /// The shape k (scipy's `a`).
    pub fn shape(&self) -> f64 {
        self.shape
    }
    /// The scale theta.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

impl ContinuousDistribution for Gamma {
    fn ln_pdf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return f64::NEG_INFINITY;
        }
        let z = x / self.scale;
        (self.shape - 1.0) * z.ln() - z - ln_gamma(self.shape) - self.scale.ln()
    }
    fn cdf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return 0.0;
        }
        gamma_p(self.shape, x / self.scale)
    }
    fn sf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return 1.0;
        }
        gamma_q(self.shape, x / self.scale)
    }
    fn ppf(&self, p: f64) -> f64 {
        self.scale * gamma_p_inv(self.shape, p)
    }
    fn isf(&self, q: f64) -> f64 {
        self.scale * gamma_q_inv(self.shape, q)
    }
    fn mean(&self) -> f64 {
        self.shape * self.scale
    }
}

/// Generalized Gamma distribution in scipy's `gengamma(a, c, scale=s)` parametrization
/// (location 0): with z = x/s, pdf |c| z^(c a - 1) exp(-z^c) / (Gamma(a) s).
///
/// For c > 0, z^c ~ Gamma(a) and cdf = P(a, z^c); for c < 0 the roles of P and Q swap and the
/// upper tail is a power law (z^(c a - 1)). Special cases: c = 1 is Gamma(a, s); a = 3/2,
/// c = 2, s = sqrt(2) sigma is Maxwell(sigma).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GenGammaRaw")]
pub struct GenGamma {
    a: f64,
    c: f64,
    scale: f64,
}

#[derive(Deserialize)]
struct GenGammaRaw {
    a: f64,
    c: f64,
    scale: f64,
}

impl TryFrom<GenGammaRaw> for GenGamma {
    type Error = StatsError;
    fn try_from(r: GenGammaRaw) -> Result<Self, StatsError> {
        GenGamma::new(r.a, r.c, r.scale)
    }
}

impl GenGamma {
    /// A generalized Gamma with a > 0, c != 0 and scale > 0.
    pub fn new(a: f64, c: f64, scale: f64) -> Result<Self, StatsError> {
        check_param("a", a, a > 0.0)?;
        check_param("c", c, c != 0.0)?;
        check_param("scale", scale, scale > 0.0)?;
        Ok(Self { a, c, scale })
    }
    /// Shape a.
    pub fn a(&self) -> f64 {
        self.a
    }
    /// Power c (may be negative).
    pub fn c(&self) -> f64 {
        self.c
    }
    /// Scale s.
    pub fn scale(&self) -> f64 {
        self.scale
    }
    /// z^c for z = x / scale, via logs so that large |c| does not overflow early.
    fn zc(&self, x: f64) -> f64 {
        (self.c * (x / self.scale).ln()).exp()
    }
}

impl ContinuousDistribution for GenGamma {
    fn ln_pdf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return f64::NEG_INFINITY;
        }
        let lz = (x / self.scale).ln();
        self.c.abs().ln() + (self.c * self.a - 1.0) * lz
            - (self.c * lz).exp()
            - ln_gamma(self.a)
            - self.scale.ln()
    }
    fn cdf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return 0.0;
        }
        let zc = self.zc(x);
        if self.c > 0.0 {
            gamma_p(self.a, zc)
        } else {
            gamma_q(self.a, zc)
        }
    }
    fn sf(&self, x: f64) -> f64 {
        if !(x > 0.0) {
            return 1.0;
        }
        let zc = self.zc(x);
        if self.c > 0.0 {
            gamma_q(self.a, zc)
        } else {
            gamma_p(self.a, zc)
        }
    }
    fn ppf(&self, p: f64) -> f64 {
        let w = if self.c > 0.0 {
            gamma_p_inv(self.a, p)
        } else {
            gamma_q_inv(self.a, p)
        };
        self.scale * (w.ln() / self.c).exp()
    }
    fn isf(&self, q: f64) -> f64 {
        let w = if self.c > 0.0 {
            gamma_q_inv(self.a, q)
        } else {
            gamma_p_inv(self.a, q)
        };
        self.scale * (w.ln() / self.c).exp()
    }
    fn mean(&self) -> f64 {
        // E[X] = s Gamma(a + 1/c) / Gamma(a); infinite when a + 1/c <= 0 (heavy tail, c < 0).
        let b = self.a + 1.0 / self.c;
        if b <= 0.0 {
            return f64::INFINITY;
        }
        self.scale * (ln_gamma(b) - ln_gamma(self.a)).exp()
    }
}

/// Which of the three families a distribution belongs to (the fit order of docs/methods.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Maxwell (1 parameter).
    Maxwell,
    /// Gamma (2 parameters).
    Gamma,
    /// scipy's generalized Gamma (3 parameters).
    #[serde(rename = "gengamma")]
    GenGamma,
}

impl Family {
    /// All families in the order they are tried by the model choice of docs/methods.md §3.
    pub const ALL: [Family; 3] = [Family::Maxwell, Family::Gamma, Family::GenGamma];

    /// Short name as used by scipy.stats ("maxwell", "gamma", "gengamma").
    pub fn name(&self) -> &'static str {
        match self {
            Family::Maxwell => "maxwell",
            Family::Gamma => "gamma",
            Family::GenGamma => "gengamma",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A fitted distribution of any of the three families; serializes as
/// `{ family = "gamma", shape = ..., scale = ... }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Distribution {
    /// Maxwell(sigma).
    Maxwell(Maxwell),
    /// Gamma(shape, scale).
    Gamma(Gamma),
    /// gengamma(a, c, scale).
    #[serde(rename = "gengamma")]
    GenGamma(GenGamma),
}

impl Distribution {
    /// The family of this distribution.
    pub fn family(&self) -> Family {
        match self {
            Distribution::Maxwell(_) => Family::Maxwell,
            Distribution::Gamma(_) => Family::Gamma,
            Distribution::GenGamma(_) => Family::GenGamma,
        }
    }

    /// Parameters as (name, value) pairs, in scipy's order, for tables and logs.
    pub fn params(&self) -> Vec<(&'static str, f64)> {
        match self {
            Distribution::Maxwell(d) => vec![("sigma", d.sigma)],
            Distribution::Gamma(d) => vec![("shape", d.shape), ("scale", d.scale)],
            Distribution::GenGamma(d) => vec![("a", d.a), ("c", d.c), ("scale", d.scale)],
        }
    }

    /// Number of free parameters (location is fixed at 0).
    pub fn n_params(&self) -> usize {
        self.params().len()
    }

    /// Parameters formatted as "a=1.23457 c=0.456789 scale=7.89012" (6 significant digits).
    pub fn params_string(&self) -> String {
        self.params()
            .iter()
            .map(|(k, v)| format!("{k}={}", super::sig_digits(*v, 6)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn inner(&self) -> &dyn ContinuousDistribution {
        match self {
            Distribution::Maxwell(d) => d,
            Distribution::Gamma(d) => d,
            Distribution::GenGamma(d) => d,
        }
    }
}

impl ContinuousDistribution for Distribution {
    fn pdf(&self, x: f64) -> f64 {
        self.inner().pdf(x)
    }
    fn ln_pdf(&self, x: f64) -> f64 {
        self.inner().ln_pdf(x)
    }
    fn cdf(&self, x: f64) -> f64 {
        self.inner().cdf(x)
    }
    fn sf(&self, x: f64) -> f64 {
        self.inner().sf(x)
    }
    fn ppf(&self, p: f64) -> f64 {
        self.inner().ppf(p)
    }
    fn isf(&self, q: f64) -> f64 {
        self.inner().isf(q)
    }
    fn mean(&self) -> f64 {
        self.inner().mean()
    }
}

impl From<Maxwell> for Distribution {
    fn from(d: Maxwell) -> Self {
        Distribution::Maxwell(d)
    }
}
impl From<Gamma> for Distribution {
    fn from(d: Gamma) -> Self {
        Distribution::Gamma(d)
    }
}
impl From<GenGamma> for Distribution {
    fn from(d: GenGamma) -> Self {
        Distribution::GenGamma(d)
    }
}
