//! Tests of MaxVol, the streaming active-set builder and the extrapolation grade ([`super`]).

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn randn(n: usize, m: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * m)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect()
}

/// |det| by Gaussian elimination with partial pivoting (independent of faer and of MaxVol).
fn absdet(a: &[f64], m: usize) -> f64 {
    let mut a = a.to_vec();
    let mut det = 1.0;
    for k in 0..m {
        let p = (k..m)
            .max_by(|&x, &y| a[x * m + k].abs().total_cmp(&a[y * m + k].abs()))
            .unwrap();
        if a[p * m + k] == 0.0 {
            return 0.0;
        }
        if p != k {
            for j in 0..m {
                a.swap(p * m + j, k * m + j);
            }
        }
        let piv = a[k * m + k];
        det *= piv.abs();
        for i in k + 1..m {
            let f = a[i * m + k] / piv;
            for j in k..m {
                a[i * m + j] -= f * a[k * m + j];
            }
        }
    }
    det
}

/// max over j of |det(A with row j replaced by x)| / |det A|.
fn det_ratio(a: &[f64], m: usize, x: &[f64]) -> f64 {
    let d0 = absdet(a, m);
    (0..m)
        .map(|j| {
            let mut b = a.to_vec();
            b[j * m..(j + 1) * m].copy_from_slice(x);
            absdet(&b, m) / d0
        })
        .fold(0.0, f64::max)
}

fn ids(n: usize) -> Vec<RowId> {
    (0..n)
        .map(|i| RowId {
            structure: 0,
            atom: i as u32,
        })
        .collect()
}

/// Run the streaming builder to a verified pass; returns the rows and the number of passes.
fn stream(x: &[f64], n: usize, m: usize, batch: usize, chunk: usize) -> (ActiveRows, usize) {
    let mut s = StreamingMaxVol::new(m, batch, Options::default(), "test").unwrap();
    let id = ids(n);
    for pass in 1..=20 {
        s.begin_pass();
        for c0 in (0..n).step_by(chunk) {
            let c1 = (c0 + chunk).min(n);
            s.push(&x[c0 * m..c1 * m], &id[c0..c1]).unwrap();
        }
        let st = s.end_pass().unwrap();
        if st.verified {
            assert!(st.max_gamma <= 1.01, "{st:?}");
            return (s.into_active_rows().unwrap(), pass);
        }
    }
    panic!("streaming MaxVol did not verify in 20 passes");
}

#[test]
fn lu_pivots_follow_partial_pivoting() {
    // Column 0's largest entry is row 3, then column 1's largest remaining is row 1.
    let x = [0.1, 0.0, 0.2, 5.0, 0.3, 0.1, 10.0, 0.0];
    let lu = lu_pivots(&x, 4, 2, 1e-10);
    assert_eq!(lu.rows, vec![3, 1]);
    assert_eq!(lu.rank, 2);
    assert_eq!(lu.zero_column, None);
    // A column of round-off beside ordinary ones counts as zero (rank 1, not 2); on its own
    // scale it would pivot like any other.
    let x = [1.0, 3e-17, 2.0, -1e-16, 0.5, 2e-17, 4.0, 0.0];
    let lu = lu_pivots(&x, 4, 2, 1e-10);
    assert_eq!((lu.rank, lu.zero_column), (1, Some(1)));
}

#[test]
fn maxvol_is_a_local_maximum_of_the_volume() {
    let opts = Options::default();
    for seed in 0..6 {
        let (n, m) = (60 + 10 * seed as usize, 4 + seed as usize);
        let mut x = randn(n, m, seed);
        // Columns on very different scales must not matter.
        for r in 0..n {
            x[r * m] *= 1e4;
            x[r * m + 1] *= 1e-3;
        }
        let sel = maxvol(&x, n, m, &opts, "test").unwrap();
        assert!(sel.swaps.converged);
        let mut sorted = sel.pivots.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), m, "pivots are distinct");
        let a = gather(&x, m, &sel.pivots);
        // No single swap grows |det| by more than tol (checked with determinants only).
        let mut worst: f64 = 0.0;
        for i in 0..n {
            worst = worst.max(det_ratio(&a, m, &x[i * m..(i + 1) * m]));
        }
        assert!(worst <= opts.tol * (1.0 + 1e-9), "seed {seed}: {worst}");
        // gamma <= tol on every row, single-row and batched agree.
        let mut acc = vec![0.0; m];
        let mut gb = vec![0.0; n];
        gamma_batch(&sel.inverse.inv, m, &x, &mut gb, &mut vec![]);
        for i in 0..n {
            let g = gamma(&sel.inverse.inv, m, &x[i * m..(i + 1) * m], &mut acc);
            assert!(g <= opts.tol * (1.0 + 1e-9), "row {i}: {g}");
            assert!((g - gb[i]).abs() <= 1e-12 * g.max(1.0), "{g} vs {}", gb[i]);
        }
        // The active rows have gamma exactly 1 (to rounding).
        for &p in &sel.pivots {
            let g = gamma(&sel.inverse.inv, m, &x[p * m..(p + 1) * m], &mut acc);
            assert!((g - 1.0).abs() < 1e-9, "{g}");
        }
        // A random start is worse than the result.
        let d_sel = absdet(&a, m);
        let d_first = absdet(&x[..m * m], m);
        assert!(d_sel >= d_first, "{d_sel} < {d_first}");
    }
}

#[test]
fn gamma_equals_the_determinant_ratio() {
    for seed in 0..20u64 {
        let m = 2 + (seed as usize % 6);
        let a = randn(m, m, 100 + seed);
        let inv = invert(&a, m, 1e-12, "test").unwrap();
        let mut acc = vec![0.0; m];
        for k in 0..5 {
            let mut x = randn(1, m, 1000 * seed + k);
            if k == 4 {
                // Far outside: gamma >> 1.
                x.iter_mut().for_each(|v| *v *= 50.0);
            }
            let g = gamma(&inv.inv, m, &x, &mut acc);
            let r = det_ratio(&a, m, &x);
            assert!(
                (g - r).abs() <= 1e-10 * r.max(1e-300),
                "m {m}: gamma {g} ratio {r}"
            );
            let mut gb = [0.0];
            gamma_batch(&inv.inv, m, &x, &mut gb, &mut vec![]);
            assert!((gb[0] - r).abs() <= 1e-10 * r, "{} vs {r}", gb[0]);
        }
        // A row of A itself gives exactly 1 at its own position.
        let g = gamma(&inv.inv, m, &a[..m], &mut acc);
        assert!((g - 1.0).abs() < 1e-10, "{g}");
    }
}

#[test]
fn gamma_batch_spans_several_blocks() {
    let (n, m) = (2 * BLOCK + 17, 5);
    let x = randn(n, m, 7);
    let a = randn(m, m, 8);
    let inv = invert(&a, m, 1e-12, "t").unwrap();
    let mut out = vec![0.0; n];
    gamma_batch(&inv.inv, m, &x, &mut out, &mut vec![]);
    let mut acc = vec![0.0; m];
    for i in [0, BLOCK - 1, BLOCK, 2 * BLOCK + 16] {
        let g = gamma(&inv.inv, m, &x[i * m..(i + 1) * m], &mut acc);
        assert!((g - out[i]).abs() <= 1e-12 * g, "{i}");
    }
    let mut nan = x[..m].to_vec();
    nan[2] = f64::NAN;
    assert!(gamma(&inv.inv, m, &nan, &mut acc).is_nan());
}

#[test]
fn streaming_with_one_big_batch_is_the_dense_algorithm() {
    let (n, m) = (300, 8);
    let x = randn(n, m, 3);
    let dense = maxvol(&x, n, m, &Options::default(), "t").unwrap();
    let (st, passes) = stream(&x, n, m, n, 64);
    let ids: Vec<usize> = st.ids.iter().map(|i| i.atom as usize).collect();
    assert_eq!(ids, dense.pivots);
    assert_eq!(st.inverse, dense.inverse.inv);
    assert_eq!(passes, 2, "one building pass and one verifying pass");
}

#[test]
fn streaming_small_batches_finds_a_local_maximum() {
    let (n, m) = (500, 10);
    let x = randn(n, m, 11);
    let (st, _) = stream(&x, n, m, 37, 23);
    let mut acc = vec![0.0; m];
    for i in 0..n {
        let g = gamma(&st.inverse, m, &x[i * m..(i + 1) * m], &mut acc);
        assert!(g <= 1.01 * (1.0 + 1e-9), "row {i}: {g}");
    }
    // rows and inverse agree.
    let a = gather(
        &x,
        m,
        &st.ids.iter().map(|i| i.atom as usize).collect::<Vec<_>>(),
    );
    assert_eq!(a, st.rows);
    let inv = invert(&a, m, 1e-12, "t").unwrap();
    assert_eq!(inv.inv, st.inverse);
}

/// Random rows with a planted dominant set: `m` rows 30 times larger than the others.
fn planted(n: usize, m: usize, seed: u64, copies: usize) -> (Vec<f64>, Vec<usize>) {
    let mut x = randn(n, m, seed);
    let big = randn(m, m, seed + 1);
    let mut at = vec![];
    for k in 0..m {
        for c in 0..copies {
            // Spread the copies over the data (different batches).
            let r = (k * n / m + c * n / (2 * m) + 3) % n;
            x[r * m..(r + 1) * m]
                .iter_mut()
                .zip(&big[k * m..(k + 1) * m])
                .for_each(|(a, b)| *a = 30.0 * b);
            at.push(r);
        }
    }
    (x, at)
}

#[test]
fn batched_matches_unbatched() {
    let (n, m) = (600, 6);
    // A unique dominant set: both must find exactly it.
    let (x, at) = planted(n, m, 21, 1);
    let dense = maxvol(&x, n, m, &Options::default(), "t").unwrap();
    let (st, _) = stream(&x, n, m, 40, 25);
    let mut a: Vec<usize> = dense.pivots.clone();
    let mut b: Vec<usize> = st.ids.iter().map(|i| i.atom as usize).collect();
    a.sort();
    b.sort();
    let mut want = at.clone();
    want.sort();
    assert_eq!(a, want);
    assert_eq!(b, want);
    // Each dominant row twice, in different batches: ties; the volume must agree.
    let (x, _) = planted(n, m, 31, 2);
    let dense = maxvol(&x, n, m, &Options::default(), "t").unwrap();
    let (st, _) = stream(&x, n, m, 40, 25);
    let vd = absdet(&gather(&x, m, &dense.pivots), m);
    let vs = absdet(&st.rows, m);
    assert!((vd - vs).abs() <= 1e-10 * vd, "{vd} vs {vs}");
    let mut g = vec![0.0; n];
    gamma_batch(&st.inverse, m, &x, &mut g, &mut vec![]);
    assert!(g.iter().all(|&v| v <= 1.01 * (1.0 + 1e-9)));
}

#[test]
fn streaming_recovers_from_a_rank_deficient_first_batch() {
    let (n, m) = (200, 6);
    let mut x = randn(n, m, 5);
    // The first 80 rows only span the first 3 coordinates.
    for r in 0..80 {
        for k in 3..m {
            x[r * m + k] = 0.0;
        }
    }
    let (st, _) = stream(&x, n, m, 50, 30);
    let mut g = vec![0.0; n];
    gamma_batch(&st.inverse, m, &x, &mut g, &mut vec![]);
    assert!(g.iter().all(|&v| v <= 1.01 * (1.0 + 1e-9)));
}

#[test]
fn clear_errors_for_bad_data() {
    let opts = Options::default();
    let m = 274;
    let e = maxvol(&randn(40, m, 1), 40, m, &opts, "species Li").unwrap_err();
    assert_eq!(
        e.to_string(),
        "under-determined: species Li has 40 atoms, needs 274 (the basis size): add data or use a smaller basis"
    );
    let e = maxvol(&randn(1, m, 1), 1, m, &opts, "species Mg").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("under-determined: species Mg has 1 atom, needs 274"),
        "{e}"
    );
    // Streaming: same message after a pass.
    let mut s = StreamingMaxVol::new(m, 100, opts, "species Li").unwrap();
    s.begin_pass();
    s.push(&randn(40, m, 2), &ids(40)).unwrap();
    let e = s.end_pass().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("under-determined: species Li has 40 atoms, needs 274"),
        "{e}"
    );
    // A perfect crystal: every atom has the same descriptor.
    let row = randn(1, 6, 3);
    let x: Vec<f64> = (0..50).flat_map(|_| row.clone()).collect();
    let e = maxvol(&x, 50, 6, &opts, "species Al").unwrap_err();
    match &e {
        MaxVolError::RankDeficient { rank, n, m, .. } => {
            assert_eq!((*rank, *n, *m), (1, 50, 6))
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("span only about 1 of the 6"), "{e}");
    // Streaming gives the same diagnosis.
    let mut s = StreamingMaxVol::new(6, 16, opts, "species Al").unwrap();
    s.begin_pass();
    s.push(&x, &ids(50)).unwrap();
    assert!(matches!(
        s.end_pass(),
        Err(MaxVolError::RankDeficient { rank: 1, .. })
    ));
    // Nearly dependent: two columns equal up to 1e-14.
    let mut x = randn(30, 4, 4);
    for r in 0..30 {
        x[r * 4 + 3] = x[r * 4 + 2] * (1.0 + 1e-14);
    }
    let e = maxvol(&x, 30, 4, &opts, "species Li").unwrap_err();
    assert!(
        matches!(e, MaxVolError::RankDeficient { rank: 3, .. }),
        "{e}"
    );
    // A basis function that is zero everywhere.
    let mut x = randn(30, 4, 4);
    for r in 0..30 {
        x[r * 4 + 1] = 0.0;
    }
    let e = maxvol(&x, 30, 4, &opts, "species Li").unwrap_err();
    assert!(
        e.to_string()
            .contains("basis function 1 (0-based) is zero (or round-off, below 1e-10 of the largest function) for all 30 atoms"),
        "{e}"
    );
    // Non-finite input names the row.
    let mut x = randn(30, 4, 4);
    x[17 * 4 + 2] = f64::NAN;
    let e = maxvol(&x, 30, 4, &opts, "species Li").unwrap_err();
    assert!(e.to_string().contains("row 17"), "{e}");
    let mut s = StreamingMaxVol::new(4, 16, opts, "species Li").unwrap();
    s.begin_pass();
    let e = s.push(&x, &ids(30)).unwrap_err();
    assert!(e.to_string().contains("structure 0 atom 17"), "{e}");
    // A singular matrix cannot be inverted.
    let e = invert(&[1.0, 2.0, 2.0, 4.0], 2, 1e-10, "species Li").unwrap_err();
    assert!(
        e.to_string().contains("singular to working precision"),
        "{e}"
    );
    // Bad settings.
    let bad = Options { tol: 1.0, ..opts };
    assert!(
        maxvol(&randn(10, 2, 1), 10, 2, &bad, "x")
            .unwrap_err()
            .to_string()
            .contains("tol = 1")
    );
}

#[test]
fn candidates_are_added_to_an_existing_set() {
    let (n, m) = (200, 5);
    let x = randn(n, m, 9);
    let base = maxvol(&x, n, m, &Options::default(), "t").unwrap();
    let rows = gather(&x, m, &base.pivots);
    let existing: Vec<RowId> = (0..m as u32)
        .map(|k| RowId {
            structure: RowId::EXISTING,
            atom: k,
        })
        .collect();
    let mut s =
        StreamingMaxVol::with_active_set(m, 100, Options::default(), "t", rows, existing).unwrap();
    // Candidates: 30 interpolating rows (scaled down) and two far-out rows.
    let mut cand = randn(32, m, 10);
    cand[..30 * m].iter_mut().for_each(|v| *v *= 0.01);
    cand[30 * m..].iter_mut().for_each(|v| *v *= 100.0);
    let cid: Vec<RowId> = (0..32)
        .map(|k| RowId {
            structure: k / 2,
            atom: k % 2,
        })
        .collect();
    s.begin_pass();
    s.push(&cand, &cid).unwrap();
    let st = s.end_pass().unwrap();
    assert_eq!(st.candidates, 2, "only the far rows are candidates");
    let got = s.into_active_rows().unwrap();
    let new: Vec<RowId> = got
        .ids
        .iter()
        .copied()
        .filter(|i| i.structure != RowId::EXISTING)
        .collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new.iter().all(|i| i.structure == 15));
}
