//! Tests of the active sets, and (`#[ignore]`d) measurements on tests/data.

use super::clustered::build_clustered;
use super::global::build_global;
use super::partition::SpeciesStats;
use super::*;
use crate::io::container::{Array, Container};
use crate::testing::{random_model, random_structure, tiny_cfg};
use crate::uq::maxvol;
use crate::uq::screen::LazyScreen;
use crate::uq::{Partition, SpeciesRows};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::BTreeMap;
use std::path::Path;

/// A synthetic one-species table: `blobs` Gaussian blobs in `m` dimensions, `per` rows each,
/// `per_structure` rows per structure (structures do not mix blobs).
fn blobs(
    m: usize,
    centres: &[f64],
    per: usize,
    per_structure: usize,
    seed: u64,
) -> DescriptorTable {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sr = SpeciesRows {
        m,
        ..Default::default()
    };
    for (b, &c) in centres.iter().enumerate() {
        for r in 0..per {
            for j in 0..m {
                let x: f64 = StandardNormal.sample(&mut rng);
                // Each blob is offset by `c` times its own direction (in every column, so
                // that standardization keeps the blobs apart).
                sr.rows
                    .push(x + c * (1.3 + 2.1 * b as f64 + 0.7 * j as f64).sin());
            }
            sr.structure.push(((b * per + r) / per_structure) as u32);
            sr.atom.push(((b * per + r) % per_structure) as u32);
        }
    }
    DescriptorTable {
        per_species: vec![sr],
    }
}

fn names() -> Vec<String> {
    vec!["Li".to_string()]
}

fn global(t: &DescriptorTable, settings: &Settings) -> GlobalActiveSets {
    let ms: Vec<usize> = t.per_species.iter().map(|s| s.m).collect();
    build_global(
        &names()[..ms.len()],
        &ms,
        &mut TableSource {
            table: t,
            labels: &[],
        },
        settings,
        false,
    )
    .unwrap()
}

fn clustered(
    t: &DescriptorTable,
    labels: &[Option<String>],
    p: Partition,
    settings: &Settings,
) -> ClusteredActiveSets {
    let ms: Vec<FuncLayout> = t
        .per_species
        .iter()
        .map(|s| FuncLayout::plain(s.m))
        .collect();
    build_clustered(
        &names()[..ms.len()],
        &ms,
        &mut TableSource { table: t, labels },
        &p,
        settings,
        7,
        false,
    )
    .unwrap()
}

fn small_batches() -> Settings {
    Settings {
        batch: 50,
        ..Default::default()
    }
}

#[test]
fn one_cluster_reproduces_the_global_grade_exactly() {
    let t = blobs(6, &[0.0, 8.0, -8.0], 150, 10, 1);
    for settings in [Settings::default(), small_batches()] {
        let g = global(&t, &settings);
        let c = clustered(&t, &[], Partition::KMeans(1), &settings);
        assert_eq!(c.species[0].sets.len(), 1);
        assert_eq!(
            c.species[0].sets[0], g.species[0],
            "same active set, bit for bit"
        );
        let probe = blobs(6, &[3.0, 20.0], 40, 10, 2);
        let rows = &probe.per_species[0];
        let mut sc = GammaScratch::new(6);
        let mut gb = vec![0.0; rows.len()];
        let mut cb = vec![0u32; rows.len()];
        c.gamma_local_batch(0, &rows.rows, &mut gb, &mut cb, &mut sc);
        for r in 0..rows.len() {
            let a = g.gamma(0, rows.row(r), &mut sc);
            let (b, k) = c.gamma_local(0, rows.row(r), &mut sc);
            assert_eq!(a.to_bits(), b.to_bits());
            assert_eq!(k, 0);
            assert!((gb[r] - a).abs() <= 1e-12 * a.max(1.0));
        }
        // Every build row interpolates.
        let gt = g.gamma_table(&t);
        assert!(gt[0].iter().all(|&v| v <= 1.01 * (1.0 + 1e-9)));
        assert!(g.info.verified[0]);
        assert_eq!(g.info.atoms, vec![450]);
    }
}

#[test]
fn label_partition_reproduces_per_label_active_sets() {
    let t = blobs(5, &[0.0, 10.0, 25.0], 120, 6, 3);
    // Structures 0..20 are blob 0, 20..40 blob 1, 40..60 blob 2.
    let labels: Vec<Option<String>> = (0..60)
        .map(|k| Some(["liquid", "bcc", "surface"][k / 20].to_string()))
        .collect();
    let settings = Settings {
        min_cluster_atoms: 20,
        ..small_batches()
    };
    let c = clustered(&t, &labels, Partition::ConfigType, &settings);
    let sc = &c.species[0];
    // Labels sorted: bcc, liquid, surface.
    assert_eq!(sc.labels, vec!["bcc", "liquid", "surface"]);
    assert_eq!(sc.counts, vec![120, 120, 120]);
    let sr = &t.per_species[0];
    for (k, label) in sc.labels.iter().enumerate() {
        // The rows of this label alone, same order and provenance.
        let mut sub = SpeciesRows {
            m: 5,
            ..Default::default()
        };
        for r in 0..sr.len() {
            if labels[sr.structure[r] as usize].as_deref() == Some(label.as_str()) {
                sub.rows.extend_from_slice(sr.row(r));
                sub.structure.push(sr.structure[r]);
                sub.atom.push(sr.atom[r]);
            }
        }
        let g = global(
            &DescriptorTable {
                per_species: vec![sub],
            },
            &settings,
        );
        let c_k = sc.centroid_cluster[k] as usize;
        assert_eq!(sc.sets[c_k], g.species[0], "label {label}");
    }
    // Query: a row from blob 2 gets its smallest gamma from the 'surface' set.
    let mut s = GammaScratch::new(5);
    let row = sr.row(300);
    let (g, k) = c.gamma_local(0, row, &mut s);
    assert_eq!(sc.labels[k], "surface");
    for set in &sc.sets {
        assert!(set.gamma(row, &mut s.acc) >= g);
    }
    // The batch grades the same, and a row with a NaN entry is NaN both ways (not +inf).
    let mut rows = sr.rows[..3 * 5].to_vec();
    rows[5 + 2] = f64::NAN;
    let (mut gb, mut cb) = (vec![0.0; 3], vec![0u32; 3]);
    c.gamma_local_batch(0, &rows, &mut gb, &mut cb, &mut s);
    for r in 0..3 {
        let (g1, k1) = c.gamma_local(0, &rows[r * 5..(r + 1) * 5], &mut s);
        if r == 1 {
            assert!(g1.is_nan() && gb[r].is_nan(), "{g1} {}", gb[r]);
        } else {
            assert!((g1 - gb[r]).abs() <= 1e-12 * g1.max(1.0), "{g1} {}", gb[r]);
            assert_eq!(k1, cb[r] as usize);
        }
    }
    // A label with too few atoms is merged into the nearest one, with a note.
    let mut labels2 = labels.clone();
    for l in labels2.iter_mut().take(3) {
        *l = Some("tiny".into()); // 18 rows of blob 0
    }
    let c2 = clustered(&t, &labels2, Partition::ConfigType, &settings);
    let sc2 = &c2.species[0];
    assert_eq!(sc2.labels, vec!["bcc", "liquid", "surface", "tiny"]);
    assert_eq!(sc2.sets.len(), 3);
    assert_eq!(
        sc2.centroid_cluster[3], sc2.centroid_cluster[1],
        "tiny joins liquid"
    );
    assert!(
        c2.info.notes.iter().any(|n| n
            .contains("config_type 'tiny' has 18 atoms, fewer than min_cluster_atoms = 20")
            && n.contains("merged into config_type 'liquid'")),
        "{:?}",
        c2.info.notes
    );
}

#[test]
fn kmeans_finds_separated_blobs_and_merges_small_ones() {
    let t = blobs(4, &[0.0, 30.0, -30.0], 200, 10, 5);
    let settings = Settings {
        min_cluster_atoms: 12,
        ..Default::default()
    };
    let c = clustered(&t, &[], Partition::KMeans(3), &settings);
    let sc = &c.species[0];
    let mut counts = sc.counts.clone();
    counts.sort();
    assert_eq!(counts, vec![200, 200, 200]);
    // Rows of one blob share a cluster; different blobs differ.
    let sr = &t.per_species[0];
    let mut s = GammaScratch::new(4);
    let k: Vec<usize> = [0, 250, 450]
        .iter()
        .map(|&r| c.gamma_local(0, sr.row(r), &mut s).1)
        .collect();
    assert!(k[0] != k[1] && k[1] != k[2] && k[0] != k[2], "{k:?}");
    for r in 0..200 {
        assert_eq!(c.gamma_local(0, sr.row(r), &mut s).1, k[0]);
    }
    // Local grades of build rows are <= tol for their own cluster.
    let mut gb = vec![0.0; sr.len()];
    let mut cb = vec![0u32; sr.len()];
    c.gamma_local_batch(0, &sr.rows, &mut gb, &mut cb, &mut s);
    assert!(gb.iter().all(|&v| v <= 1.01 * (1.0 + 1e-9)));
    // K = 4 on three blobs splits one; with a minimum of 120 atoms the smaller half is merged
    // back into its nearest neighbour, the other half.
    let four = Settings {
        min_cluster_atoms: 120,
        ..Default::default()
    };
    let c4 = clustered(&t, &[], Partition::KMeans(4), &four);
    let mut counts = c4.species[0].counts.clone();
    counts.sort();
    assert_eq!(counts, vec![200, 200, 200], "{:?}", c4.info.notes);
    assert_eq!(c4.species[0].centroid_cluster.len(), 4);
    assert_eq!(
        c4.info
            .notes
            .iter()
            .filter(|n| n.contains("merged into k-means cluster"))
            .count(),
        1,
        "{:?}",
        c4.info.notes
    );
    // K = 2 on three blobs: one cluster of two blobs (400) and one of 200, below the minimum
    // of 250: one cluster remains.
    let big = Settings {
        min_cluster_atoms: 250,
        ..Default::default()
    };
    let c1 = clustered(&t, &[], Partition::KMeans(2), &big);
    assert_eq!(c1.species[0].sets.len(), 1);
    assert_eq!(c1.species[0].counts, vec![600]);
    assert_eq!(
        c1.info
            .notes
            .iter()
            .filter(|n| n.contains("merged into k-means cluster"))
            .count(),
        1
    );
    // k-means on a sample gives exact counts from an extra pass.
    let sampled = Settings {
        kmeans_sample: 100,
        ..Default::default()
    };
    let c = clustered(&t, &[], Partition::KMeans(3), &sampled);
    assert_eq!(c.species[0].counts.iter().sum::<usize>(), 600);
    assert_eq!(c.info.atoms, vec![600]);
}

#[test]
fn standardization_keeps_constant_columns() {
    let mut t = blobs(4, &[0.0], 50, 5, 9);
    for r in 0..50 {
        t.per_species[0].rows[r * 4 + 2] = 3.0;
    }
    let mut st = SpeciesStats::new(4);
    st.shift = t.per_species[0].row(0).to_vec();
    for r in 0..50 {
        for j in 0..4 {
            let d = t.per_species[0].row(r)[j] - st.shift[j];
            st.sum[j] += d;
            st.sumsq[j] += d * d;
        }
        st.n += 1;
    }
    let (mean, std) = st.mean_std();
    assert_eq!(std[2], 1.0);
    assert_eq!(mean[2], 3.0);
    assert!(std[0] > 0.5 && std[0] < 1.5);
}

fn model_and_data() -> (Model, Vec<Structure>) {
    let model = random_model(&["Al", "Mg"], &tiny_cfg(), 5);
    // 18 structures of 54 atoms: 486 atoms per species, at least 3 per function (151), so the
    // global sets are the classic full-rank ones.
    let data: Vec<Structure> = (0..18)
        .map(|k| {
            let mut s = random_structure(&["Al", "Mg"], 3, 100 + k, k % 2 == 0);
            s.config_type = Some(if k < 9 { "a" } else { "b" }.into());
            s
        })
        .collect();
    (model, data)
}

#[test]
fn save_load_round_trip_and_edited_files() {
    let (model, data) = model_and_data();
    let table = crate::uq::descriptor_table(&model, &data).unwrap();
    let settings = Settings::default();
    let g = GlobalActiveSets::build(&model, &table, &settings, false).unwrap();
    let labels = structure_labels(&data);
    let c = ClusteredActiveSets::build(
        &model,
        &table,
        &labels,
        &Partition::ConfigType,
        &settings,
        1,
        false,
    )
    .unwrap();
    let k = ClusteredActiveSets::build(
        &model,
        &table,
        &labels,
        &Partition::KMeans(2),
        &settings,
        1,
        false,
    )
    .unwrap();
    // Streaming descriptors chunk by chunk gives the same sets (one batch holds all rows).
    let mut src = StructureSource {
        model: &model,
        data: &data,
        chunk: 3,
    };
    let g2 = GlobalActiveSets::build_from_source(&model, &mut src, &settings, false).unwrap();
    assert_eq!(g, g2);
    let p = Path::new("t.aceuq");
    let mut uq = crate::uq::UqModel::default();
    for local in [c, k] {
        uq.active_set = Some(g.clone());
        uq.local = Some(local.clone());
        let mut cont = crate::io::modelfile::to_container(&model);
        uq.save(&mut cont);
        let bytes = cont.to_bytes();
        let back = crate::uq::UqModel::load(p, &Container::from_bytes(p, &bytes).unwrap(), &model)
            .unwrap();
        assert_eq!(back.active_set.as_ref(), Some(&g));
        assert_eq!(back.local.as_ref(), Some(&local));
    }
    // The model's sections and the active sets, as a model file holds them.
    let full = || {
        let mut c = crate::io::modelfile::to_container(&model);
        uq.save(&mut c);
        c
    };
    let mut cont = full();
    // Absent estimators load as None.
    let mut bare = cont.clone();
    bare.arrays.retain(|k, _| !k.starts_with("uq."));
    bare.meta.remove("uq");
    assert!(GlobalActiveSets::load(p, &bare, &model).unwrap().is_none());
    assert!(
        ClusteredActiveSets::load(p, &bare, &model)
            .unwrap()
            .is_none()
    );
    // A CRC-valid edit of the inverse is caught by the consistency probe.
    let name = "uq.gamma.1.inverse";
    if let Some((_, Array::F64(v))) = cont.arrays.get_mut(name) {
        v[3] += 0.5;
    }
    let c2 = Container::from_bytes(p, &cont.to_bytes()).unwrap();
    let e = GlobalActiveSets::load(p, &c2, &model)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'uq.gamma.1.inverse' is not the inverse of 'uq.gamma.1.rows'"),
        "{e}"
    );
    // Wrong size names the array.
    let mut cont = full();
    cont.put("uq.gamma.0.rows", vec![2], Array::F64(vec![1.0, 2.0]));
    let e = GlobalActiveSets::load(p, &cont, &model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("array 'uq.gamma.0.rows' has 2 numbers"), "{e}");
    // A cluster map pointing nowhere.
    let mut cont = full();
    cont.put(
        "uq.gamma_local.0.centroid_cluster",
        vec![2],
        Array::U32(vec![0, 9]),
    );
    let e = ClusteredActiveSets::load(p, &cont, &model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("refers to cluster 9"), "{e}");
    // Metadata for other species.
    let mut cont = full();
    let uq = cont.meta.get_mut("uq").unwrap().as_table_mut().unwrap();
    let gm = uq.get_mut("gamma").unwrap().as_table_mut().unwrap();
    gm.insert("species".into(), toml::Value::Array(vec!["Li".into()]));
    let e = GlobalActiveSets::load(p, &cont, &model)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is for species [Li] but the model has [Al, Mg]"),
        "{e}"
    );
    // Arrays without metadata.
    let mut cont = full();
    cont.meta.remove("uq");
    let e = GlobalActiveSets::load(p, &cont, &model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("metadata is missing"), "{e}");
}

#[test]
fn a_rank_deficient_cluster_keeps_its_own_active_set() {
    // Pure-Al structures: every function with a Mg neighbour is zero for their Al atoms, so
    // their cluster spans fewer than m dimensions. It keeps its own set, in its row space.
    let (model, mut data) = model_and_data();
    for (k, s) in data.iter_mut().enumerate() {
        s.config_type = Some("mixed".into());
        if k < 4 {
            let mut p = random_structure(&["Al"], 3, 500 + k as u64, true);
            p.config_type = Some("pure_al".into());
            *s = p;
        }
    }
    for k in 0..4 {
        let mut s = random_structure(&["Al", "Mg"], 3, 700 + k, false);
        s.config_type = Some("mixed".into());
        data.push(s);
    }
    let table = crate::uq::descriptor_table(&model, &data).unwrap();
    let labels = structure_labels(&data);
    let settings = Settings {
        min_cluster_atoms: 5,
        ..Default::default()
    };
    let c = ClusteredActiveSets::build(
        &model,
        &table,
        &labels,
        &Partition::ConfigType,
        &settings,
        1,
        false,
    )
    .unwrap();
    let sc = &c.species[0];
    // Labels carry the neighbourhood chemistry in multi-species models.
    assert_eq!(
        sc.labels,
        vec!["mixed [Al+Mg neighbours]", "pure_al [Al neighbours]"]
    );
    assert_eq!(sc.sets.len(), 2, "{:?}", c.info.notes);
    let pure = &sc.sets[sc.centroid_cluster[1] as usize];
    let p = pure
        .proj
        .as_ref()
        .expect("the pure-Al cluster is rank-deficient");
    let m = model.nfuncs(0);
    assert!(p.rank < m && pure.m == p.rank && p.m == m);
    assert!(p.width > 0.0);
    assert!(
        c.info.notes.iter().any(|n| n
            .starts_with("species Al, cluster 1 (config_type pure_al [Al neighbours]): its ")
            && n.contains(&format!("span {} of {m} dimensions", p.rank))),
        "{:?}",
        c.info.notes
    );
    // Every build row grades <= tol against its own cluster.
    let sr = &table.per_species[0];
    let mut own = vec![0.0; sr.len()];
    let mut scratch = GammaScratch::new(m);
    for (k, set) in sc.sets.iter().enumerate() {
        let label = if k == sc.centroid_cluster[1] as usize {
            "pure_al"
        } else {
            "mixed"
        };
        let sel: Vec<usize> = (0..sr.len())
            .filter(|&r| labels[sr.structure[r] as usize].as_deref() == Some(label))
            .collect();
        let mut out = vec![0.0; sel.len()];
        set.gamma_selected(
            &sr.rows,
            &sel,
            &mut out,
            &mut scratch.screen,
            &mut scratch.proj,
        );
        for (&r, &g) in sel.iter().zip(&out) {
            own[r] = g;
            // The single-row grade agrees with the batched one.
            let one = set.gamma(sr.row(r), &mut scratch.acc);
            assert!((one - g).abs() <= 1e-9 * (1.0 + g), "{one} vs {g}");
        }
    }
    assert!(own.iter().all(|&v| v <= 1.01 * (1.0 + 1e-9)), "{own:?}");
    // Mixed Al rows leave the pure-Al space: graded far above 1 by the pure set alone.
    let mixed: Vec<usize> = (0..sr.len())
        .filter(|&r| labels[sr.structure[r] as usize].as_deref() == Some("mixed"))
        .collect();
    let mut out = vec![0.0; mixed.len()];
    pure.gamma_selected(
        &sr.rows,
        &mixed,
        &mut out,
        &mut scratch.screen,
        &mut scratch.proj,
    );
    let above = out.iter().filter(|&&g| g > 10.0).count();
    assert!(above * 2 > mixed.len(), "{out:?}");
    // The global set of the same data is full rank: no projection there.
    let glob = GlobalActiveSets::build(&model, &table, &settings, false).unwrap();
    assert!(glob.species[0].proj.is_none());
}

/// Rows in a 3-dimensional subspace of 6 dimensions, column 5 zero on every row.
fn subspace_rows(n: usize, seed: u64) -> DescriptorTable {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let basis = [
        [1.0, 0.5, -0.2, 2.0, 0.1, 0.0],
        [0.0, 1.5, 0.7, -1.0, 0.4, 0.0],
        [0.3, -0.2, 1.0, 0.5, -2.0, 0.0],
    ];
    let mut sr = SpeciesRows {
        m: 6,
        ..Default::default()
    };
    for i in 0..n {
        let c: Vec<f64> = (0..3).map(|_| rng.random_range(-1.0..1.0)).collect();
        for j in 0..6 {
            sr.rows.push(
                (0..3)
                    .map(|k| c[k] * basis[k][j] * 10f64.powi(j as i32 - 2))
                    .sum(),
            );
        }
        sr.structure.push(i as u32);
        sr.atom.push(0);
    }
    DescriptorTable {
        per_species: vec![sr],
    }
}

#[test]
fn projected_grade_is_the_classic_grade_in_the_span_plus_the_distance_from_it() {
    let t = subspace_rows(200, 9);
    let c = clustered(&t, &[], Partition::KMeans(1), &Settings::default());
    let set = &c.species[0].sets[0];
    let p = set.proj.as_ref().expect("rank 3 of 6");
    assert_eq!((p.rank, p.m, set.m), (3, 6, 3));
    assert_eq!(p.cols, vec![0, 1, 2, 3, 4]);
    assert_eq!(p.dead, vec![5]);
    // The active atoms in original coordinates.
    let sr = &t.per_species[0];
    let act: Vec<&[f64]> = set
        .source
        .iter()
        .map(|id| sr.row(id.structure as usize))
        .collect();
    // In the span: gamma = max |c| with x = sum_j c_j a_j (least squares, exact here).
    let a = nalgebra::DMatrix::from_fn(6, 3, |i, j| act[j][i]);
    let mut scratch = GammaScratch::new(6);
    for r in [0, 17, 150] {
        let x = nalgebra::DVector::from_column_slice(sr.row(r));
        let coef = a.clone().svd(true, true).solve(&x, 1e-12).unwrap();
        let want = coef.amax();
        let got = set.gamma(sr.row(r), &mut scratch.acc);
        assert!(
            (got - want).abs() <= 1e-8 * want.max(1.0),
            "{got} vs {want}"
        );
    }
    // Out of the span along the dead column: gamma_out = |t| / s_5 / w, w the smallest
    // singular value of the scaled active rows (invariant under the orthonormal basis).
    let scaled = nalgebra::DMatrix::from_fn(3, 6, |i, j| act[i][j] * p.inv_scale[j]);
    let w = scaled.singular_values().min();
    assert!((w - p.width).abs() <= 1e-9 * w, "{w} vs {}", p.width);
    let mut x = sr.row(0).to_vec();
    let t5 = 10.0 * w / p.inv_scale[5];
    x[5] = t5;
    let want = t5 * p.inv_scale[5] / w;
    let got = set.gamma(&x, &mut scratch.acc);
    assert!((got - want).abs() <= 1e-9 * want, "{got} vs {want}");
    // NaN stays NaN.
    x[2] = f64::NAN;
    assert!(set.gamma(&x, &mut scratch.acc).is_nan());
    // The batched path agrees.
    let mut out = vec![0.0; sr.len()];
    let mut cl = vec![0u32; sr.len()];
    c.gamma_local_batch(0, &sr.rows, &mut out, &mut cl, &mut scratch);
    for r in 0..sr.len() {
        let one = set.gamma(sr.row(r), &mut scratch.acc);
        assert!((one - out[r]).abs() <= 1e-9 * (1.0 + one));
        assert!(out[r] <= 1.01 * (1.0 + 1e-9));
    }
}

#[test]
fn a_species_spanning_fewer_dimensions_than_functions_gets_a_global_set_in_its_row_space() {
    // 200 rows in a 3-dimensional subspace of 6 (column 5 zero): no 6 x 6 active set exists.
    // Before, the build failed ("rank-deficient"/"under-determined"); an alloy's species with
    // fewer atoms than basis functions failed the same way.
    let t = subspace_rows(200, 9);
    let g = global(&t, &Settings::default());
    let set = &g.species[0];
    let p = set.proj.as_ref().expect("graded in the row space");
    assert_eq!((p.rank, p.m, set.m), (3, 6, 3));
    assert!(
        g.info
            .notes
            .iter()
            .any(|n| n.starts_with("species Li: its 200 atoms span 3 of 6 dimensions")),
        "{:?}",
        g.info.notes
    );
    // The same grade as a one-cluster clustered set of the same rows, and every build row
    // grades at most 1 (up to MaxVol's tolerance).
    let c = clustered(&t, &[], Partition::KMeans(1), &Settings::default());
    let cs = &c.species[0].sets[0];
    let sr = &t.per_species[0];
    let mut scratch = GammaScratch::new(6);
    let mut batch = vec![0.0; sr.len()];
    g.species[0].gamma_batch(&sr.rows, &mut batch, &mut scratch);
    for r in 0..sr.len() {
        let a = g.gamma(0, sr.row(r), &mut scratch);
        let b = cs.gamma(sr.row(r), &mut scratch.acc);
        assert!((a - b).abs() <= 1e-9 * (1.0 + a), "row {r}: {a} vs {b}");
        assert!(
            (a - batch[r]).abs() <= 1e-6 * (1.0 + a),
            "row {r}: {a} vs {}",
            batch[r]
        );
        assert!(a <= 1.01 * (1.0 + 1e-9), "row {r}: {a}");
    }
    // A row leaving the space grades above 1.
    let mut x = sr.row(0).to_vec();
    x[5] = 10.0 * p.width / p.inv_scale[5];
    assert!(g.gamma(0, &x, &mut scratch) > 5.0);
    // The set survives the model file.
    let mut cont = Container::default();
    for (s, set) in g.species.iter().enumerate() {
        set.save(&mut cont, &format!("uq.gamma.{s}"));
    }
    let back = SpeciesActiveSet::load(Path::new("m.aceuq"), &cont, "uq.gamma.0", 6).unwrap();
    assert_eq!(back.proj.as_deref(), set.proj.as_deref());
    assert_eq!(
        back.gamma(&x, &mut scratch.acc),
        set.gamma(&x, &mut scratch.acc)
    );
}

/// A column that is round-off on every row (a function that vanishes on the data by
/// symmetry, computed as a difference of ordinary terms) is no direction of its own: global
/// and clustered sets grade in the space of the other columns, and another round-off value
/// there changes no grade. Scaled to unit size, that noise was graded as a direction, and
/// pacemaker's Cu potential graded the same atoms up to 14 % apart when they were numbered
/// otherwise.
#[test]
fn a_round_off_column_is_no_direction_of_its_own() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (m, n) = (5, 100);
    let mut sr = SpeciesRows {
        m,
        ..Default::default()
    };
    for i in 0..n {
        for j in 0..m - 1 {
            let x: f64 = StandardNormal.sample(&mut rng);
            sr.rows.push(x * 10f64.powi(j as i32 - 1));
        }
        sr.rows.push(1e-15 * rng.random_range(-1.0..1.0));
        sr.structure.push(i as u32);
        sr.atom.push(0);
    }
    let t = DescriptorTable {
        per_species: vec![sr],
    };
    let g = global(&t, &Settings::default());
    let p = g.species[0].proj.as_ref().expect("graded in the row space");
    assert_eq!((p.rank, p.dead.as_slice()), (m - 1, &[m as u32 - 1][..]));
    let c = clustered(&t, &[], Partition::KMeans(1), &Settings::default());
    let cs = &c.species[0].sets[0];
    let cp = cs.proj.as_ref().expect("graded in the row space");
    assert_eq!((cp.rank, cp.dead.as_slice()), (m - 1, &[m as u32 - 1][..]));
    let sr = &t.per_species[0];
    let mut scratch = GammaScratch::new(m);
    for r in 0..n {
        let mut x = sr.row(r).to_vec();
        let (a, la) = (g.gamma(0, &x, &mut scratch), cs.gamma(&x, &mut scratch.acc));
        x[m - 1] = 7e-16 - x[m - 1];
        let (b, lb) = (g.gamma(0, &x, &mut scratch), cs.gamma(&x, &mut scratch.acc));
        assert!((a - b).abs() <= 1e-12 * a.max(1.0), "row {r}: {a} vs {b}");
        assert!(
            (la - lb).abs() <= 1e-12 * la.max(1.0),
            "row {r}: {la} vs {lb}"
        );
        assert!(a <= 1.01 + 1e-9 && la <= 1.01 + 1e-9, "row {r}: {a}, {la}");
    }
    // An atom with a real value in that function leaves the space.
    let mut x = sr.row(0).to_vec();
    x[m - 1] = 10.0 * p.width;
    assert!(g.gamma(0, &x, &mut scratch) > 5.0);
}

/// A full-rank set above `max_condition` is graded in its row space, globally and per
/// cluster; a species already graded in its row space (too few atoms) stays there when another
/// species is rebuilt (with max_condition 1 every full-rank set counts as singular).
#[test]
fn a_set_above_max_condition_is_graded_in_its_row_space() {
    let settings = Settings {
        max_condition: 1.0,
        ..Default::default()
    };
    let full = blobs(4, &[0.0], 60, 5, 11).per_species.remove(0); // 60 rows >= 3 x 4
    let thin = blobs(12, &[0.0], 30, 5, 12).per_species.remove(0); // 30 rows < 3 x 12
    let t = DescriptorTable {
        per_species: vec![thin, full],
    };
    let names = vec!["Al".to_string(), "Mg".to_string()];
    let build = |settings: &Settings| {
        build_global(
            &names,
            &[12, 4],
            &mut TableSource {
                table: &t,
                labels: &[],
            },
            settings,
            false,
        )
        .unwrap()
    };
    let before = build(&Settings::default());
    assert!(before.species[0].proj.is_some() && before.species[1].proj.is_none());
    let g = build(&settings);
    assert!(
        g.species[0].proj.is_some(),
        "the thin species lost its row space"
    );
    assert!(g.species[1].proj.is_some(), "{:?}", g.info.notes);
    assert!(
        g.info
            .notes
            .iter()
            .any(|n| n.starts_with("species Mg: the full set MaxVol found is singular")),
        "{:?}",
        g.info.notes
    );
    let c = clustered(
        &blobs(4, &[0.0], 60, 5, 11),
        &[],
        Partition::KMeans(1),
        &settings,
    );
    assert!(c.species[0].sets[0].proj.is_some());
    assert!(
        c.info
            .notes
            .iter()
            .any(|n| n.contains("singular to working precision"))
    );
    let bad = Settings {
        max_condition: 0.5,
        ..Default::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("max_condition")
    );
}

/// Grade of `x` with a square matrix as in an `.asi` file: max_i |sum_k x_k m[k][i]|.
fn square_grade(m: &[f64], x: &[f64]) -> f64 {
    let n = x.len();
    (0..n)
        .map(|i| (0..n).map(|k| x[k] * m[k * n + i]).sum::<f64>().abs())
        .fold(0.0, f64::max)
}

#[test]
fn a_row_space_set_written_as_a_square_inverse_grades_the_same() {
    // The ML-PACE .asi form of a rank-3-of-6 set: build rows and other rows of the space grade
    // as the set does; a row leaving the space along a used or an unused column grades between
    // the set's grade / sqrt(n - r) and the set's grade.
    let t = subspace_rows(200, 9);
    let g = global(&t, &Settings::default());
    let set = &g.species[0];
    let p = set.proj.as_ref().expect("graded in the row space");
    let sq = set.square_inverse();
    assert_eq!(sq.len(), 36);
    let sr = &t.per_species[0];
    let mut scratch = GammaScratch::new(6);
    for r in 0..sr.len() {
        let a = set.gamma(sr.row(r), &mut scratch.acc);
        let b = square_grade(&sq, sr.row(r));
        assert!((a - b).abs() <= 1e-8 * (1.0 + a), "row {r}: {a} vs {b}");
    }
    let other = subspace_rows(20, 31);
    for r in 0..20 {
        let x = other.per_species[0].row(r);
        let (a, b) = (set.gamma(x, &mut scratch.acc), square_grade(&sq, x));
        assert!(
            (a - b).abs() <= 1e-8 * (1.0 + a),
            "in space {r}: {a} vs {b}"
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for trial in 0..20 {
        let mut x = sr.row(trial).to_vec();
        for (j, v) in x.iter_mut().enumerate() {
            *v += rng.random_range(-1.0..1.0) * 3.0 * p.width / p.inv_scale[j];
        }
        let (a, b) = (set.gamma(&x, &mut scratch.acc), square_grade(&sq, &x));
        assert!(
            b <= a * (1.0 + 1e-9) && b >= a / 3f64.sqrt() * (1.0 - 1e-9),
            "off space {trial}: set {a}, square {b}"
        );
        assert!(b > 1.0, "off space {trial}: square grade {b}");
    }
    // A full-rank set: its inverse as is.
    let mut sr = SpeciesRows {
        m: 6,
        ..Default::default()
    };
    for i in 0..40 {
        sr.rows.extend((0..6).map(|_| rng.random_range(-1.0..1.0)));
        sr.structure.push(i);
        sr.atom.push(0);
    }
    let full = global(
        &DescriptorTable {
            per_species: vec![sr],
        },
        &Settings::default(),
    );
    assert!(full.species[0].proj.is_none());
    assert_eq!(full.species[0].square_inverse(), full.species[0].inverse);
}

#[test]
fn a_species_with_fewer_than_three_atoms_per_function_is_graded_in_its_row_space() {
    // Rows spanning all 6 dimensions: 17 atoms (fewer than 3 per function) get a set in a
    // row space of at most 17 / 3 = 5 dimensions, like a cluster of that size; 18 atoms keep the
    // classic 6 x 6 set. A full-rank set from barely more atoms than functions is thin: on In-P
    // (1340 atoms for 958 functions) it graded validation atoms up to 680.
    let rows = |n: usize| {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut sr = SpeciesRows {
            m: 6,
            ..Default::default()
        };
        for i in 0..n {
            sr.rows.extend((0..6).map(|_| rng.random_range(-1.0..1.0)));
            sr.structure.push(i as u32);
            sr.atom.push(0);
        }
        DescriptorTable {
            per_species: vec![sr],
        }
    };
    let few = Settings {
        min_cluster_atoms: 5,
        ..Default::default()
    };
    let thin = global(&rows(17), &few);
    let p = thin.species[0]
        .proj
        .as_ref()
        .expect("graded in the row space");
    assert_eq!((p.rank, p.m), (5, 6));
    assert!(
        thin.info
            .notes
            .iter()
            .any(|n| n.starts_with("species Li: its 17 atoms span 5 of 6 dimensions")),
        "{:?}",
        thin.info.notes
    );
    let full = global(&rows(18), &few);
    assert!(full.species[0].proj.is_none());
    assert_eq!(full.species[0].m, 6);
}

#[test]
fn an_alloy_with_fewer_atoms_per_species_than_functions_builds_gamma_and_selects() {
    // Every species has fewer atoms than basis functions.
    let (model, data) = model_and_data();
    let table = crate::uq::descriptor_table(&model, &data).unwrap();
    let m = model.nfuncs(0);
    let few: Vec<Structure> = data[..3].to_vec();
    let t = crate::uq::descriptor_table(&model, &few).unwrap();
    let n: Vec<usize> = t.per_species.iter().map(|s| s.len()).collect();
    assert!(
        n.iter().all(|&k| k < m && k >= 30),
        "{n:?} atoms vs {m} functions"
    );
    let settings = Settings::default();
    let g = GlobalActiveSets::build(&model, &t, &settings, false).unwrap();
    for (s, set) in g.species.iter().enumerate() {
        let p = set.proj.as_ref().expect("fewer atoms than functions");
        assert!(p.rank <= n[s] / 3 && p.rank >= 1, "{} of {}", p.rank, n[s]);
    }
    // Build rows grade <= 1; the rest of the data (other structures) is graded, mostly above.
    let own = g.gamma_table(&t);
    assert!(own.iter().flatten().all(|&v| v <= 1.01 * (1.0 + 1e-9)));
    let all = g.gamma_table(&table);
    assert!(all.iter().flatten().any(|&v| v > 1.5), "{all:?}");
    // Selection works against a projected set and prefers new structures.
    let mut src = TableSource {
        table: &table,
        labels: &[],
    };
    let rep = select(&model.species, &g, &mut src, 2, &settings, false).unwrap();
    assert!(!rep.chosen.is_empty(), "{rep:?}");
    assert!(rep.chosen.iter().all(|c| c.structure >= 3), "{rep:?}");
}

#[test]
fn a_projection_survives_save_and_load_and_edits_are_caught() {
    let t = subspace_rows(100, 4);
    let c = clustered(&t, &[], Partition::KMeans(1), &Settings::default());
    let set = &c.species[0].sets[0];
    let mut cont = Container::default();
    set.save(&mut cont, "x");
    let path = std::path::Path::new("m.aceuq");
    let back = SpeciesActiveSet::load(path, &cont, "x", 6).unwrap();
    assert_eq!(&back, set);
    let mut bad = cont.clone();
    if let Some((_, Array::F64(q))) = bad.arrays.get_mut("x.proj.q") {
        q[0] += 0.5;
    }
    let e = SpeciesActiveSet::load(path, &bad, "x", 6)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'x.proj.q' is not orthogonal"), "{e}");
    let mut bad = cont.clone();
    bad.put("x.proj.cols", vec![5], Array::U32(vec![0, 1, 3, 2, 4]));
    let e = SpeciesActiveSet::load(path, &bad, "x", 6)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ascending"), "{e}");
}

#[test]
fn a_species_with_one_atom_is_a_clear_error() {
    let (model, mut data) = model_and_data();
    for s in data.iter_mut() {
        for sym in s.symbols.iter_mut() {
            *sym = "Al".into();
        }
    }
    data[0].symbols[5] = "Mg".into();
    let table = crate::uq::descriptor_table(&model, &data).unwrap();
    let e = GlobalActiveSets::build(&model, &table, &Settings::default(), false)
        .unwrap_err()
        .to_string();
    // Al (no Mg neighbours at all) spans fewer dimensions than functions and would get a set in
    // its row space; one Mg atom is too few for any set.
    assert_eq!(
        e,
        "species Mg: 1 atom in the data, too few for an active set (at least min_cluster_atoms = 30 needed): add structures with this species, or lower min_cluster_atoms (`--min-cluster-atoms` of `aceuq activeset`, [uq.activeset] in a fit's --config)"
    );
    let e = ClusteredActiveSets::build(
        &model,
        &table,
        &[],
        &Partition::KMeans(2),
        &Settings::default(),
        1,
        false,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "species Mg: 1 atom in the data, too few for an active set (at least min_cluster_atoms = 30 needed): add structures with this species, or lower min_cluster_atoms (`--min-cluster-atoms` of `aceuq activeset`, [uq.activeset] in a fit's --config)"
    );
}

#[test]
fn selection_prefers_structures_outside_the_training_domain() {
    let (model, data) = model_and_data();
    let table = crate::uq::descriptor_table(&model, &data).unwrap();
    let g = GlobalActiveSets::build(&model, &table, &Settings::default(), false).unwrap();
    // Candidates: two copies of training structures (nothing new) and two compressed ones.
    let mut cands = vec![data[1].clone(), data[6].clone()];
    for k in 0..2 {
        let mut s = random_structure(&["Al", "Mg"], 3, 900 + k, false);
        for p in s.positions.iter_mut() {
            p.iter_mut().for_each(|x| *x *= 0.85);
        }
        if let Some(c) = s.cell.as_mut() {
            c.iter_mut()
                .for_each(|r| r.iter_mut().for_each(|x| *x *= 0.85));
        }
        cands.push(s);
    }
    let mut src = StructureSource {
        model: &model,
        data: &cands,
        chunk: 2,
    };
    let rep = select(&model.species, &g, &mut src, 3, &Settings::default(), false).unwrap();
    assert_eq!(rep.candidates, 4);
    let chosen: Vec<usize> = rep.chosen.iter().map(|c| c.structure).collect();
    assert!(
        chosen.iter().all(|&k| k >= 2),
        "copies of training data are never chosen: {chosen:?}"
    );
    assert_eq!(rep.contributing, 2);
    assert!(
        rep.chosen
            .iter()
            .all(|c| c.new_rows > 0 && c.max_gamma > 1.01)
    );
    assert!(
        rep.notes
            .iter()
            .any(|n| n.contains("only 2 of the 4 candidate structures")),
        "{:?}",
        rep.notes
    );
    // Copies of training data grade <= tol.
    let t2 = crate::uq::descriptor_table(&model, &cands[..2]).unwrap();
    for v in g.gamma_table(&t2) {
        assert!(v.iter().all(|&x| x <= 1.01 * (1.0 + 1e-9)));
    }
}

#[test]
fn near_singular_active_sets_are_reported() {
    // [[1, 1], [1, 1 + e]]: relative pivot ~e, 1-norm condition number ~4 / e.
    for (e, singular) in [(2e-10, false), (5e-11, true)] {
        let a = [1.0, 1.0, 1.0, 1.0 + e];
        match maxvol::invert(&a, 2, 1e-10, "species Li") {
            Ok(inv) => {
                assert!(!singular);
                assert!((inv.cond * e / 4.0 - 1.0).abs() < 0.01, "{}", inv.cond);
                let set = SpeciesActiveSet {
                    m: 2,
                    rows: a.to_vec(),
                    inverse: inv.inv,
                    source: vec![RowId::default(); 2],
                    cond: inv.cond,
                    screen: LazyScreen::default(),
                    proj: None,
                };
                let mut notes = vec![];
                condition_notes(&[("species Li".into(), &set)], &mut notes);
                assert_eq!(notes.len(), 1);
                assert!(notes[0].starts_with("species Li: the active-set matrix is nearly singular (condition number 2.0e10"), "{notes:?}");
            }
            Err(err) => {
                assert!(singular);
                assert!(err.to_string().starts_with("species Li: the active-set matrix is singular to working precision (LU pivot 1 is 5.0e-11"), "{err}");
            }
        }
    }
}

#[test]
fn settings_are_checked() {
    let t = blobs(3, &[0.0], 30, 5, 1);
    let ms = [3usize];
    for bad in [
        Settings {
            tol: 0.9,
            ..Default::default()
        },
        Settings {
            max_passes: 1,
            ..Default::default()
        },
        Settings {
            min_cluster_factor: Some(3.0),
            ..Default::default()
        },
        Settings {
            min_cluster_atoms: 0,
            ..Default::default()
        },
    ] {
        let e = build_global(
            &names(),
            &ms,
            &mut TableSource {
                table: &t,
                labels: &[],
            },
            &bad,
            false,
        );
        assert!(e.unwrap_err().to_string().starts_with("[uq.activeset]"));
    }
    let toml_text = "tol = 1.05\nbatch = 1000\n";
    let s: Settings = toml::from_str(toml_text).unwrap();
    assert_eq!(s.tol, 1.05);
    assert_eq!(s.max_iters, 300);
    assert!(toml::from_str::<Settings>("tolerance = 2").is_err());
}

// -----------------------------------------------------------------------------------------
// Measurements on tests/data (not assertions): run with
//   cargo test --release --lib uq::activeset::tests::measure -- --ignored --nocapture
// -----------------------------------------------------------------------------------------

use crate::basis::BasisConfig;
use crate::model::fit::{FitConfig, fit};
use crate::stats::metrics::{roc_auc, spearman};
use std::time::Instant;

fn read(path: &str) -> Vec<Structure> {
    let p = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    crate::io::extxyz::read_file(&p, &Default::default()).unwrap()
}

/// Per-structure, per-atom values from a per-species row grader.
fn per_atom(
    model: &Model,
    data: &[Structure],
    grade: &dyn Fn(usize, &[f64]) -> Vec<f64>,
) -> Vec<Vec<f64>> {
    let t = crate::uq::descriptor_table(model, data).unwrap();
    let mut out: Vec<Vec<f64>> = data.iter().map(|s| vec![f64::NAN; s.len()]).collect();
    for (s, sr) in t.per_species.iter().enumerate() {
        if sr.is_empty() {
            continue;
        }
        let g = grade(s, &sr.rows);
        for r in 0..sr.len() {
            out[sr.structure[r] as usize][sr.atom[r] as usize] = g[r];
        }
    }
    out
}

type Grader<'a> = Box<dyn Fn(usize, &[f64]) -> Vec<f64> + 'a>;

fn global_grader(g: &GlobalActiveSets) -> Grader<'_> {
    Box::new(move |s, rows| {
        let m = g.species[s].m;
        let mut out = vec![0.0; rows.len() / m];
        g.species[s].gamma_batch(rows, &mut out, &mut GammaScratch::default());
        out
    })
}

fn local_grader(c: &ClusteredActiveSets) -> Grader<'_> {
    Box::new(move |s, rows| {
        let m = c.species[s].mean.len();
        let n = rows.len() / m;
        let (mut g, mut k) = (vec![0.0; n], vec![0u32; n]);
        c.gamma_local_batch(s, rows, &mut g, &mut k, &mut GammaScratch::new(m));
        g
    })
}

struct Row {
    name: String,
    auc: f64,
    auc_by_type: Vec<(String, f64)>,
    rho: f64,
    rho_in: f64,
    rho_novel: f64,
    median_in: f64,
    median_novel: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// ROC-AUC of structure grades (in-distribution vs novel, overall and per novel
/// config_type) and per-atom Spearman rho between the grade and |force error|.
#[allow(clippy::too_many_arguments)]
fn evaluate_grader(
    name: &str,
    model: &Model,
    grade: &dyn Fn(usize, &[f64]) -> Vec<f64>,
    inside: &[Structure],
    novel: &[Structure],
    err_in: &[Vec<f64>],
    err_novel: &[Vec<f64>],
) -> Row {
    let gi = per_atom(model, inside, grade);
    let gn = per_atom(model, novel, grade);
    let smax = |g: &Vec<f64>| g.iter().copied().fold(0.0, f64::max);
    let si: Vec<f64> = gi.iter().map(smax).collect();
    let sn: Vec<f64> = gn.iter().map(smax).collect();
    let scores: Vec<f64> = si.iter().chain(&sn).copied().collect();
    let labels: Vec<bool> = si
        .iter()
        .map(|_| false)
        .chain(sn.iter().map(|_| true))
        .collect();
    let auc = roc_auc(&scores, &labels).unwrap();
    let mut types: Vec<String> = novel
        .iter()
        .map(|s| s.config_type.clone().unwrap_or_default())
        .collect();
    types.sort();
    types.dedup();
    let auc_by_type = types
        .iter()
        .map(|t| {
            let sel: Vec<f64> = sn
                .iter()
                .zip(novel)
                .filter(|(_, s)| s.config_type.as_deref().unwrap_or_default() == t)
                .map(|(g, _)| *g)
                .collect();
            let sc: Vec<f64> = si.iter().chain(&sel).copied().collect();
            let lb: Vec<bool> = si
                .iter()
                .map(|_| false)
                .chain(sel.iter().map(|_| true))
                .collect();
            (t.clone(), roc_auc(&sc, &lb).unwrap())
        })
        .collect();
    let flat = |g: &[Vec<f64>]| g.iter().flatten().copied().collect::<Vec<f64>>();
    let (ai, an, ei, en) = (flat(&gi), flat(&gn), flat(err_in), flat(err_novel));
    let a: Vec<f64> = ai.iter().chain(&an).copied().collect();
    let e: Vec<f64> = ei.iter().chain(&en).copied().collect();
    Row {
        name: name.to_string(),
        auc,
        auc_by_type,
        rho: spearman(&a, &e).unwrap(),
        rho_in: spearman(&ai, &ei).unwrap(),
        rho_novel: spearman(&an, &en).unwrap(),
        median_in: median(ai),
        median_novel: median(an),
    }
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<34} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "estimator", "AUC", "rho all", "rho in", "rho nov", "med g in", "med g nov"
    );
    for r in rows {
        println!(
            "{:<34} {:>7.3} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>9.3}",
            r.name, r.auc, r.rho, r.rho_in, r.rho_novel, r.median_in, r.median_novel
        );
    }
    if rows.iter().any(|r| r.auc_by_type.len() > 1) {
        println!("ROC-AUC per novel config_type (vs the in-distribution structures):");
        print!("{:<34}", "estimator");
        for (t, _) in &rows[0].auc_by_type {
            print!(" {:>14}", &t[..t.len().min(14)]);
        }
        println!();
        for r in rows {
            print!("{:<34}", r.name);
            for (_, a) in &r.auc_by_type {
                print!(" {a:>14.3}");
            }
            println!();
        }
    }
}

fn log_volume(rows: &[f64], m: usize) -> f64 {
    let a = faer::Mat::<f64>::from_fn(m, m, |i, j| rows[i * m + j]);
    let lu = a.partial_piv_lu();
    (0..m).map(|k| lu.U()[(k, k)].abs().ln()).sum()
}

#[test]
#[ignore = "measurement: passes needed per batch size and candidate_gamma on liquid Li"]
fn measure_candidate_threshold() {
    let train = read("li/train.xyz");
    let model = fit(
        &["Li".to_string()],
        &BasisConfig::default(),
        &FitConfig::default(),
        &train,
        &[],
        false,
    )
    .unwrap();
    let table = crate::uq::descriptor_table(&model, &train).unwrap();
    let sr = &table.per_species[0];
    let (n, m) = (sr.len(), sr.m);
    let ids: Vec<RowId> = (0..n)
        .map(|i| RowId {
            structure: 0,
            atom: i as u32,
        })
        .collect();
    for (batch, cand) in [
        (5000usize, 1.01),
        (5000, 0.9),
        (5000, 0.7),
        (5000, 0.5),
        (2000, 0.9),
        (2000, 0.7),
        (2000, 0.5),
        (500, 0.7),
        (500, 0.5),
    ] {
        let t = Instant::now();
        let mut mv = StreamingMaxVol::new(
            m,
            batch,
            Options {
                candidate: cand,
                ..Default::default()
            },
            "Li",
        )
        .unwrap();
        println!("batch {batch} candidate {cand}");
        for pass in 0..12 {
            mv.begin_pass();
            mv.push(&sr.rows, &ids).unwrap();
            let st = mv.end_pass().unwrap();
            let a = mv.clone().into_active_rows().unwrap();
            let mut g = vec![0.0; n];
            maxvol::gamma_batch(&a.inverse, m, &sr.rows, &mut g, &mut vec![]);
            println!(
                "  pass {pass}: cand {} swaps {} logdet {:.4} max gamma now {:.4} t {:.2}",
                st.candidates,
                st.swaps,
                log_volume(&a.rows, m),
                g.iter().copied().fold(0.0, f64::max),
                t.elapsed().as_secs_f64()
            );
            if st.verified {
                break;
            }
        }
    }
}

#[test]
#[ignore = "measurement on tests/data/li (about a minute); run with --ignored --nocapture"]
fn measure_li() {
    let train = read("li/train.xyz");
    let valid = read("li/valid.xyz");
    let test = read("li/test.xyz");
    let novel = read("li/novel.xyz");
    let t = Instant::now();
    let model = fit(
        &["Li".to_string()],
        &BasisConfig::default(),
        &FitConfig::default(),
        &train,
        &valid,
        false,
    )
    .unwrap();
    println!(
        "fit: {} functions, {:.1} s",
        model.nfuncs(0),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let table = crate::uq::descriptor_table(&model, &train).unwrap();
    println!(
        "descriptors of {} training atoms: {:.2} s",
        table.per_species[0].len(),
        t.elapsed().as_secs_f64()
    );
    // MaxVol timings.
    let sr = &table.per_species[0];
    let (n, m) = (sr.len(), sr.m);
    let t = Instant::now();
    let lu = maxvol::lu_pivots(&sr.rows, n, m, 1e-10);
    println!(
        "LU pivots of {n} x {m}: {:.2} s (smallest relative pivot {:.1e})",
        t.elapsed().as_secs_f64(),
        lu.smallest
    );
    let t = Instant::now();
    let dense = maxvol::maxvol(&sr.rows, n, m, &Options::default(), "species Li").unwrap();
    println!(
        "dense MaxVol: {:.2} s, {} swaps, converged {}, cond {:.1e}, log|det| {:.3}",
        t.elapsed().as_secs_f64(),
        dense.swaps.iters,
        dense.swaps.converged,
        dense.inverse.cond,
        log_volume(&maxvol::gather(&sr.rows, m, &dense.pivots), m)
    );
    let mut g = None;
    for batch in [20_000, 5_000, 2_000, 500] {
        let settings = Settings {
            batch,
            ..Default::default()
        };
        let t = Instant::now();
        let x = GlobalActiveSets::build(&model, &table, &settings, false).unwrap();
        let gt = x.gamma_table(&table);
        println!(
            "global active set, batch {batch:>5}: {:.2} s, {} passes, verified {}, log|det| {:.3}, max gamma on train {:.4}",
            t.elapsed().as_secs_f64(),
            x.info.passes,
            x.info.verified[0],
            log_volume(&x.species[0].rows, m),
            gt[0].iter().copied().fold(0.0, f64::max)
        );
        if g.is_none() {
            g = Some(x);
        }
    }
    let g = g.unwrap();
    // Batched and single-row gamma cost.
    let tt = crate::uq::descriptor_table(&model, &test).unwrap();
    let rows = &tt.per_species[0];
    let mut out = vec![0.0; rows.len()];
    let mut sc = GammaScratch::new(m);
    g.gamma_batch(0, &rows.rows, &mut out, &mut sc);
    let reps = 20;
    let t = Instant::now();
    for _ in 0..reps {
        g.gamma_batch(0, &rows.rows, &mut out, &mut sc);
    }
    let per_b = t.elapsed().as_secs_f64() / (reps * rows.len()) as f64;
    let t = Instant::now();
    let mut acc = 0.0;
    for _ in 0..reps {
        for r in 0..rows.len() {
            acc += g.gamma(0, rows.row(r), &mut sc);
        }
    }
    let per_s = t.elapsed().as_secs_f64() / (reps * rows.len()) as f64;
    let pool = rayon::current_num_threads();
    println!(
        "gamma cost per atom (m = {m}, {} atoms, rayon threads {pool}): batched GEMM {:.2} us, single-row {:.2} us (checksum {acc:.3})",
        rows.len(),
        per_b * 1e6,
        per_s * 1e6
    );
    let t = Instant::now();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| {
            for _ in 0..reps {
                g.gamma_batch(0, &rows.rows, &mut out, &mut sc);
            }
        });
    println!(
        "  batched GEMM on one thread: {:.2} us/atom",
        t.elapsed().as_secs_f64() / (reps * rows.len()) as f64 * 1e6
    );
    // Grades.
    let err_in = crate::uq::force_errors(&model, &test).unwrap();
    let err_nov = crate::uq::force_errors(&model, &novel).unwrap();
    let mut rows_out = vec![evaluate_grader(
        "global gamma",
        &model,
        &*global_grader(&g),
        &test,
        &novel,
        &err_in,
        &err_nov,
    )];
    for k in 4..=8 {
        let t = Instant::now();
        let c = ClusteredActiveSets::build(
            &model,
            &table,
            &[],
            &Partition::KMeans(k),
            &Settings::default(),
            2024,
            false,
        )
        .unwrap();
        let counts: Vec<String> = c.species[0].counts.iter().map(|c| c.to_string()).collect();
        println!(
            "k-means K={k}: {:.1} s, clusters [{}], notes {:?}",
            t.elapsed().as_secs_f64(),
            counts.join(" "),
            c.info.notes
        );
        rows_out.push(evaluate_grader(
            &format!("gamma_local k-means K={k}"),
            &model,
            &*local_grader(&c),
            &test,
            &novel,
            &err_in,
            &err_nov,
        ));
    }
    print_rows(&rows_out);
}

#[test]
#[ignore = "measurement on tests/data/almg (several minutes); run with --ignored --nocapture"]
fn measure_almg() {
    let train = read("almg/train.xyz");
    let valid = read("almg/valid.xyz");
    let test = read("almg/test.xyz");
    let basis = BasisConfig {
        nmax: vec![6, 4, 2],
        lmax: vec![0, 2, 1],
        ..Default::default()
    };
    let species = vec!["Mg".to_string(), "Al".to_string()];
    let mut types: Vec<String> = train.iter().filter_map(|s| s.config_type.clone()).collect();
    types.sort();
    types.dedup();
    let only = std::env::var("ACEUQ_HOLDOUT").ok();
    let mut summary: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for h in types
        .iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == t.as_str()))
    {
        let is_h = |s: &Structure| s.config_type.as_deref() == Some(h.as_str());
        let tr: Vec<Structure> = train.iter().filter(|s| !is_h(s)).cloned().collect();
        let va: Vec<Structure> = valid.iter().filter(|s| !is_h(s)).cloned().collect();
        let inside: Vec<Structure> = test.iter().filter(|s| !is_h(s)).cloned().collect();
        let novel: Vec<Structure> = train
            .iter()
            .chain(&valid)
            .chain(&test)
            .filter(|s| is_h(s))
            .cloned()
            .collect();
        let t = Instant::now();
        let model = fit(&species, &basis, &FitConfig::default(), &tr, &va, false).unwrap();
        let table = crate::uq::descriptor_table(&model, &tr).unwrap();
        println!(
            "\n== hold out {h}: fit {} functions/species on {} structures ({:.1} s); atoms Mg {} Al {}",
            model.nfuncs(0),
            tr.len(),
            t.elapsed().as_secs_f64(),
            table.per_species[0].len(),
            table.per_species[1].len()
        );
        let err_in = crate::uq::force_errors(&model, &inside).unwrap();
        let err_nov = crate::uq::force_errors(&model, &novel).unwrap();
        let fe = |e: &[Vec<f64>]| {
            let v: Vec<f64> = e.iter().flatten().copied().collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        println!(
            "mean |force error|: in-distribution {:.3} eV/Å, novel {:.3} eV/Å",
            fe(&err_in),
            fe(&err_nov)
        );
        let settings = Settings::default();
        let g = GlobalActiveSets::build(&model, &table, &settings, false).unwrap();
        let mut rows = vec![evaluate_grader(
            "global gamma",
            &model,
            &*global_grader(&g),
            &inside,
            &novel,
            &err_in,
            &err_nov,
        )];
        for k in [4, 6] {
            let c = ClusteredActiveSets::build(
                &model,
                &table,
                &[],
                &Partition::KMeans(k),
                &settings,
                2024,
                false,
            )
            .unwrap();
            let cl: Vec<usize> = c.species.iter().map(|s| s.sets.len()).collect();
            rows.push(evaluate_grader(
                &format!("gamma_local k-means K={k} {cl:?}"),
                &model,
                &*local_grader(&c),
                &inside,
                &novel,
                &err_in,
                &err_nov,
            ));
        }
        let labels = structure_labels(&tr);
        for f in [30, 300] {
            let st = Settings {
                min_cluster_atoms: f,
                ..Default::default()
            };
            let c = ClusteredActiveSets::build(
                &model,
                &table,
                &labels,
                &Partition::ConfigType,
                &st,
                2024,
                false,
            )
            .unwrap();
            let cl: Vec<usize> = c.species.iter().map(|s| s.sets.len()).collect();
            rows.push(evaluate_grader(
                &format!("gamma_local config_type f={f} {cl:?}"),
                &model,
                &*local_grader(&c),
                &inside,
                &novel,
                &err_in,
                &err_nov,
            ));
        }
        print_rows(&rows);
        for r in &rows {
            let key = r.name.split(" [").next().unwrap().to_string();
            summary.entry(key).or_default().push((r.auc, r.rho));
        }
    }
    println!("\n== mean over held-out config_types");
    for (k, v) in &summary {
        let n = v.len() as f64;
        println!(
            "{k:<34} AUC {:.3}  rho {:.3}  (n = {})",
            v.iter().map(|x| x.0).sum::<f64>() / n,
            v.iter().map(|x| x.1).sum::<f64>() / n,
            v.len()
        );
    }
}

/// Rows made on the fly from real descriptors with multiplicative noise, never stored.
struct Synthetic<'a> {
    base: &'a SpeciesRows,
    n: usize,
    chunk: usize,
    noise: f64,
}

impl RowSource for Synthetic<'_> {
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError> {
        let m = self.base.m;
        let nb = self.base.len();
        for (c, c0) in (0..self.n).step_by(self.chunk).enumerate() {
            let c1 = (c0 + self.chunk).min(self.n);
            let mut rng = ChaCha8Rng::seed_from_u64(c as u64);
            let mut sr = SpeciesRows {
                m,
                ..Default::default()
            };
            sr.rows.reserve((c1 - c0) * m);
            for r in c0..c1 {
                let b = self.base.row(r % nb);
                for &v in b {
                    let x: f64 = StandardNormal.sample(&mut rng);
                    sr.rows.push(v * (1.0 + self.noise * x));
                }
                sr.structure.push(((r - c0) / 250) as u32);
                sr.atom.push(((r - c0) % 250) as u32);
            }
            let t = DescriptorTable {
                per_species: vec![sr],
            };
            sink(Chunk {
                table: &t,
                first: (c0 / 250) as u32,
                labels: &[],
            })?;
        }
        Ok(())
    }
    fn rows_hint(&self) -> Option<u64> {
        Some(self.n as u64)
    }
}

#[test]
#[ignore = "measurement: streaming MaxVol over 1e6 rows of m = 274 (minutes); ACEUQ_ROWS overrides the count"]
fn measure_streaming_1e6() {
    let train = read("li/train.xyz");
    let model = fit(
        &["Li".to_string()],
        &BasisConfig::default(),
        &FitConfig::default(),
        &train,
        &[],
        false,
    )
    .unwrap();
    let table = crate::uq::descriptor_table(&model, &train).unwrap();
    let n: usize = std::env::var("ACEUQ_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut src = Synthetic {
        base: &table.per_species[0],
        n,
        chunk: 10_000,
        noise: 0.02,
    };
    // Cost of producing the rows alone (one pass, no MaxVol).
    let t = Instant::now();
    let mut count = 0usize;
    src.pass(&mut |c| {
        count += c.table.per_species[0].len();
        Ok(())
    })
    .unwrap();
    let produce = t.elapsed().as_secs_f64();
    let settings = Settings::default();
    let t = Instant::now();
    let g = GlobalActiveSets::build_from_source(&model, &mut src, &settings, false).unwrap();
    let total = t.elapsed().as_secs_f64();
    println!(
        "{count} rows x {}: producing one pass {produce:.1} s; build {total:.1} s in {} passes (verified {}), i.e. {:.1} s per pass net of producing, batch {}",
        table.per_species[0].m,
        g.info.passes,
        g.info.verified[0],
        (total - produce * g.info.passes as f64) / g.info.passes as f64,
        settings.batch
    );
    println!("notes: {:?}", g.info.notes);
}

/// Normalized mutual information of two labelings (arithmetic-mean normalization).
fn nmi(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let mut joint: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    let (mut pa, mut pb): (BTreeMap<usize, f64>, BTreeMap<usize, f64>) = Default::default();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1.0 / n;
        *pa.entry(x).or_default() += 1.0 / n;
        *pb.entry(y).or_default() += 1.0 / n;
    }
    let h = |p: &BTreeMap<usize, f64>| -p.values().map(|v| v * v.ln()).sum::<f64>();
    let mi: f64 = joint
        .iter()
        .map(|(&(x, y), &p)| p * (p / (pa[&x] * pb[&y])).ln())
        .sum();
    let d = 0.5 * (h(&pa) + h(&pb));
    if d > 0.0 { mi / d } else { 0.0 }
}

/// Per-atom grades and clusters of `data` under `c`.
fn local_atoms(model: &Model, c: &ClusteredActiveSets, data: &[Structure]) -> (Vec<f64>, Vec<u32>) {
    let t = crate::uq::descriptor_table(model, data).unwrap();
    let sr = &t.per_species[0];
    let (mut g, mut k) = (vec![0.0; sr.len()], vec![0u32; sr.len()]);
    c.gamma_local_batch(0, &sr.rows, &mut g, &mut k, &mut GammaScratch::new(sr.m));
    (g, k)
}

/// k-means clustered sets of `table` with `k` clusters in feature space `f` (seed 2024).
fn kmeans_sets(
    model: &Model,
    table: &DescriptorTable,
    k: usize,
    f: super::ClusterFeatures,
) -> ClusteredActiveSets {
    let st = Settings {
        cluster_features: f,
        ..Default::default()
    };
    ClusteredActiveSets::build(model, table, &[], &Partition::KMeans(k), &st, 2024, false).unwrap()
}

#[test]
#[ignore = "measurement: k-means feature spaces on heterogeneous Li (a few minutes); run with --ignored --nocapture"]
fn measure_cluster_features() {
    use super::ClusterFeatures as F;
    let train = read("li/train.xyz");
    let valid = read("li/valid.xyz");
    let test = read("li/test.xyz");
    let novel = read("li/novel.xyz");
    let ty = |s: &Structure| s.config_type.clone().unwrap_or_default();
    let mut types: Vec<String> = novel.iter().map(ty).collect();
    types.sort();
    types.dedup();
    // Every other frame of each phase trains, the rest is held out.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let (mut het, mut held) = (train.clone(), test.clone());
    for s in &novel {
        let k = seen.entry(ty(s)).or_default();
        if (*k).is_multiple_of(2) {
            het.push(s.clone())
        } else {
            held.push(s.clone())
        }
        *k += 1;
    }
    let features = [F::Standardized, F::BodyOrder, F::Whitened];
    let model = fit(
        &["Li".to_string()],
        &BasisConfig::default(),
        &FitConfig::default(),
        &het,
        &valid,
        false,
    )
    .unwrap();
    let table = crate::uq::descriptor_table(&model, &het).unwrap();
    // Environment type of every held-out atom.
    let mut truth = vec![];
    for s in &held {
        let t = types
            .iter()
            .position(|x| *x == ty(s))
            .map_or(types.len(), |p| p);
        truth.extend(std::iter::repeat_n(t, s.len()));
    }
    println!(
        "== separation of held-out environment types (NMI of cluster vs config_type; liquid = test frames)"
    );
    for k in [4, 6, 8] {
        for f in features {
            let c = kmeans_sets(&model, &table, k, f);
            let (_, cl) = local_atoms(&model, &c, &held);
            let cl: Vec<usize> = cl.iter().map(|&x| x as usize).collect();
            println!(
                "K={k} {:>12}: clusters {:?} NMI {:.3}",
                f.name(),
                c.species[0].counts,
                nmi(&cl, &truth)
            );
        }
    }
    println!(
        "\n== novelty, each phase held out in turn (train: liquid + the other phases' even frames)"
    );
    println!(
        "{:<24} {:>6} {:>12} {:>8} {:>8}",
        "held out / method", "err x", "", "AUC str", "AUC atom"
    );
    for hold in &types {
        let mut tr = train.clone();
        let mut inside = test.clone();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut nov = vec![];
        for s in &novel {
            if ty(s) == *hold {
                nov.push(s.clone());
                continue;
            }
            let k = seen.entry(ty(s)).or_default();
            if (*k).is_multiple_of(2) {
                tr.push(s.clone())
            } else {
                inside.push(s.clone())
            }
            *k += 1;
        }
        let model = fit(
            &["Li".to_string()],
            &BasisConfig::default(),
            &FitConfig::default(),
            &tr,
            &valid,
            false,
        )
        .unwrap();
        let table = crate::uq::descriptor_table(&model, &tr).unwrap();
        let ei = crate::uq::force_errors(&model, &inside).unwrap();
        let en = crate::uq::force_errors(&model, &nov).unwrap();
        let mean = |e: &[Vec<f64>]| {
            let v: Vec<f64> = e.iter().flatten().copied().collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let ratio = mean(&en) / mean(&ei);
        let score = |gi: &[Vec<f64>], gn: &[Vec<f64>]| {
            let smax = |g: &Vec<f64>| g.iter().copied().fold(0.0, f64::max);
            let s: Vec<f64> = gi.iter().map(smax).chain(gn.iter().map(smax)).collect();
            let l: Vec<bool> = gi
                .iter()
                .map(|_| false)
                .chain(gn.iter().map(|_| true))
                .collect();
            let a: Vec<f64> = gi
                .iter()
                .flatten()
                .chain(gn.iter().flatten())
                .copied()
                .collect();
            let la: Vec<bool> = gi
                .iter()
                .flatten()
                .map(|_| false)
                .chain(gn.iter().flatten().map(|_| true))
                .collect();
            (roc_auc(&s, &l).unwrap(), roc_auc(&a, &la).unwrap())
        };
        let g = GlobalActiveSets::build(&model, &table, &Settings::default(), false).unwrap();
        let gg = global_grader(&g);
        let (s, a) = score(
            &per_atom(&model, &inside, &*gg),
            &per_atom(&model, &nov, &*gg),
        );
        println!("{hold:<24} {ratio:>6.2} {:>12} {s:>8.3} {a:>8.3}", "gamma");
        for k in [4, 8] {
            for f in features {
                let c = kmeans_sets(&model, &table, k, f);
                let lg = local_grader(&c);
                let (s, a) = score(
                    &per_atom(&model, &inside, &*lg),
                    &per_atom(&model, &nov, &*lg),
                );
                println!(
                    "{:<24} {:>6} {:>12} {s:>8.3} {a:>8.3}",
                    "",
                    "",
                    format!("K={k} {}", f.name())
                );
            }
        }
    }
}

#[test]
fn almg_partitions_keep_several_clusters_per_species_and_differ_from_gamma() {
    // Any model of the Al-Mg basis shows the structure that collapsed every partition into one
    // cluster: pure-element neighbourhoods span only the functions of their own element.
    let model = random_model(&["Al", "Mg"], &tiny_cfg(), 11);
    let train = read("almg/train.xyz");
    let test = read("almg/test.xyz");
    let table = crate::uq::descriptor_table(&model, &train).unwrap();
    let tt = crate::uq::descriptor_table(&model, &test).unwrap();
    let labels = structure_labels(&train);
    let st = Settings::default();
    let g = GlobalActiveSets::build(&model, &table, &st, false).unwrap();
    for p in [
        Partition::KMeans(2),
        Partition::KMeans(4),
        Partition::ConfigType,
    ] {
        let c = ClusteredActiveSets::build(&model, &table, &labels, &p, &st, 3, false).unwrap();
        for (s, sc) in c.species.iter().enumerate() {
            let what = format!("{p:?}, species {}", model.species[s]);
            assert!(sc.sets.len() > 1, "{what}: {:?}", c.info.notes);
            // A pure-element cluster (rank-deficient) and a mixed one exist.
            assert!(sc.sets.iter().any(|x| x.proj.is_some()), "{what}");
            if matches!(p, Partition::KMeans(_)) {
                let mut classes = sc.chem.clone();
                classes.sort_unstable();
                classes.dedup();
                assert!(classes.len() >= 2, "{what}: {:?}", sc.chem);
            }
            // Build atoms grade <= tol against their own clusters.
            let sr = &table.per_species[s];
            let (mut gl, mut k) = (vec![0.0; sr.len()], vec![0u32; sr.len()]);
            let mut scratch = GammaScratch::new(sr.m);
            c.gamma_local_batch(s, &sr.rows, &mut gl, &mut k, &mut scratch);
            if matches!(p, Partition::KMeans(_)) {
                let worst = gl.iter().copied().fold(0.0, f64::max);
                assert!(worst <= 1.01 * (1.0 + 1e-6), "{what}: {worst}");
            }
            // On the test atoms gamma_local is not a relabelled gamma.
            let sr = &tt.per_species[s];
            let (mut gl, mut k) = (vec![0.0; sr.len()], vec![0u32; sr.len()]);
            c.gamma_local_batch(s, &sr.rows, &mut gl, &mut k, &mut scratch);
            let mut gg = vec![0.0; sr.len()];
            g.gamma_batch(s, &sr.rows, &mut gg, &mut scratch);
            let rho = spearman(&gl, &gg).unwrap();
            assert!(rho < 0.99, "{what}: Spearman(gamma_local, gamma) = {rho}");
        }
    }
}

#[test]
fn more_clusters_than_the_data_supports_and_a_model_without_clusters_are_clear_errors() {
    let t = blobs(4, &[0.0, 30.0], 100, 10, 5);
    let ms = [FuncLayout::plain(4)];
    let e = build_clustered(
        &names()[..1],
        &ms,
        &mut TableSource {
            table: &t,
            labels: &[],
        },
        &Partition::KMeans(8),
        &Settings::default(),
        1,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("K = 8 k-means clusters need at least K × min_cluster_atoms = 8 × 30 = 240 atoms of species")
            && e.contains("the data have 200: use K <= 6"),
        "{e}"
    );
    let uq = crate::uq::UqModel::default();
    let model = random_model(&["Al"], &tiny_cfg(), 1);
    let mut out = vec![0.0; 1];
    let mut scratch = crate::uq::UqScratch::new(&model, &uq);
    let e = uq
        .evaluate_rows(
            crate::uq::Method::GammaLocal,
            0,
            &vec![0.0; model.nfuncs(0)],
            &mut out,
            &mut scratch,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no 'gamma_local' uncertainty") && e.contains("--clusters"),
        "{e}"
    );
}
