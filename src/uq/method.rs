//! The uncertainty methods and everything that names them, in one table: the name used in files
//! and LAMMPS inputs, the per-atom column name, the `aceuq fit` option that builds the estimator,
//! and the integer id of the C ABI (the method's position in [`Method::ALL`]). The C++ plugin
//! reads names and options through the ABI (`aceuq_method_name`, `aceuq_method_fit_option`)
//! instead of keeping its own copy.

use serde::{Deserialize, Serialize};

/// The uncertainty estimators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", clap(rename_all = "snake_case"))]
pub enum Method {
    /// Global D-optimality: MaxVol extrapolation grade.
    Gamma,
    /// Clustered local D-optimality: grade against the active set of the atom's cluster.
    GammaLocal,
    /// Ensemble force spread, calibrated.
    Ensemble,
    /// Latent distance to the nearest training environment, calibrated.
    Distance,
    /// Sparse Gaussian process on the features, predicting the force error.
    Gp,
    /// Closest approach to a neighbour relative to the shortest training distance of the pair.
    Contact,
}

/// How one method is named everywhere. Strings end in NUL so that the C ABI can hand out
/// pointers to them; the Rust accessors strip it.
struct Names {
    method: Method,
    /// Name in files, columns of tables, the LAMMPS input.
    name: &'static str,
    /// Column of the per-atom value in CSV and extended XYZ output.
    column: &'static str,
    /// The `aceuq fit` option that builds the estimator.
    fit_option: &'static str,
}

/// The table, in [`Method::ALL`] order (the C ABI's ids).
const TABLE: [Names; 6] = [
    Names {
        method: Method::Gamma,
        name: "gamma\0",
        column: "gamma\0",
        fit_option: "--active-set\0",
    },
    Names {
        method: Method::GammaLocal,
        name: "gamma_local\0",
        column: "gamma_local\0",
        fit_option: "--clusters K\0",
    },
    Names {
        method: Method::Ensemble,
        name: "ensemble\0",
        column: "sigma_ensemble\0",
        fit_option: "--ensemble N\0",
    },
    Names {
        method: Method::Distance,
        name: "distance\0",
        column: "sigma_distance\0",
        fit_option: "--distance\0",
    },
    Names {
        method: Method::Gp,
        name: "gp\0",
        column: "sigma_gp\0",
        fit_option: "--gp\0",
    },
    Names {
        method: Method::Contact,
        name: "contact\0",
        column: "contact\0",
        fit_option: "--contact\0",
    },
];

fn strip(s: &'static str) -> &'static str {
    &s[..s.len() - 1]
}

impl Method {
    /// All methods in a fixed order: the order of reports and the C ABI's ids.
    pub const ALL: [Method; 6] = [
        Method::Gamma,
        Method::GammaLocal,
        Method::Ensemble,
        Method::Distance,
        Method::Gp,
        Method::Contact,
    ];

    fn names(self) -> &'static Names {
        let n = &TABLE[self.id()];
        debug_assert_eq!(n.method, self);
        n
    }

    /// Position in [`Method::ALL`]: the method's id in the C ABI.
    pub fn id(self) -> usize {
        self as usize
    }

    /// The method of a C ABI id.
    pub fn from_id(id: i64) -> Option<Method> {
        usize::try_from(id)
            .ok()
            .and_then(|k| Method::ALL.get(k).copied())
    }

    /// Name used in files, columns and the LAMMPS input.
    pub fn name(self) -> &'static str {
        strip(self.names().name)
    }

    /// Parse a name as used in files and the LAMMPS input.
    pub fn from_name(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Column name of the per-atom value in CSV and extended XYZ output.
    pub fn column(self) -> &'static str {
        strip(self.names().column)
    }

    /// The `aceuq fit` option that builds this method's estimator, e.g. `--clusters K`.
    pub fn fit_option(self) -> &'static str {
        strip(self.names().fit_option)
    }

    /// [`Method::name`] as a NUL-terminated string (for the C ABI).
    pub fn name_nul(self) -> &'static str {
        self.names().name
    }

    /// [`Method::fit_option`] as a NUL-terminated string (for the C ABI).
    pub fn fit_option_nul(self) -> &'static str {
        self.names().fit_option
    }

    /// Every name, comma separated (for messages listing what is known).
    pub fn known() -> String {
        Method::ALL.map(|m| m.name()).join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_id_order_and_names_round_trip() {
        for (k, m) in Method::ALL.into_iter().enumerate() {
            assert_eq!(TABLE[k].method, m);
            assert_eq!(m.id(), k);
            assert_eq!(Method::from_id(k as i64), Some(m));
            assert_eq!(Method::from_name(m.name()), Some(m));
            for s in [m.name_nul(), m.fit_option_nul(), TABLE[k].column] {
                assert!(s.ends_with('\0') && !s[..s.len() - 1].contains('\0'));
            }
        }
        assert_eq!(Method::from_id(6), None);
        assert_eq!(Method::from_id(-1), None);
        assert_eq!(
            Method::known(),
            "gamma, gamma_local, ensemble, distance, gp, contact"
        );
    }
}
