/* -*- c++ -*- ----------------------------------------------------------
   aceuq: fix ace/uq/watch: act on per-atom uncertainty of pair ace/uq.

     fix ID group ace/uq/watch N [quantity M] [dump FILE] [lower auto|X]
                                 [upper auto|X|none] [halt yes|no|error]

   Every N steps: asks pair ace/uq for quantity M, finds atoms above the
   lower cutoff (appends the frame to FILE as extended XYZ: worth labelling)
   and above the upper cutoff (writes the frame and stops the run: the
   potential is extrapolating too far to trust). Cutoffs per species from
   the model's calibration (auto) or given numbers; for quantity gamma_local
   auto cutoffs are per (species, cluster): each atom is judged by the
   cutoffs of the cluster gamma_local assigned it (the species' cutoffs for
   a cluster calibrated without its own), the frame gets a per-atom cluster
   column and header keys naming the clusters above the cutoffs. A quantity
   whose calibration has no upper cutoff (+inf: the method cannot reach the
   error limit, e.g. a saturating GP) never halts: init warns once, with the
   stored reason and a method of the model whose upper cutoffs are finite,
   and prints the calibration's stored caveats. MPI:
   decisions are collective, frames are gathered and written once by rank 0.
------------------------------------------------------------------------- */

#ifdef FIX_CLASS
// clang-format off
FixStyle(ace/uq/watch,FixAceUqWatch);
// clang-format on
#else

#ifndef LMP_FIX_ACE_UQ_WATCH_H
#define LMP_FIX_ACE_UQ_WATCH_H

#include "fix.h"

#include <string>
#include <cstdint>
#include <vector>

struct aceuq_model_t;

namespace LAMMPS_NS {

class FixAceUqWatch : public Fix {
 public:
  FixAceUqWatch(class LAMMPS *, int, char **);
  ~FixAceUqWatch() override = default;

  int setmask() override;
  void init() override;
  void setup_pre_force(int) override;
  void setup(int) override;
  void pre_force(int) override;
  void end_of_step() override;
  void post_run() override;
  double compute_scalar() override;
  double compute_vector(int) override;

 private:
  enum { HALT_NO, HALT_SOFT, HALT_ERROR };
  int method;              // quantity watched (PairAceUq method id)
  std::string dumpfile;    // candidates file ("" = none)
  int lower_auto, upper_auto, upper_none;
  double lower_value, upper_value;
  int halt_mode;
  class PairAceUq *pair;
  std::vector<double> lower, upper;    // per model species
  std::vector<std::string> species_names;

  // Quantity gamma_local: cutoffs per (species, cluster), slot cluster_base[s] + c.
  int by_cluster;
  std::vector<int> ncluster, cluster_base;
  std::vector<double> lower_c, upper_c;
  double lower_of(int s, int c) const { return c < 0 ? lower[s] : lower_c[cluster_base[s] + c]; }
  double upper_of(int s, int c) const { return c < 0 ? upper[s] : upper_c[cluster_base[s] + c]; }

  // The calibration notes were printed for this model handle and quantity (once, not every run).
  const aceuq_model_t *notes_model;
  int notes_method;
  void report_calibration(aceuq_model_t *h, const std::vector<int> &own);

  // Run statistics.
  bigint nchecks, nframes, halted_step;
  double running_max, last_max;
  bigint last_checked;
  uint64_t last_fingerprint;

  void check();
  uint64_t fingerprint();
  void write_frame(const std::vector<int> &exceed_local, bool halting, double gmax);
};

}    // namespace LAMMPS_NS

#endif
#endif
