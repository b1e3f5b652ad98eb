//! `aceuq export`: a model as pacemaker's `.yace` for ML-PACE's `pair_style pace`, with the
//! fidelity of the export measured and printed (see `pace::export` for what is exact and what
//! is not).

use super::{check_number, load_model};
use crate::pace::Family;
use crate::pace::export::{self, CoreExport, ExportOptions, Fidelity};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Arguments of `aceuq export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Model file (*.aceuq).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Output pacemaker potential (*.yace).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Number of pacemaker radial base functions the radial functions are fitted with.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    pub radial_base: usize,
    /// Pacemaker radial base family: ChebExpCos (the default: it has our cosine envelope, so
    /// the fit is exact to ~1e-9), ChebPow, ChebLinear or SBessel.
    #[arg(long, default_value = "ChebExpCos")]
    pub radial_family: String,
    /// The family's parameter λ (default: 0.01 for ChebExpCos, nearly linear in r like our
    /// functions; 2 for ChebPow; unused by the others).
    #[arg(long, allow_negative_numbers = true)]
    pub radial_parameter: Option<f64>,
    /// `dcut` of every bond (Å): ChebExpCos's second envelope and the width over which ML-PACE
    /// shifts its ZBL to zero at the cutoff. Small, because our functions have no such envelope.
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
    pub dcut: f64,
    /// Spacing of ML-PACE's radial look-up tables (`deltaSplineBins`, Å).
    #[arg(long, default_value_t = 0.001, allow_negative_numbers = true)]
    pub spline_step: f64,
    /// Leave the ZBL core out (needed when a species is not an element symbol).
    #[arg(long)]
    pub no_core: bool,
    /// Also compare on these structures (extended XYZ; no labels needed); may be repeated.
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Largest accepted energy difference (eV/atom) between the model and the export.
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
    pub max_energy_error: f64,
    /// Largest accepted force-component difference (eV/Å) between the model and the export.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub max_force_error: f64,
    /// Write the file even when the differences exceed the limits.
    #[arg(long)]
    pub allow_inexact: bool,
}

fn fidelity_line(f: &Fidelity) -> String {
    format!(
        "max |ΔE| {:.1e} eV/atom (one atom's energy {:.1e} eV), max |ΔF| {:.1e} eV/Å (RMS {:.1e}; \
         RMS force {:.3} eV/Å), max |Δvirial| {:.1e} eV/atom",
        f.max_de_per_atom, f.max_de_atom, f.max_df, f.rms_df, f.rms_f, f.max_dvirial_per_atom
    )
}

pub fn run(a: &ExportArgs) -> Result<()> {
    if crate::pace::is_pacemaker_potential(&a.model) {
        bail!(
            "{} is already a pacemaker potential: `aceuq export` converts aceuq models (*.aceuq)",
            a.model.display()
        );
    }
    if a.output.extension().and_then(|e| e.to_str()) != Some("yace") {
        bail!(
            "--output {}: the file must end in .yace (ML-PACE tells the format by the extension)",
            a.output.display()
        );
    }
    let family = Family::from_name(&a.radial_family).with_context(|| {
        format!(
            "--radial-family {}: not a pacemaker radial family (ChebExpCos, ChebPow, ChebLinear, \
             SBessel)",
            a.radial_family
        )
    })?;
    check_number(
        "--max-energy-error",
        a.max_energy_error,
        a.max_energy_error > 0.0,
        "a positive number of eV/atom",
    )?;
    check_number(
        "--max-force-error",
        a.max_force_error,
        a.max_force_error > 0.0,
        "a positive number of eV/Å",
    )?;
    let lambda = a.radial_parameter.unwrap_or(match family {
        Family::ChebExpCos => 0.01,
        Family::ChebPow => 2.0,
        _ => 1.0,
    });
    let pot = load_model(&a.model)?;
    let model = &pot.model;
    let opts = ExportOptions {
        family,
        lambda,
        nradbase: a.radial_base,
        dcut: a.dcut,
        delta: a.spline_step,
        core: !a.no_core,
        ..Default::default()
    };
    // The comparison structures, read before the work (a bad file fails fast).
    let mut data_frames = vec![];
    for f in &a.data {
        let frames = crate::io::extxyz::read_file(f, &Default::default())?;
        if frames.is_empty() {
            bail!(
                "--data {}: the file holds no structures (it gives the structures to compare the \
                 export on)",
                f.display()
            );
        }
        data_frames.extend(frames);
    }
    let ex = export::export(model, &opts).context("cannot export")?;
    let methods: Vec<&str> = pot.uq.methods().iter().map(|x| x.name()).collect();
    if !methods.is_empty() {
        println!(
            "note: the potential only; its uncertainty estimators ({}) are not exported \
             (ML-PACE's extrapolation grade needs pacemaker's B-basis and active set)",
            methods.join(", ")
        );
    }
    println!(
        "{} -> {}: {} species, {} radial base functions ({:?}, λ = {lambda}), dcut {} Å, \
         deltaSplineBins {} Å",
        a.model.display(),
        a.output.display(),
        model.nspecies(),
        a.radial_base,
        family,
        a.dcut,
        a.spline_step
    );
    for (s, &(r1, nf, nc)) in ex.counts.iter().enumerate() {
        println!(
            "  {:<4} {} aceuq functions -> {r1} rank-1 + {nf} C-tilde functions ({nc} \
             m-combinations), one density, linear embedding, E0 {} eV",
            model.species[s],
            model.nfuncs(s),
            model.e0[s]
        );
    }
    println!(
        "angular part: exact (collected C-tilde coefficients: largest imaginary part {:.0e}, \
         largest m-sum != 0 part {:.0e}, relative; both dropped)",
        ex.max_imag_rel, ex.max_nonzero_msum_rel
    );
    println!("radial functions: least-squares fit (values and slopes) on a pacemaker base");
    println!(
        "  {:<7} {:>16} {:>8} {:>14} {:>14} {:>14}",
        "pair", "fit range (Å)", "r0", "max|Δg| ≥ r0", "max|Δg| < r0", "max|Δg'| 1/Å"
    );
    for p in &ex.pairs {
        let below = if p.r_lo < p.r0 {
            format!("{:.1e}", p.max_err_below)
        } else {
            "-".into()
        };
        println!(
            "  {:<7} {:>16} {:>8.3} {:>14.1e} {:>14} {:>14.1e}",
            format!("{}-{}", p.centre, p.neighbour),
            format!("[{:.3}, {:.3}]", p.r_lo, p.rc),
            p.r0,
            p.max_err_window,
            below,
            p.max_derr
        );
    }
    let ns = model.nspecies();
    let has_core = model
        .core
        .iter()
        .any(|c| c.z1 > 0 && c.z2 > 0 && c.r_out > 0.0);
    match &ex.core {
        CoreExport::Zbl(v) => {
            println!(
                "core: ML-PACE's `zbl` inner cutoff (same ZBL; the same energy whenever every \
                 neighbour is beyond our r_out; closer, ML-PACE blends the atom's energy from \
                 ACE to ZBL where aceuq adds a switched ZBL to ACE):"
            );
            for (p, &(r_in, d)) in v.iter().enumerate() {
                let c = &model.core[p];
                if c.r_out > 0.0 {
                    println!(
                        "  {}-{}: aceuq ZBL switched on over [{:.3}, {:.3}] Å; ML-PACE ACE \
                         beyond {r_in:.3} Å, ZBL alone below {:.3} Å",
                        model.species[p / ns],
                        model.species[p % ns],
                        c.r_in,
                        c.r_out,
                        r_in - d
                    );
                }
            }
        }
        CoreExport::None if has_core => {
            println!("core: left out (--no-core): the export has no short-range repulsion")
        }
        CoreExport::None => println!("core: none in the model, none exported"),
    }

    // Fidelity: generated structures and the user's, read back through aceuq's .yace reader.
    let probes = export::probe_structures(model, 20240611);
    let fid = export::compare(model, &ex.pace, &probes)?;
    println!(
        "generated structures ({} rattled bcc/fcc, {} atoms, no pair closer than its shortest \
         training distance):\n  {}",
        fid.structures,
        fid.atoms,
        fidelity_line(&fid)
    );
    let mut gated = vec![fid];
    if !data_frames.is_empty() {
        let (mut outside, mut inside) = (vec![], vec![]);
        for s in data_frames {
            if has_core && export::inside_core(model, &s)? {
                inside.push(s);
            } else {
                outside.push(s);
            }
        }
        if !outside.is_empty() {
            let f = export::compare(model, &ex.pace, &outside)?;
            println!(
                "--data, {} structures ({} atoms){}:\n  {}",
                f.structures,
                f.atoms,
                if has_core {
                    " with every pair beyond the core's r_out"
                } else {
                    ""
                },
                fidelity_line(&f)
            );
            gated.push(f);
        }
        if !inside.is_empty() {
            let f = export::compare(model, &ex.pace, &inside)?;
            println!(
                "--data, {} structures ({} atoms) with a pair inside the core region (not held \
                 to the limits: the short range differs by design):\n  {}",
                f.structures,
                f.atoms,
                fidelity_line(&f)
            );
        }
    }
    let probes = export::core_probe(model, &ex.pace)?;
    if !probes.is_empty() {
        println!("short range, isolated dimers (eV, aceuq vs export):");
        let mut line = String::new();
        let mut last = None;
        for p in &probes {
            if last.as_ref() != Some(&p.pair) {
                if !line.is_empty() {
                    println!("{line}");
                }
                line = format!("  {}-{}:", p.pair.0, p.pair.1);
                last = Some(p.pair.clone());
            }
            line += &format!("  r {:.3}: {:.4} vs {:.4}", p.r, p.native, p.exported);
        }
        println!("{line}");
    }
    let worst_e = gated.iter().map(|f| f.max_de_per_atom).fold(0.0, f64::max);
    let worst_f = gated.iter().map(|f| f.max_df).fold(0.0, f64::max);
    let ok = worst_e <= a.max_energy_error && worst_f <= a.max_force_error;
    if !ok && !a.allow_inexact {
        bail!(
            "the export differs from the model by up to {worst_e:.1e} eV/atom and {worst_f:.1e} \
             eV/Å (limits {} eV/atom, {} eV/Å): {} not written; more radial base functions \
             (--radial-base) or another family may fit better, or --allow-inexact writes it \
             anyway",
            a.max_energy_error,
            a.max_force_error,
            a.output.display()
        );
    }
    crate::io::container::write_atomic(&a.output, ex.text.as_bytes())
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    println!(
        "{}: wrote {} ({} bytes); in LAMMPS with ML-PACE: pair_style pace, pair_coeff * * {} {}",
        if ok {
            "within the limits"
        } else {
            "OUTSIDE the limits (--allow-inexact)"
        },
        a.output.display(),
        ex.text.len(),
        a.output.display(),
        model.species.join(" ")
    );
    Ok(())
}
