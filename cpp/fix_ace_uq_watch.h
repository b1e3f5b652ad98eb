/* -*- c++ -*- ----------------------------------------------------------
   aceuq: fix ace/uq/watch: act on per-atom uncertainty of pair ace/uq.

     fix ID group ace/uq/watch N [quantity M] [dump FILE] [lower auto|X]
                                 [upper auto|frame|atom|vote|X|none] [halt yes|no|error]
                                 [lone candidate|ignore] [elements E1 ... Entypes]

   Every N steps (every N minimizer iterations; every rerun frame whose step
   is a multiple of N): asks pair ace/uq for quantity M, finds atoms of the
   group above the lower cutoff (appends the frame to FILE as extended XYZ:
   worth labelling) and above the upper cutoff (writes the frame and stops
   the run: the potential is extrapolating too far to trust). Cutoffs per
   species from the model's calibration (auto) or given numbers; for
   quantity gamma_local auto cutoffs are per (species, cluster): each atom is
   judged by the cutoffs of the cluster gamma_local assigned it (the species'
   cutoffs for a cluster calibrated without its own), the frame gets a
   per-atom cluster column and header keys naming the clusters above the
   cutoffs. upper auto (the default): the calibrated cutoffs, and also halt
   when the probability that some watched atom errs above e_max,
   1 - prod_i (1 - P(e > e_max | u_i)) from the calibrated error scale s(u),
   reaches the calibration's p_halt (summed over ranks): the frame rule, used
   when every species has a fitted s(u), else single atoms only (logged).
   upper frame: the same, an error without s(u); upper atom: single atoms
   only. upper vote: a jury of the model's gamma, ensemble, distance and gp
   (those calibrated with s(u) for every species; at least two) halts when an
   atom is above the upper cutoff of any juror, or when the frame rules of at
   least two jurors reach p_halt; quantity M still decides the candidates.
   upper auto votes instead of the frame rule when `aceuq calibrate` chose the
   vote (it scored both on its labelled frames), the quantity is gamma, the
   watch halts, and the jury that can sit is the one the calibration scored. Without the frame rule, a quantity whose calibration has no upper
   cutoff (+inf) never halts: init warns once, with the stored reason and a
   method of the model whose upper cutoffs are finite, and prints the
   calibration's caveats.

   Frames hold the whole simulated structure, so that they can be labelled
   as they are: atoms outside the group and atoms of types the model does not
   handle (NULL in pair_coeff under pair_style hybrid) are written with
   watched = 0. The element of a NULL type comes from `elements` or, failing
   that, from its mass. Lone atoms (no neighbour inside the model cutoff: all
   their descriptors and uncertainties are 0) are candidates unless
   `lone ignore`; they never halt (their force is 0 by symmetry).

   Halting (halt yes) ends the current run or minimization; the input goes on,
   and later runs run normally unless they start from the configuration that
   halted, which stops them again at their first step. f_ID[5] is 1 when the
   last check halted: `if "$(f_ID[5]) > 0" then quit`. A rerun cannot be cut
   short by a fix: halt yes stops checking at the first frame above upper
   (the rest is read but not judged); halt no judges every frame.
   MPI: decisions are collective, frames are gathered and written once by
   rank 0.

   Global vector: 1 largest value of the last check, 2 largest since the fix
   was defined, 3 frames written, 4 checks, 5 halted (1 if the last check was
   above upper with halt yes/error), 6 step of the last halt (-1: none),
   7 lone atoms at the last check. Scalar: 2. Any thermo interval works: the
   values are those of the last check.
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
  void post_force(int) override;
  void end_of_step() override;
  void min_setup(int) override;
  void min_pre_force(int) override;
  void min_post_force(int) override;
  void setup_pre_force_respa(int, int) override;
  void pre_force_respa(int, int, int) override;
  void post_force_respa(int, int, int) override;
  void post_run() override;
  double compute_scalar() override;
  double compute_vector(int) override;

 private:
  int defer_stop = 0;      // inside post_force: a halt takes effect at the end of the step
  int stop_pending = 0;    // a halt decided in post_force, for end_of_step
  int nlevels_respa = 0;    // rRESPA levels (0: not rRESPA); checks at the outermost
  enum { HALT_NO, HALT_SOFT, HALT_ERROR };
  int method;              // quantity watched (PairAceUq method id)
  std::string dumpfile;    // candidates file ("" = none)
  std::string label;       // log prefix: "fix ace/uq/watch", with the ID when there are several
  int lower_auto, upper_auto, upper_none;
  // upper frame: also halt when P(some watched atom errs above e_max) >= p_halt, from the
  // calibrated error scale s(u) (aceuq_model_uq_frame_log_calm); frame_p is the last check's.
  // upper_mode: what `upper` asked for (auto: the frame rule when every species has a fitted
  // s(u), else single atoms; frame: insist on it; atom: single atoms only); upper_frame: what
  // init decided, with the reason in frame_fallback when auto could not use the frame rule.
  enum { UPPER_AUTO, UPPER_ATOM, UPPER_FRAME, UPPER_VOTE };
  int upper_mode;
  int upper_frame;
  std::string frame_fallback;
  double frame_p_halt, frame_p;
  // upper vote: the jury (those of gamma, ensemble, distance, gp that the model has, with a
  // calibrated error scale s(u) and cutoffs for every species of the run), their upper cutoffs
  // per species ([j][s]) and frame-rule p_halt; halt when a watched atom is above the upper
  // cutoff of any of them, or when the frame rules of at least two reach their p_halt. The last
  // check's frame probabilities and largest u / u_max per juror, and what decided (for the log).
  int upper_vote;
  std::vector<int> jury;
  std::vector<std::vector<double>> jury_upper;
  std::vector<double> jury_p_halt, jury_p, jury_ratio;
  int jury_votes, jury_above;
  std::string jury_left_out;
  std::string halt_rule_note;    // why upper auto votes or not (the calibration's choice)
  std::string vote_summary() const;
  double lower_value, upper_value;
  int halt_mode;
  int lone_candidate;                  // lone atoms are candidates (lone candidate)
  std::vector<std::string> elements;    // per type 1..ntypes from `elements` ("" = not given)
  class PairAceUq *pair;
  std::vector<double> lower, upper;    // per model species
  std::vector<std::string> species_names;

  // Quantity gamma_local: cutoffs per (species, cluster), slot cluster_base[s] + c.
  int by_cluster;
  std::vector<int> ncluster, cluster_base;
  std::vector<double> lower_c, upper_c;
  double lower_of(int s, int c) const { return c < 0 ? lower[s] : lower_c[cluster_base[s] + c]; }
  double upper_of(int s, int c) const { return c < 0 ? upper[s] : upper_c[cluster_base[s] + c]; }

  // The calibration notes were printed for this model load and quantity (once, not every run).
  uint64_t notes_generation;    // the model load (pair->model_generation()) reported on
  int notes_method;
  void report_calibration(aceuq_model_t *h, const std::vector<int> &own);

  // Species index written for each type (model species, or nspecies + k for the element
  // extra_names[k] of a type the model does not handle); -1: unknown (no frame can be written).
  std::vector<int> type_species;
  std::vector<std::string> extra_names;
  void resolve_elements(int ns);
  void check_dump_path();

  // Run statistics.
  bigint nchecks, nframes, halted_step, nlone_last;
  double running_max, last_max;
  bigint last_checked;
  uint64_t last_fingerprint;
  uint64_t halted_fingerprint;    // the configuration of the last halt
  int halted_now;        // the last check was above upper and halting
  int forced_timeout;    // this fix stopped the current run through the timer
  int rerun_mode;        // init() ran inside a rerun command
  int rerun_stopped;     // halted in this rerun: later frames are not checked
  int init_logged;       // the settings line was printed for this run
  bool log_settings;     // this init() prints the settings (a run's first, not write_data's)
  int lone_reported;     // lone atoms were reported once
  uint64_t rehalt_reported;    // configuration whose "stops too" was printed

  void request();
  void check();
  void rehalt();
  void rehalt_at_setup();
  void stop_run(const char *why);
  uint64_t fingerprint();
  void write_frame(const std::vector<int> &flags, bool halting, double gmax, bigint nlone);
};

}    // namespace LAMMPS_NS

#endif
#endif
