#!/usr/bin/env python3
"""Independent reference values for the Rust statistics layer (src/stats/).

Run once in a scratch venv with scipy and numpy:

    python3 -m venv /tmp/statsvenv && /tmp/statsvenv/bin/pip install scipy numpy
    /tmp/statsvenv/bin/python tests/data/stats/make_vectors.py

It writes, next to this script,
  vectors.txt          one record per line: `<kind> key=value key=value ...`
                       (floats written with repr(), i.e. round-trip precision)
  samples/<name>.txt   fixed samples (one value per line, repr precision), drawn with a seed

Both outputs are committed; the Rust unit tests read them with include_str!.
The scipy and numpy versions used are written in the header of vectors.txt.
"""

import os
import sys

import numpy as np
import scipy
from scipy import optimize, special, stats
from scipy.stats import _ksstats

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "samples")
os.makedirs(SAMPLES, exist_ok=True)

lines = []


def rec(kind, **kw):
    parts = [kind]
    for k, v in kw.items():
        if isinstance(v, (float, np.floating)):
            parts.append(f"{k}={float(v)!r}")
        else:
            parts.append(f"{k}={v}")
    lines.append(" ".join(parts))


def write_sample(name, x):
    with open(os.path.join(SAMPLES, name + ".txt"), "w") as f:
        for v in x:
            f.write(f"{float(v)!r}\n")
    # Re-read so the reference values below use exactly what the Rust side reads.
    return np.array([float(v) for v in open(os.path.join(SAMPLES, name + ".txt"))])


# ---------------------------------------------------------------------------
# Special functions.
for a in [1e-3, 0.1, 0.5, 1.0, 1.5, 3.7, 10.0, 100.0, 1000.0, 1e4]:
    for rel in [1e-3, 0.1, 0.5, 0.9, 1.0, 1.1, 2.0, 5.0, 20.0]:
        x = a * rel if a >= 1 else rel * 3.0
        rec("gammainc", a=a, x=x, p=special.gammainc(a, x), q=special.gammaincc(a, x))
    for q in [0.5, 1e-3, 1e-7, 1e-10, 1e-15]:
        rec("gammainccinv", a=a, q=q, x=special.gammainccinv(a, q))
    for p in [1e-10, 1e-4, 0.3, 0.9]:
        rec("gammaincinv", a=a, p=p, x=special.gammaincinv(a, p))
for x in [1e-3, 0.2, 0.5, 1.0, 1.5, 2.5, 7.3, 31.0, 1e3, 1e5]:
    rec("special", x=x, lgamma=special.gammaln(x), digamma=special.digamma(x),
        trigamma=special.polygamma(1, x))

# ---------------------------------------------------------------------------
# Distributions: pdf, cdf, sf at points (multiples of the scale, deep tails included),
# ppf and isf at probabilities down to 1e-15.
xs_rel = [1e-3, 0.05, 0.5, 1.0, 2.0, 4.0, 7.0, 10.0]
ps = [1e-6, 0.01, 0.5, 0.99]
qs = [0.2, 1e-3, 1e-7, 1e-10, 1e-15]


def dist_records(name, frozen, unit, **params):
    for r in xs_rel:
        x = r * unit
        rec(name, **params, x=x, pdf=frozen.pdf(x), logpdf=frozen.logpdf(x),
            cdf=frozen.cdf(x), sf=frozen.sf(x))
    for p in ps:
        rec(name + "_ppf", **params, p=p, x=frozen.ppf(p))
    for q in qs:
        rec(name + "_isf", **params, q=q, x=frozen.isf(q))
    rec(name + "_mean", **params, mean=frozen.mean())


for sigma in [0.05, 1.0, 2.7]:
    dist_records("maxwell", stats.maxwell(scale=sigma), sigma, sigma=sigma)
for a in [0.3, 1.0, 2.5, 17.0, 150.0]:
    dist_records("gamma", stats.gamma(a, scale=0.7), 0.7 * max(1.0, a), a=a, scale=0.7)
for a, c in [(1.5, 2.0), (0.5, 0.6), (3.0, 1.7), (2.0, -1.5), (0.8, 5.0), (40.0, 0.3)]:
    dist_records("gengamma", stats.gengamma(a, c, scale=1.3), 1.3, a=a, c=c, scale=1.3)

# Maxwell x_c / sigma at 1 - 1/N (full precision).
for n in [5, 50, 100, 1000, 1100, 2200, 10000, 10**7]:
    rec("maxwell_cutoff", n=n, xc_over_sigma=stats.maxwell.isf(1.0 / n))

# ---------------------------------------------------------------------------
# Maximum-likelihood fits of fixed samples.
rng = np.random.default_rng(20240611)
fit_samples = {
    "maxwell_200": stats.maxwell.rvs(scale=0.3, size=200, random_state=rng),
    "gamma_500": stats.gamma.rvs(2.5, scale=0.4, size=500, random_state=rng),
    "gamma_small_a_300": stats.gamma.rvs(0.4, scale=2.0, size=300, random_state=rng),
    "gengamma_1000": stats.gengamma.rvs(1.7, 0.8, scale=1.3, size=1000, random_state=rng),
    "gengamma_neg_500": stats.gengamma.rvs(2.0, -1.5, scale=1.0, size=500, random_state=rng),
    "gengamma_peaked_400": stats.gengamma.rvs(0.7, 4.0, scale=0.05, size=400, random_state=rng),
}


def gg_nll(theta, x):
    a, c, s = theta
    if a <= 0 or s <= 0 or c == 0:
        return np.inf
    v = -np.sum(stats.gengamma.logpdf(x, a, c, scale=s))
    return v if np.isfinite(v) else np.inf


def careful_gengamma_fit(x):
    """Best of scipy's own fit and multi-start Nelder-Mead on the full 3-parameter NLL."""
    cands = []
    a0, c0, _, s0 = stats.gengamma.fit(x, floc=0)
    cands.append((a0, c0, s0))
    ga, _, gs = stats.gamma.fit(x, floc=0)
    for a, c in [(ga, 1.0), (1.5, 2.0), (1.0, 1.0), (1.0, -1.0), (3.0, 0.5), (0.5, 3.0),
                 (2.0, -2.0)]:
        # Start from the scale that makes the mean right, roughly.
        s = np.exp(np.mean(np.log(x)))
        cands.append((a, c, s))
    best = None
    for start in cands:
        r = optimize.minimize(gg_nll, np.array(start), args=(x,), method="Nelder-Mead",
                              options=dict(xatol=1e-12, fatol=1e-13, maxiter=40000,
                                           maxfev=80000))
        r = optimize.minimize(gg_nll, r.x, args=(x,), method="Nelder-Mead",
                              options=dict(xatol=1e-13, fatol=1e-14, maxiter=40000,
                                           maxfev=80000))
        if best is None or r.fun < best.fun:
            best = r
    return best.x, -best.fun, (a0, c0, s0), -gg_nll((a0, c0, s0), x)


for name, x in fit_samples.items():
    x = write_sample(name, x)
    n = len(x)
    sigma = np.sqrt(np.sum(x * x) / (3 * n))
    rec("fit_maxwell", sample=name, sigma=sigma,
        ll=np.sum(stats.maxwell.logpdf(x, scale=sigma)),
        scipy_sigma=stats.maxwell.fit(x, floc=0)[1])
    a, _, s = stats.gamma.fit(x, floc=0)
    rec("fit_gamma", sample=name, a=a, scale=s, ll=np.sum(stats.gamma.logpdf(x, a, scale=s)))
    (ga, gc, gs), ll, (sa, sc, ss), sll = careful_gengamma_fit(x)
    rec("fit_gengamma", sample=name, a=ga, c=gc, scale=gs, ll=ll,
        scipy_a=sa, scipy_c=sc, scipy_scale=ss, scipy_ll=sll)

# ---------------------------------------------------------------------------
# Kolmogorov-Smirnov: kstest (default method='auto') on samples that do and do not fit.
for n in [10, 100, 1000, 5000]:
    x = write_sample(f"ks_gamma_{n}", stats.gamma.rvs(2.0, scale=1.0, size=n, random_state=rng))
    # True distribution: should fit.
    r = stats.kstest(x, "gamma", args=(2.0, 0, 1.0))
    rec("kstest", sample=f"ks_gamma_{n}", dist="gamma", a=2.0, scale=1.0,
        d=r.statistic, p=r.pvalue)
    # Maxwell with the MLE sigma: a wrong family, rejected for large n.
    sigma = np.sqrt(np.sum(x * x) / (3 * n))
    r = stats.kstest(x, "maxwell", args=(0, sigma))
    rec("kstest", sample=f"ks_gamma_{n}", dist="maxwell", sigma=sigma, d=r.statistic, p=r.pvalue)
    # Generalized gamma with a fixed parameter set (close but not equal).
    r = stats.kstest(x, "gengamma", args=(1.5, 1.2, 0, 1.4))
    rec("kstest", sample=f"ks_gamma_{n}", dist="gengamma", a=1.5, c=1.2, scale=1.4,
        d=r.statistic, p=r.pvalue)

# The Kolmogorov distribution itself (kstwo.sf), across the branches of Simard & L'Ecuyer.
for n in [1, 2, 5, 10, 37, 100, 140, 141, 500, 1000, 5000, 20000, 100000, 200000, 10**6]:
    ds = sorted(set([0.4 / n, 0.7 / n, 1.0 / n, 1.5 / n, 0.5 / np.sqrt(n), 0.8 / np.sqrt(n),
                     1.0 / np.sqrt(n), 1.3 / np.sqrt(n), 1.6 / np.sqrt(n), 2.5 / np.sqrt(n),
                     4.0 / np.sqrt(n), 0.3, 0.55, 0.9, 1.0 - 0.5 / n]))
    for d in ds:
        if 0 < d <= 1:
            rec("kstwo", n=n, d=d, sf=stats.kstwo.sf(d, n), cdf=stats.kstwo.cdf(d, n))
for n, x in [(5, 0.1), (5, 0.6), (50, 0.05), (50, 0.3), (1000, 0.01), (1000, 0.06),
             (10**6, 0.001)]:
    rec("smirnov", n=n, x=x, sf=special.smirnov(n, x))

# ---------------------------------------------------------------------------
# Metrics: Spearman rho (average ranks) and ROC-AUC on a small sample with ties.
u = write_sample("metric_u", rng.gamma(2.0, 1.0, size=300).round(1))
e = write_sample("metric_e", (u * rng.gamma(3.0, 1.0 / 3.0, size=300)).round(1))
rec("spearman", sample_u="metric_u", sample_e="metric_e", rho=stats.spearmanr(u, e).statistic)
labels = e > 2.0
from scipy.stats import mannwhitneyu  # noqa: E402

mw = mannwhitneyu(u[labels], u[~labels]).statistic
rec("roc_auc", sample_u="metric_u", sample_e="metric_e", threshold=2.0,
    auc=mw / (labels.sum() * (~labels).sum()))

with open(os.path.join(HERE, "vectors.txt"), "w") as f:
    f.write(f"# generated by make_vectors.py with python {sys.version.split()[0]}, "
            f"scipy {scipy.__version__}, numpy {np.__version__}\n")
    for line in lines:
        f.write(line + "\n")
print(f"wrote {len(lines)} records")
