/* -*- c++ -*- ----------------------------------------------------------
   aceuq: pair style ace/uq (linear ACE with per-atom uncertainty).

   Only LAMMPS glue lives here: argument parsing, type mapping, the full
   neighbour list turned into a compressed list for the Rust library, force
   scattering and energy/virial tallies, per-atom uncertainty arrays exposed
   to fix pair and fix ace/uq/watch. The science is in libaceuq (src/).
------------------------------------------------------------------------- */

// The PairStyle() block is LAMMPS's usual style registration for a source
// build (untested and unsupported, see cmake/README.md); the plugin build
// never defines PAIR_CLASS and registers the style in aceuqplugin.cpp.
#ifdef PAIR_CLASS
// clang-format off
PairStyle(ace/uq,PairAceUq);
// clang-format on
#else

#ifndef LMP_PAIR_ACE_UQ_H
#define LMP_PAIR_ACE_UQ_H

#include "pair.h"

#include <cstdint>
#include <string>
#include <vector>

struct aceuq_model_t;

namespace LAMMPS_NS {

class PairAceUq : public Pair {
 public:
  // Number of uncertainty methods known to the library (aceuq_method_t).
  static constexpr int NMETHODS = 6;

  explicit PairAceUq(class LAMMPS *);
  ~PairAceUq() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  void *extract(const char *, int &) override;
  void *extract_peratom(const char *, int &) override;
  double memory_usage() override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // Used by fix ace/uq/watch.
  aceuq_model_t *model_handle() const { return model; }
  int species_of_type(int type) const { return map[type]; }
  int has_method(int m) const { return available[m]; }
  // Changes whenever pair_coeff loads a model (on every rank alike): a watch's verdict on a
  // configuration holds for the model that judged it only.
  uint64_t model_generation() const { return generation; }
  // Ask for method m to be computed in the next force evaluation.
  void request_uq(int m) { uq_flag[m] = 1; }
  // Per-atom values of method m from the last evaluation that computed it (nlocal entries).
  const double *uq_values(int m) const { return uq_arrays[m].data(); }
  bigint uq_step(int m) const { return uq_last_step[m]; }
  // From now on, whenever gamma_local is computed, also keep the gamma_local cluster of every
  // atom (an index into its species' clusters); nothing is copied unless asked for.
  void want_gamma_local_clusters() { cluster_wanted = 1; }
  // Clusters from the last evaluation that kept them (nlocal entries) and its step.
  const int *gamma_local_clusters() const { return cluster_array.data(); }
  bigint gamma_local_cluster_step() const { return cluster_last_step; }
  // Per local atom, 1 if it is a model atom without a model-species neighbour inside the cutoff
  // (all its uncertainties are 0), from the last evaluation that computed an uncertainty.
  const int *lone_atoms() const { return lone_array.data(); }
  bigint lone_step() const { return lone_last_step; }
  static const char *method_name(int m);
  // The `aceuq fit` option that builds method m.
  static const char *method_fit_option(int m);
  static int method_id(const std::string &name);
  // Every method name, comma separated (for error messages).
  static std::string method_names();

 protected:
  uint64_t generation = 0;
  void resolve_uq_selection();
  aceuq_model_t *model;
  std::string model_file;
  std::vector<int> map;    // LAMMPS type -> model species (-1: NULL, not handled)
  double cutmax;           // largest model cutoff

  // Uncertainty settings and state.
  int uq_every;                 // compute every N steps on its own (0: only on request)
  int uq_selected[NMETHODS];    // methods named in pair_style ... uq a,b (all if none named)
  int uq_named;                 // 1 if the user named methods
  int uq_requested[NMETHODS];   // the methods named by pair_style uq (if uq_named)
  int available[NMETHODS];      // carried by the model
  int uq_flag[NMETHODS];        // set by fix pair / fix ace/uq/watch for the next step
  std::vector<double> uq_arrays[NMETHODS];
  bigint uq_last_step[NMETHODS];
  int cluster_wanted;                // keep gamma_local's cluster per atom
  std::vector<int> cluster_array;    // gamma_local cluster of each local atom
  bigint cluster_last_step;
  std::vector<int> lone_array;    // 1: no neighbour inside the cutoff (see lone_atoms())
  bigint lone_last_step;

  // Per-step buffers, grown only when the atom count grows.
  std::vector<int> species;
  std::vector<int64_t> tags;
  std::vector<int> offsets, neigh;
  std::vector<double> fij, eatom_buf;
  // Ensemble force columns [nall][n_ens_cols][3] (the forces of the ensemble's spread
  // directions, aceuq_model_ensemble_columns), summed over ghosts by reverse communication.
  int n_ens_cols;
  std::vector<double> ens_forces;

  void allocate();
  void free_model();
};

}    // namespace LAMMPS_NS

#endif
#endif
