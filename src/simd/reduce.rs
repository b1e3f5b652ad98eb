//! Reductions over slices with four independent partial sums: a single running sum is one chain
//! of dependent additions, bound by its latency; four chains pipeline and vectorize. Results
//! differ from the sequential sums by rounding only, and are the same on every CPU.

/// Dot product with four independent partial sums. A single running sum is one chain of
/// dependent additions, and the per-atom feature projections (hundreds of terms, several rows)
/// were bound by its latency; four chains pipeline and vectorize. The result differs from the
/// sequential sum by rounding only.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for c in 0..4 {
            s[c] += x[c] * y[c];
        }
    }
    let mut r = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        r += x * y;
    }
    r
}

/// Squared Euclidean distance. Four independent partial sums: with a single running sum the
/// k-d tree queries of the distance estimator were bound by the latency of the addition chain.
#[inline(always)]
pub fn dist2(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for c in 0..4 {
            let d = x[c] - y[c];
            s[c] += d * d;
        }
    }
    let mut r = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        r += (x - y) * (x - y);
    }
    r
}
