/* ----------------------------------------------------------------------
   aceuq: fix ace/uq/watch (see fix_ace_uq_watch.h for the syntax).
------------------------------------------------------------------------- */

#include "fix_ace_uq_watch.h"

#include "aceuq.h"
#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "group.h"
#include "input.h"
#include "modify.h"
#include "pair_ace_uq.h"
#include "timer.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mpi.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

using namespace LAMMPS_NS;
using namespace FixConst;

namespace {
// Per-atom record gathered to rank 0: id, species, x, y, z, value, above lower, above upper,
// gamma_local cluster (-1 for other quantities), watched (in the group and a model atom), lone.
constexpr int NREC = 11;

// Standard atomic weights (the library's table, H to Pu): the element of a type the model does
// not handle is the one whose weight is within MASS_TOLERANCE of the type's mass.
constexpr double MASS_TOLERANCE = 0.1;

// The elements whose standard atomic weights are within MASS_TOLERANCE of `mass` (one: the
// element; none or several: the mass does not say).
std::vector<std::string> elements_of_mass(double mass)
{
  std::vector<std::string> out;
  for (int z = 1; const char *symbol = aceuq_element_symbol(z); ++z)
    if (std::fabs(aceuq_element_mass(z) - mass) < MASS_TOLERANCE) out.push_back(symbol);
  return out;
}

bool is_element(const std::string &name)
{
  for (int z = 1; const char *symbol = aceuq_element_symbol(z); ++z)
    if (name == symbol) return true;
  return false;
}

// A number that reads back as a real (extended XYZ readers type "0" as an integer).
std::string real_text(double v)
{
  std::string t = fmt::format("{:.10g}", v);
  if (t.find_first_of(".eEni") == std::string::npos) t += ".0";
  return t;
}

// "Li:0 Li:2": the (species, cluster) pairs in `set`, or "none".
std::string cluster_list(const std::set<std::pair<int, int>> &set,
                         const std::vector<std::string> &names)
{
  std::string out;
  for (const auto &sc : set)
    out += fmt::format("{}{}:{}", out.empty() ? "" : " ", names[sc.first], sc.second);
  return out.empty() ? "none" : out;
}

// Part `part` (aceuq_note_t) of the stored calibration note of (method, species, cluster; -1 for
// the species-level entry); "" if there is nothing to say or no calibration.
std::string calibration_note(aceuq_model_t *h, int method, int s, int c, int part)
{
  std::vector<char> buf(1024);
  size_t need = 0;
  if (aceuq_model_uq_calibration_note(h, method, s, c, part, buf.data(), buf.size(), &need) !=
      ACEUQ_STATUS_OK)
    return "";
  if (need > buf.size()) {
    buf.resize(need);
    if (aceuq_model_uq_calibration_note(h, method, s, c, part, buf.data(), buf.size(), &need) !=
        ACEUQ_STATUS_OK)
      return "";
  }
  return buf.data();
}

// The stored upper cutoffs of method m are finite for every species in `used` (and for
// gamma_local every cluster of them).
bool finite_upper_everywhere(aceuq_model_t *h, int m, const std::vector<int> &used)
{
  for (int s = 0; s < (int) used.size(); s++) {
    if (!used[s]) continue;
    double lo = 0.0, hi = 0.0;
    if (aceuq_model_uq_cutoffs(h, m, s, &lo, &hi) != ACEUQ_STATUS_OK || !(hi < INFINITY))
      return false;
    if (m != ACEUQ_METHOD_GAMMA_LOCAL) continue;
    int n = 0;
    if (aceuq_model_gamma_local_clusters(h, s, &n) != ACEUQ_STATUS_OK) return false;
    for (int c = 0; c < n; c++)
      if (aceuq_model_uq_cluster_cutoffs(h, m, s, c, &lo, &hi, nullptr) != ACEUQ_STATUS_OK ||
          !(hi < INFINITY))
        return false;
  }
  return true;
}
}    // namespace

FixAceUqWatch::FixAceUqWatch(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), method(-1), lower_auto(1), upper_auto(1), upper_none(0), upper_mode(UPPER_AUTO), upper_frame(0),
    frame_p_halt(0.5), frame_p(0.0), upper_vote(0), jury_votes(0), jury_above(0), lower_value(0.0),
    upper_value(0.0), halt_mode(HALT_SOFT), lone_candidate(1), pair(nullptr), by_cluster(0),
    notes_generation(0), notes_method(-1), nchecks(0), nframes(0), halted_step(-1),
    nlone_last(0), running_max(0.0), last_max(0.0), last_checked(-1), last_fingerprint(0),
    halted_fingerprint(0), halted_now(0), forced_timeout(0), rerun_mode(0), rerun_stopped(0), init_logged(0), log_settings(false),
    lone_reported(0), rehalt_reported(0)
{
  if (narg < 4) utils::missing_cmd_args(FLERR, "fix ace/uq/watch", error);
  nevery = utils::inumeric(FLERR, arg[3], false, lmp);
  if (nevery <= 0) error->all(FLERR, "fix ace/uq/watch: N must be > 0, got {}", nevery);

  int iarg = 4;
  while (iarg < narg) {
    const std::string key = arg[iarg];
    if (key == "elements") {
      // One element per atom type, as in pair_coeff and dump_modify element.
      const int nt = atom->ntypes;
      if (iarg + 1 + nt > narg)
        error->all(FLERR,
                   "fix ace/uq/watch elements: needs one element per atom type ({} types), got {}",
                   nt, narg - iarg - 1);
      elements.assign(nt + 1, "");
      for (int t = 1; t <= nt; t++) {
        elements[t] = arg[iarg + t];
        if (!is_element(elements[t]))
          error->all(FLERR, "fix ace/uq/watch elements: '{}' (type {}) is not an element symbol",
                     elements[t], t);
      }
      iarg += 1 + nt;
      if (iarg < narg && is_element(arg[iarg]))
        error->all(FLERR,
                   "fix ace/uq/watch elements: needs one element per atom type ({} types), got "
                   "more ('{}')",
                   nt, arg[iarg]);
      continue;
    }
    if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "fix ace/uq/watch " + key, error);
    const std::string val = arg[iarg + 1];
    if (key == "quantity") {
      method = PairAceUq::method_id(val);
      if (method < 0)
        error->all(FLERR, "fix ace/uq/watch: unknown quantity '{}' ({})", val,
                   PairAceUq::method_names());
    } else if (key == "dump") {
      if (val.empty())
        error->all(FLERR, "fix ace/uq/watch: dump needs a file name, got an empty one (leave "
                          "dump out to write no candidates)");
      dumpfile = val;
    } else if (key == "lower") {
      lower_auto = (val == "auto");
      if (!lower_auto) lower_value = utils::numeric(FLERR, val, false, lmp);
    } else if (key == "upper") {
      upper_mode = val == "frame"  ? UPPER_FRAME
                   : val == "atom" ? UPPER_ATOM
                   : val == "vote" ? UPPER_VOTE
                                   : UPPER_AUTO;
      // upper vote: the watched quantity's own upper cutoff is not used (the jury halts).
      upper_auto = (val == "auto") || (val == "frame") || (val == "atom");
      upper_none = (val == "none") || (val == "vote");
      if (!upper_auto && !upper_none) upper_value = utils::numeric(FLERR, val, false, lmp);
    } else if (key == "halt") {
      if (val == "yes")
        halt_mode = HALT_SOFT;
      else if (val == "no")
        halt_mode = HALT_NO;
      else if (val == "error")
        halt_mode = HALT_ERROR;
      else
        error->all(FLERR, "fix ace/uq/watch: halt must be yes, no or error, got '{}'", val);
    } else if (key == "lone") {
      if (val == "candidate")
        lone_candidate = 1;
      else if (val == "ignore")
        lone_candidate = 0;
      else
        error->all(FLERR, "fix ace/uq/watch: lone must be candidate or ignore, got '{}'", val);
    } else {
      error->all(FLERR,
                 "fix ace/uq/watch: unknown keyword '{}' (quantity, dump, lower, upper, halt, "
                 "lone, elements)",
                 key);
    }
    iarg += 2;
  }
  if (!lower_auto && !upper_auto && !upper_none && upper_value < lower_value)
    error->all(FLERR, "fix ace/uq/watch: upper ({}) is below lower ({})", upper_value, lower_value);

  scalar_flag = 1;
  vector_flag = 1;
  size_vector = 7;
  // The values change only at checks but are valid at every step: thermo and variables may
  // read them at any interval (the last check's values).
  global_freq = 1;
  extscalar = 0;
  extvector = 0;
}

int FixAceUqWatch::setmask()
{
  // Checked right after the forces (post_force), not at the end of the step: fixes that move
  // atoms or change the box at the end of a step (fix deform with remap, barostats) would
  // otherwise pair the uncertainties with a structure they were not computed on. A halt stops
  // the run at the end of the step (end_of_step), in the order of the fixes, as fix halt does.
  return PRE_FORCE | POST_FORCE | END_OF_STEP | MIN_PRE_FORCE | MIN_POST_FORCE |
      PRE_FORCE_RESPA | POST_FORCE_RESPA;
}

void FixAceUqWatch::init()
{
  // With two or more watches their log lines name the fix ID ("fix ace/uq/watch w2: halting
  // ..."); with one they read as always.
  label = modify->get_fix_by_style("^ace/uq/watch$").size() > 1
      ? fmt::format("fix ace/uq/watch {}", id)
      : std::string("fix ace/uq/watch");
  pair = dynamic_cast<PairAceUq *>(force->pair_match("ace/uq", 1, 0));
  if (!pair && force->pair_match("ace/uq", 1, 2))
    error->all(FLERR, "fix ace/uq/watch: the pair style holds ace/uq more than once (hybrid); a "
                      "watch follows one ace/uq: use one ace/uq sub-style with one model for "
                      "the watched types");
  if (!pair) error->all(FLERR, "fix ace/uq/watch requires pair_style ace/uq");
  if (!pair->compute_flag)
    error->all(FLERR, "fix ace/uq/watch: pair ace/uq computes nothing (pair_modify [pair ace/uq] "
                      "compute no), so there is nothing to watch: remove that setting or the "
                      "watch");
  stop_pending = 0;
  defer_stop = 0;
  nlevels_respa = 0;    // counted by setup_pre_force_respa (the plugin sees no respa.h)
  // rerun calls init() for every frame; the settings are printed once per command. write_data,
  // write_restart and other commands that are no run (update->whichflag 0) call init() too:
  // the settings are printed for the run that uses them, not there.
  rerun_mode = input->command && strcmp(input->command, "rerun") == 0;
  log_settings = !init_logged && update->whichflag != 0;
  int format = 0;
  aceuq_model_format(pair->model_handle(), &format);
  if (format == 1 && (method < 0 || !pair->has_method(method))) {
    // A pacemaker potential: the grade comes with an active-set inverse, and only that one.
    if (!pair->has_method(ACEUQ_METHOD_GAMMA))
      error->all(FLERR, "fix ace/uq/watch: a pacemaker potential is watched through the gamma "
                        "grade of an active-set inverse: pair_coeff * * pot.yaml pot.asi "
                        "[pot.lasi] [pot.cutoffs.toml] Elem ... (build one with `aceuq activeset "
                        "--model pot.yaml --data train.xyz --out pot.asi`)");
    if (method >= 0)
      error->all(FLERR,
                 "fix ace/uq/watch: a pacemaker potential has only the 'gamma' grade (with an "
                 ".asi) and the 'gamma_local' grade (with a .lasi after it in pair_coeff), not "
                 "'{}' here (quantity gamma{})",
                 PairAceUq::method_name(method),
                 method == ACEUQ_METHOD_GAMMA_LOCAL
                     ? ", or build clustered active sets with `aceuq activeset --model pot "
                       "--data train.xyz --clusters K`"
                     : "");
  }
  if (method < 0) {
    // Default: the global grade if the model has it, else the first method it has.
    for (int m : {0, 1, 3, 4, 2})
      if (pair->has_method(m)) {
        method = m;
        break;
      }
    if (method < 0)
      error->all(FLERR, "fix ace/uq/watch: the model has no uncertainty; fit it with e.g. "
                        "`aceuq fit --active-set`");
  }
  if (!pair->has_method(method))
    error->all(FLERR,
               "fix ace/uq/watch: the model has no '{}' uncertainty; refit it with `aceuq "
               "fit {}`",
               PairAceUq::method_name(method), PairAceUq::method_fit_option(method));

  aceuq_model_t *h = pair->model_handle();
  int ns = 0;
  if (aceuq_model_nspecies(h, &ns) != ACEUQ_STATUS_OK)
    error->all(FLERR, "fix ace/uq/watch: {}", aceuq_last_error());
  species_names.assign(ns, "");
  for (int s = 0; s < ns; s++) {
    char buf[256];
    if (aceuq_model_species_name(h, s, buf, sizeof buf) != ACEUQ_STATUS_OK)
      error->all(FLERR, "fix ace/uq/watch: {}", aceuq_last_error());
    species_names[s] = buf;
  }
  const double upper_default = upper_none ? std::numeric_limits<double>::infinity() : upper_value;
  lower.assign(ns, lower_value);
  upper.assign(ns, upper_default);
  for (int s = 0; s < ns; s++) {
    if (!lower_auto && !upper_auto) break;
    double lo = 0.0, hi = 0.0;
    if (aceuq_model_uq_cutoffs(h, method, s, &lo, &hi) != ACEUQ_STATUS_OK)
      error->all(FLERR, "fix ace/uq/watch: {}", aceuq_last_error());
    if (lower_auto) lower[s] = lo;
    if (upper_auto) upper[s] = hi;
  }
  // The frame rule needs every mapped species' fitted error scale (checked on one atom each):
  // upper frame insists on it, upper auto uses it when the calibration has it (the conditional
  // upper rule, the default of `aceuq calibrate`) and halts on single atoms otherwise, upper atom
  // and numbers never use it. Every rank reads the same model, so every rank decides the same.
  upper_frame = upper_auto && upper_mode != UPPER_ATOM;
  frame_fallback.clear();
  for (int t = 1; upper_frame && t <= atom->ntypes; t++) {
    const int s = pair->species_of_type(t);
    if (s < 0) continue;
    const double zero = 0.0;
    double lc = 0.0;
    if (aceuq_model_uq_frame_log_calm(h, method, 1, &s, &zero, &lc, &frame_p_halt) !=
        ACEUQ_STATUS_OK) {
      if (upper_mode == UPPER_FRAME)
        error->all(FLERR,
                   "fix ace/uq/watch: upper frame: {}; or watch with upper atom (single atoms "
                   "only)",
                   aceuq_last_error());
      upper_frame = 0;
      frame_fallback = aceuq_last_error();
    }
  }

  // upper vote, or upper auto when `aceuq calibrate` chose the vote (it scored gamma's frame
  // rule against the vote of a jury on its labelled frames): the jury, with every mapped
  // species' upper cutoff and fitted error scale. upper auto votes only where that choice
  // applies: watching gamma, halting (halt no: nothing to gain from computing the jury), and
  // with the very jury the calibration scored; otherwise it keeps the rule above, and says why.
  int model_votes = 0, model_jury = 0;
  halt_rule_note.clear();
  {
    std::vector<char> buf(1024);
    size_t need = 0;
    if (aceuq_model_halt_rule(h, &model_votes, &model_jury, buf.data(), buf.size(), &need) ==
        ACEUQ_STATUS_OK) {
      if (need > buf.size()) {
        buf.resize(need);
        aceuq_model_halt_rule(h, &model_votes, &model_jury, buf.data(), buf.size(), &need);
      }
      halt_rule_note = buf.data();
    }
  }
  const bool auto_mode = upper_auto && upper_mode == UPPER_AUTO;
  bool auto_vote = auto_mode && model_votes == 1 && halt_mode != HALT_NO;
  if (auto_vote && method != ACEUQ_METHOD_GAMMA) {
    auto_vote = false;
    halt_rule_note += fmt::format("; the calibration scored its rules as gamma's watch would halt, "
                                  "and this watch is on {}: its own frame rule (upper vote to vote)",
                                  PairAceUq::method_name(method));
  }
  upper_vote = upper_mode == UPPER_VOTE || auto_vote;
  jury.clear();
  jury_upper.clear();
  jury_p_halt.clear();
  jury_left_out.clear();
  // Every method that could sit, with the question its error relation answers per species
  // (e_max, p_halt). Jurors must answer the same one (calibrated with the same --max-error and
  // --p-halt), as the calibration's own choice of the halting rule requires: the largest group
  // that does sits (a tie: the group of the earliest method, gamma first), the others are left
  // out with the reason.
  struct Candidate {
    int m;
    std::vector<double> up, e_max, p_halt;
    double ph;
  };
  std::vector<Candidate> cand;
  // upper vote: the jury's methods; upper auto: exactly those the calibration chose (its jury, or
  // the one juror whose own frame rule it found best).
  std::vector<int> seats;
  if (upper_mode == UPPER_VOTE)
    seats = {ACEUQ_METHOD_GAMMA, ACEUQ_METHOD_ENSEMBLE, ACEUQ_METHOD_DISTANCE, ACEUQ_METHOD_GP};
  else
    for (int m = 0; m < PairAceUq::NMETHODS; m++)
      if (model_jury & (1 << m)) seats.push_back(m);
  for (int m : seats) {
    if (!upper_vote) break;
    const std::string mname = PairAceUq::method_name(m);
    if (!pair->has_method(m)) {
      jury_left_out += fmt::format("; {}: not in the model", mname);
      continue;
    }
    Candidate c{m, std::vector<double>(ns, std::numeric_limits<double>::infinity()),
                std::vector<double>(ns, 0.0), std::vector<double>(ns, 0.0), 1.0};
    std::string why;
    for (int t = 1; t <= atom->ntypes && why.empty(); t++) {
      const int s = pair->species_of_type(t);
      if (s < 0) continue;
      const double zero = 0.0;
      double lc = 0.0, p = 0.0, lo = 0.0;
      if (aceuq_model_uq_frame_log_calm(h, m, 1, &s, &zero, &lc, &p) != ACEUQ_STATUS_OK ||
          aceuq_model_uq_cutoffs(h, m, s, &lo, &c.up[s]) != ACEUQ_STATUS_OK ||
          aceuq_model_uq_error_limit(h, m, s, &c.e_max[s], &c.p_halt[s]) != ACEUQ_STATUS_OK)
        why = aceuq_last_error();
      c.ph = std::min(c.ph, p);
    }
    if (!why.empty()) {
      jury_left_out += fmt::format("; {}: {}", mname, why);
      continue;
    }
    cand.push_back(std::move(c));
  }
  auto same_question = [](const Candidate &a, const Candidate &b) {
    return a.e_max == b.e_max && a.p_halt == b.p_halt;
  };
  size_t anchor = 0, best = 0;
  for (size_t a = 0; a < cand.size(); a++) {
    size_t n = 0;
    for (const auto &c : cand) n += same_question(c, cand[a]);
    if (n > best) best = n, anchor = a;
  }
  for (auto &c : cand) {
    const Candidate &ref = cand[anchor];
    if (!same_question(c, ref)) {
      int s = 0;
      while (s < ns && c.e_max[s] == ref.e_max[s] && c.p_halt[s] == ref.p_halt[s]) s++;
      jury_left_out += fmt::format(
          "; {}: its {} relation gives P(e > {} eV/Å) at p_halt {}, the jury's ({}) P(e > {} "
          "eV/Å) at p_halt {} (recalibrate with the same --max-error and --p-halt to let it sit)",
          PairAceUq::method_name(c.m), species_names[s], c.e_max[s], c.p_halt[s],
          PairAceUq::method_name(ref.m), ref.e_max[s], ref.p_halt[s]);
      continue;
    }
    jury.push_back(c.m);
    jury_upper.push_back(std::move(c.up));
    jury_p_halt.push_back(c.ph);
  }
  int seated = 0;
  for (int m : jury) seated |= 1 << m;
  if (auto_vote && seated != model_jury) {
    // The run maps species some juror of the calibration cannot judge, or the jury differs
    // from the one the calibration scored: the rule above.
    std::string names;
    for (int m : jury) names += fmt::format("{}{}", names.empty() ? "" : ", ", PairAceUq::method_name(m));
    upper_vote = 0;
    halt_rule_note += fmt::format("; but the jury that can sit for the species of this run is "
                                  "{} ({}{}), not the one the calibration scored: the frame rule",
                                  jury.size(), names.empty() ? "none" : names, jury_left_out);
    jury.clear();
    jury_upper.clear();
    jury_p_halt.clear();
  }
  if (upper_vote) {
    // The jury halts: the watched quantity's own upper cutoffs are not used.
    upper_frame = 0;
    upper.assign(ns, std::numeric_limits<double>::infinity());
  }
  if (upper_mode == UPPER_VOTE && jury.size() < 2)
    error->all(FLERR,
               "fix ace/uq/watch: upper vote needs at least two of gamma, ensemble, distance and "
               "gp with calibrated cutoffs and a fitted error scale s(u) for every species of "
               "the run, calibrated with the same e_max and p_halt, the model has {}{}{} (a "
               "model fitted with them, e.g. `aceuq fit ... "
               "--active-set --ensemble 4 --distance --gp`, then `aceuq calibrate`; or use upper "
               "auto)",
               jury.size(), jury.size() == 1 ? fmt::format(" ({})", PairAceUq::method_name(jury[0])) : std::string(),
               jury_left_out);
  jury_p.assign(jury.size(), 0.0);
  jury_ratio.assign(jury.size(), 0.0);

  // gamma_local: every atom is judged by the cutoffs of its own (species, cluster); numbers
  // given for lower/upper apply to every cluster.
  by_cluster = method == ACEUQ_METHOD_GAMMA_LOCAL;
  std::vector<int> own;
  if (by_cluster) {
    pair->want_gamma_local_clusters();
    ncluster.assign(ns, 0);
    cluster_base.assign(ns + 1, 0);
    for (int s = 0; s < ns; s++) {
      if (aceuq_model_gamma_local_clusters(h, s, &ncluster[s]) != ACEUQ_STATUS_OK)
        error->all(FLERR, "fix ace/uq/watch: {}", aceuq_last_error());
      cluster_base[s + 1] = cluster_base[s] + ncluster[s];
    }
    lower_c.assign(cluster_base[ns], lower_value);
    // With the vote the jury halts: the quantity's own (cluster) upper cutoffs are not used.
    upper_c.assign(cluster_base[ns],
                   upper_vote ? std::numeric_limits<double>::infinity() : upper_default);
    own.assign(cluster_base[ns], 0);
    for (int s = 0; s < ns; s++) {
      if (!lower_auto && !upper_auto) break;
      for (int c = 0; c < ncluster[s]; c++) {
        const int k = cluster_base[s] + c;
        double lo = 0.0, hi = 0.0;
        if (aceuq_model_uq_cluster_cutoffs(h, method, s, c, &lo, &hi, &own[k]) != ACEUQ_STATUS_OK)
          error->all(FLERR, "fix ace/uq/watch: {}", aceuq_last_error());
        if (lower_auto) lower_c[k] = lo;
        if (upper_auto && !upper_vote) upper_c[k] = hi;
      }
    }
  }
  // A lower cutoff above the upper one would halt on atoms that were never candidates: a typo
  // or numbers meant for another quantity.
  // A calibrated lower cutoff above a given upper one is lowered to it (every candidate is then
  // a halt), with a warning; a given lower cutoff above a calibrated upper one is an error.
  if (lower_auto && !upper_auto && !upper_none) {
    bool clamped = false;
    for (auto &v : lower) clamped = clamped || v > upper_value;
    for (auto &v : lower_c) clamped = clamped || v > upper_value;
    for (auto &v : lower) v = std::min(v, upper_value);
    for (auto &v : lower_c) v = std::min(v, upper_value);
    if (clamped && comm->me == 0 && log_settings)
      error->warning(FLERR,
                     "fix ace/uq/watch: upper {} is below the calibrated lower cutoff of some "
                     "species or clusters; their lower cutoff is set to {} (every candidate there "
                     "is also a halt)",
                     upper_value, upper_value);
  }
  for (int s = 0; s < ns && !lower_auto && upper_auto; s++) {
    if (!by_cluster && lower[s] > upper[s])
      error->all(FLERR,
                 "fix ace/uq/watch: for {} the lower cutoff {:.6g}{} is above the upper cutoff "
                 "{:.6g}{}; give a lower cutoff below the upper one (or upper none)",
                 species_names[s], lower[s], lower_auto ? " (calibrated)" : "", upper[s],
                 upper_auto ? " (calibrated)" : "");
    for (int c = 0; by_cluster && c < ncluster[s]; c++) {
      const int k = cluster_base[s] + c;
      if (lower_c[k] > upper_c[k])
        error->all(FLERR,
                   "fix ace/uq/watch: for {} cluster {} the lower cutoff {:.6g}{} is above the "
                   "upper cutoff {:.6g}{}; give a lower cutoff below the upper one (or upper "
                   "none)",
                   species_names[s], c, lower_c[k], lower_auto ? " (calibrated)" : "", upper_c[k],
                   upper_auto ? " (calibrated)" : "");
    }
  }
  resolve_elements(ns);
  if (!dumpfile.empty()) check_dump_path();

  // fix halt with `error soft` keeps later runs from running; a step where both stop the run
  // counts as this watch's halt (which restores the timer) unless fix halt acts first.
  if (halt_mode == HALT_SOFT && comm->me == 0 && log_settings) {
    int me_index = -1;
    for (int k = 0; k < modify->nfix; k++)
      if (modify->fix[k] == this) me_index = k;
    for (int k = me_index + 1; k < modify->nfix && me_index >= 0; k++)
      if (strcmp(modify->fix[k]->style, "halt") == 0)
        error->warning(FLERR,
                       "fix ace/uq/watch: fix {} (halt) is defined after this watch: at a step "
                       "where both stop the run, the watch's halt wins and later runs proceed; "
                       "define fix halt first to keep its `error soft`",
                       modify->fix[k]->id);
  }

  if (comm->me == 0 && log_settings) {
    std::string cut;
    for (int s = 0; s < ns; s++) {
      if (!by_cluster) {
        cut += fmt::format(" [{}: {:.4g} / {:.4g}]", species_names[s], lower[s], upper[s]);
        continue;
      }
      for (int c = 0; c < ncluster[s]; c++) {
        const int k = cluster_base[s] + c;
        const bool fallback = (lower_auto || upper_auto) && !own[k];
        cut += fmt::format(" [{}:{}: {:.4g} / {:.4g}{}]", species_names[s], c, lower_c[k],
                           upper_c[k], fallback ? " (species cutoffs)" : "");
      }
    }
    utils::logmesg(lmp, "{}: every {} steps, {} lower/upper per species{}{}{}{}\n",
                   label, nevery, PairAceUq::method_name(method), by_cluster ? " and cluster" : "", cut,
                   dumpfile.empty() ? "" : ", candidates to " + dumpfile,
                   halt_mode == HALT_NO ? ""
                   : upper_vote ? vote_summary()
                   : upper_frame
                       ? fmt::format(", halts above upper or when P(some atom errs above e_max) "
                                     ">= {:.3g} (upper frame)",
                                     frame_p_halt)
                   : frame_fallback.empty()
                       ? ", halts above upper"
                       : ", halts above upper (single atoms only: " + frame_fallback + ")");
  }
  if (comm->me == 0 && log_settings && auto_mode && halt_mode != HALT_NO &&
      !halt_rule_note.empty())
    utils::logmesg(lmp, "{}: {}\n", label, halt_rule_note);
  if (log_settings) init_logged = 1;
  if ((lower_auto || upper_auto) && update->whichflag != 0) report_calibration(h, own);
}

/* ----------------------------------------------------------------------
   What the calibration behind the auto cutoffs says, once per model and quantity: a quantity
   without an upper cutoff (+inf: the method cannot reach the error limit, e.g. a saturating
   GP) never halts the run, which the user must know, with the reason and a method that would
   halt; and the caveats `aceuq calibrate` stored. Every rank takes the same decisions (the
   model file is the same); rank 0 prints.
------------------------------------------------------------------------- */

void FixAceUqWatch::report_calibration(aceuq_model_t *h, const std::vector<int> &own)
{
  // Keyed on the load's number, the same on every rank (a pointer could repeat on some ranks
  // only, and then only some would enter the collective calls below).
  if (pair->model_generation() == notes_generation && method == notes_method) return;
  notes_generation = pair->model_generation();
  notes_method = method;
  const int ns = (int) species_names.size();
  // Only the species the simulation maps a type to.
  std::vector<int> used(ns, 0);
  for (int t = 1; t <= atom->ntypes; t++) {
    const int s = pair->species_of_type(t);
    if (s >= 0 && s < ns) used[s] = 1;
  }
  const std::string qname = PairAceUq::method_name(method);

  // Watched entries without an upper cutoff: "Li (reason)" or "Li clusters 0 2 (reason)".
  std::vector<std::string> missing;
  int n_entries = 0, n_missing = 0;
  // With the frame rule (every species has a fitted s(u), checked in init) an entry without an
  // upper cutoff can still halt its frames, unless its uncertainty saturates so low that more
  // atoms of its species than the watch sees would be needed: only those are reported. The
  // watched atoms per species, summed over ranks (every rank is here: init is collective).
  std::vector<double> watched(ns, 0.0);
  if (upper_auto && upper_frame) {
    std::vector<double> mine(ns, 0.0);
    for (int i = 0; i < atom->nlocal; i++) {
      if (!(atom->mask[i] & groupbit)) continue;
      const int s = pair->species_of_type(atom->type[i]);
      if (s >= 0 && s < ns) mine[s] += 1.0;
    }
    MPI_Allreduce(mine.data(), watched.data(), ns, MPI_DOUBLE, MPI_SUM, world);
  }
  for (int s = 0; s < ns && upper_auto && !upper_vote; s++) {
    if (!used[s]) continue;
    std::vector<int> none;
    if (by_cluster) {
      for (int c = 0; c < ncluster[s]; c++) {
        n_entries++;
        if (!(upper_c[cluster_base[s] + c] < INFINITY)) none.push_back(c);
      }
    } else {
      n_entries++;
      if (!(upper[s] < INFINITY)) none.push_back(-1);
    }
    if (none.empty()) continue;
    double need = 1.0;
    if (upper_frame &&
        aceuq_model_uq_frame_atoms_to_halt(h, method, s, &need) != ACEUQ_STATUS_OK)
      error->all(FLERR, "fix ace/uq/watch: {}", aceuq_last_error());
    if (upper_frame && need <= watched[s]) continue;
    n_missing += (int) none.size();
    std::string where = species_names[s];
    if (by_cluster && (int) none.size() < ncluster[s]) {
      where += none.size() == 1 ? " cluster" : " clusters";
      for (int c : none) where += fmt::format(" {}", c);
    }
    std::string reason = calibration_note(h, method, s, none[0], ACEUQ_NOTE_NO_UPPER);
    if (upper_frame)
      reason += fmt::format("{}the frame rule would need {} {} atoms at its largest uncertainty "
                            "to halt, the watch sees {:.0f}",
                            reason.empty() ? "" : "; ",
                            std::isinf(need) ? std::string("infinitely many")
                                             : fmt::format("{:.3g}", need),
                            species_names[s], watched[s]);
    missing.push_back(reason.empty() ? where : where + " (" + reason + ")");
  }

  if (n_missing > 0 && comm->me == 0) {
    std::string list;
    for (size_t k = 0; k < missing.size(); k++)
      list += (k == 0 ? "" : k + 1 == missing.size() ? " and for " : ", for ") + missing[k];
    std::string consequence;
    if (halt_mode == HALT_NO)
      consequence = "no atom there is ever above it (halt no: the run would not be stopped anyway)";
    else if (n_missing == n_entries)
      consequence =
          fmt::format("this watch will {}never halt (halt {})", dumpfile.empty() ? "" : "dump but ",
                      halt_mode == HALT_ERROR ? "error" : "yes");
    else
      consequence = "atoms there never make this watch halt (the others still can)";
    std::string advice;
    if (halt_mode != HALT_NO) {
      int alt = -1;
      for (int m = 0; m < PairAceUq::NMETHODS && alt < 0; m++)
        if (m != method && pair->has_method(m) && finite_upper_everywhere(h, m, used)) alt = m;
      if (alt >= 0)
        advice = fmt::format(
            "; to halt, add a watch on quantity {} (its upper cutoffs are finite for every "
            "species{}), e.g. fix {}_halt {} ace/uq/watch {} quantity {} upper auto halt yes",
            PairAceUq::method_name(alt), alt == ACEUQ_METHOD_GAMMA_LOCAL ? " and cluster" : "", id,
            group->names[igroup], nevery, PairAceUq::method_name(alt));
      else
        advice = "; no other method of the model has finite upper cutoffs for every species "
                 "either: to halt, give a number (upper X), or label high-uncertainty "
                 "structures (e.g. the frames this watch dumps) and recalibrate with them "
                 "(aceuq calibrate --high)";
    }
    const std::string msg = fmt::format("{}: {} has no upper cutoff for {}: {}{}",
                                        label, qname, list, consequence, advice);
    if (halt_mode == HALT_NO)
      utils::logmesg(lmp, "{}\n", msg);
    else
      error->warning(FLERR, "{}", msg);
  }

  // The caveats of every watched entry (species-level, and clusters with their own).
  if (comm->me != 0) return;
  for (int s = 0; s < ns; s++) {
    if (!used[s]) continue;
    const std::string note = calibration_note(h, method, s, -1, ACEUQ_NOTE_CAVEATS);
    if (!note.empty())
      error->warning(FLERR, "{}: calibration of {} for {}: {}", label, qname,
                     species_names[s], note);
    if (!by_cluster) continue;
    for (int c = 0; c < ncluster[s]; c++) {
      if (!own[cluster_base[s] + c]) continue;
      const std::string cnote = calibration_note(h, method, s, c, ACEUQ_NOTE_CAVEATS);
      if (!cnote.empty())
        error->warning(FLERR, "{}: calibration of {} for {} cluster {}: {}", label, qname,
                       species_names[s], c, cnote);
    }
  }
}

/* ----------------------------------------------------------------------
   The element written for every type: the model species of mapped types; for types the model
   does not handle (NULL in pair_coeff), the `elements` keyword or else the element of the
   type's mass. Only a frame needs them, so an unknown element is an error only with a dump.
------------------------------------------------------------------------- */

void FixAceUqWatch::resolve_elements(int ns)
{
  const int nt = atom->ntypes;
  type_species.assign(nt + 1, -1);
  extra_names.clear();
  std::vector<std::string> unknown;
  for (int t = 1; t <= nt; t++) {
    const int s = pair->species_of_type(t);
    const std::string given = elements.empty() ? "" : elements[t];
    if (s >= 0) {
      if (!given.empty() && given != species_names[s])
        error->all(FLERR,
                   "fix ace/uq/watch elements: type {} is {} in pair_coeff ace/uq, not {}", t,
                   species_names[s], given);
      type_species[t] = s;
      continue;
    }
    std::string el = given;
    const bool has_mass = atom->mass && atom->mass_setflag && atom->mass_setflag[t];
    if (el.empty() && has_mass) {
      const auto match = elements_of_mass(atom->mass[t]);
      if (match.size() == 1) {
        el = match[0];
        if (comm->me == 0 && log_settings)
          utils::logmesg(lmp,
                         "{}: type {} (NULL in pair_coeff ace/uq) is written as {} "
                         "(mass {:.6g}); give `elements` to say otherwise\n",
                         label, t, el, atom->mass[t]);
      } else if (match.size() > 1) {
        std::string both;
        for (const auto &m : match) both += (both.empty() ? "" : " or ") + m;
        unknown.push_back(fmt::format("type {} (mass {:.6g} could be {})", t, atom->mass[t], both));
        continue;
      }
    }
    if (el.empty()) {
      unknown.push_back(has_mass
                            ? fmt::format("type {} (mass {:.6g} matches no element)", t,
                                          atom->mass[t])
                            : fmt::format("type {} (no per-type mass)", t));
      continue;
    }
    // An element of the model keeps its model index.
    int k = -1;
    for (int m = 0; m < ns; m++)
      if (species_names[m] == el) k = m;
    if (k < 0) {
      auto it = std::find(extra_names.begin(), extra_names.end(), el);
      k = ns + (int) (it - extra_names.begin());
      if (it == extra_names.end()) extra_names.push_back(el);
    }
    type_species[t] = k;
  }
  if (!unknown.empty() && !dumpfile.empty()) {
    std::string list;
    for (const auto &u : unknown) list += (list.empty() ? "" : ", ") + u;
    error->all(FLERR,
               "fix ace/uq/watch: frames hold every atom, but the element of {} is unknown (not "
               "handled by pair ace/uq); give one element per type: elements E1 ... E{}",
               list, nt);
  }
}

/* ----------------------------------------------------------------------
   A dump file that cannot be written fails now, not at the first candidate hours later: its
   folder must exist and be writable, and an existing file must be a writable regular file
   whose last frame is whole (or left incomplete by a killed aceuq append, which the next
   append undoes).
   Rank 0 checks (it writes); every rank gets the verdict.
------------------------------------------------------------------------- */

void FixAceUqWatch::check_dump_path()
{
  std::string problem;
  if (comm->me == 0) {
    const size_t slash = dumpfile.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : dumpfile.substr(0, slash + 1);
    struct stat st;
    if (stat(dumpfile.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode))
        problem = "it is a folder";
      else if (!S_ISREG(st.st_mode))
        problem = "it is not a regular file";
      else if (access(dumpfile.c_str(), W_OK) != 0)
        problem = fmt::format("it is not writable ({})", strerror(errno));
    } else if (errno != ENOENT) {
      problem = strerror(errno);
    } else if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      problem = fmt::format("folder {} does not exist", dir);
    } else if (access(dir.c_str(), W_OK | X_OK) != 0) {
      problem = fmt::format("folder {} is not writable ({})", dir, strerror(errno));
    }
    // An existing file whose last frame somebody else left incomplete would refuse the first
    // candidate: say so now (the library's message names the line and the repair).
    if (problem.empty() && aceuq_check_append_file(dumpfile.c_str()) != ACEUQ_STATUS_OK)
      problem = aceuq_last_error();
  }
  int len = (int) problem.size();
  MPI_Bcast(&len, 1, MPI_INT, 0, world);
  if (len == 0) return;
  problem.resize(len);
  MPI_Bcast(&problem[0], len, MPI_CHAR, 0, world);
  error->all(FLERR, "fix ace/uq/watch: cannot write candidates to {}: {}", dumpfile, problem);
}

/* ----------------------------------------------------------------------
   upper vote in the settings line: the jurors, their upper cutoffs per mapped species, and
   the methods left out with the reason.
------------------------------------------------------------------------- */

std::string FixAceUqWatch::vote_summary() const
{
  std::string jurors, cuts;
  for (size_t j = 0; j < jury.size(); j++) {
    jurors += fmt::format("{}{}", j == 0 ? "" : ", ", PairAceUq::method_name(jury[j]));
    std::string per;
    for (size_t s = 0; s < species_names.size(); s++) {
      bool used = false;
      for (int t = 1; t <= atom->ntypes; t++) used = used || pair->species_of_type(t) == (int) s;
      if (used) per += fmt::format(" {}: {:.4g}", species_names[s], jury_upper[j][s]);
    }
    cuts += fmt::format(" [{}{}]", PairAceUq::method_name(jury[j]), per);
  }
  if (jury.size() == 1)
    return fmt::format(", halts by {}'s frame rule: an atom above its upper cutoff{}, or P(some "
                       "atom errs above e_max) >= p_halt by its error scale s(u)",
                       jurors, cuts);
  return fmt::format(", halts by upper vote of {}: an atom above any of their upper cutoffs{}, "
                     "or P(some atom errs above e_max) >= p_halt by the frame rules of at least "
                     "two{}",
                     jurors, cuts,
                     jury_left_out.empty() ? "" : " (left out" + jury_left_out.substr(1) + ")");
}

void FixAceUqWatch::request()
{
  if (update->ntimestep % nevery != 0) return;
  pair->request_uq(method);
  for (int m : jury) pair->request_uq(m);
}

void FixAceUqWatch::setup_pre_force(int)
{
  request();
}

void FixAceUqWatch::pre_force(int)
{
  request();
}

void FixAceUqWatch::setup_pre_force_respa(int, int ilevel)
{
  // rRESPA's setup calls this once per level, innermost first: the count of levels.
  nlevels_respa = std::max(nlevels_respa, ilevel + 1);
  request();
}

void FixAceUqWatch::pre_force_respa(int, int, int)
{
  request();
}

void FixAceUqWatch::min_pre_force(int)
{
  request();
}

void FixAceUqWatch::setup(int)
{
  if (update->ntimestep % nevery == 0)
    check();
  else
    rehalt_at_setup();
}

void FixAceUqWatch::min_setup(int)
{
  if (update->ntimestep % nevery == 0)
    check();
  else
    rehalt_at_setup();
}

// A run whose first step is no checked step (after reset_timestep, or a run that ended between
// checks) and that starts from the configuration that halted stops too, as one starting at a
// checked step does. halted_now is the same on every rank (a global decision), so either every
// rank computes the fingerprint (collective) or none does.
void FixAceUqWatch::rehalt_at_setup()
{
  if (!halted_now || halt_mode == HALT_NO || forced_timeout || rerun_mode || rerun_stopped) return;
  if (fingerprint() == halted_fingerprint) rehalt();
}

// Sets defer_stop for its lifetime: reset even when check() ends in an error that a library
// caller (Python, the C library interface) catches and survives.
struct DeferStop {
  int &flag;
  explicit DeferStop(int &f) : flag(f) { flag = 1; }
  ~DeferStop() { flag = 0; }
};

void FixAceUqWatch::post_force(int)
{
  if (update->ntimestep % nevery != 0) return;
  DeferStop defer(defer_stop);
  check();
}

// The halt decided after this step's forces takes effect here, where fix halt acts too: of two
// fixes that stop the same step, the one defined first owns the stop.
void FixAceUqWatch::end_of_step()
{
  if (!stop_pending) return;
  stop_pending = 0;
  stop_run("");
}

// rRESPA: once per step, after the outermost level's forces, when every level has been
// computed on the step's final positions.
void FixAceUqWatch::post_force_respa(int, int ilevel, int)
{
  if (ilevel != nlevels_respa - 1 || update->ntimestep % nevery != 0) return;
  DeferStop defer(defer_stop);
  check();
}

// Every energy evaluation of the minimizer at a checked iteration, line-search trials
// included (each is a configuration the potential was asked about).
void FixAceUqWatch::min_post_force(int)
{
  if (update->ntimestep % nevery == 0) check();
}

/* ----------------------------------------------------------------------
   Stop the current run or minimization at the end of this step (the timer's forced timeout,
   as fix halt does); post_run() restores the timer so that later commands run.
------------------------------------------------------------------------- */

void FixAceUqWatch::stop_run(const char *why)
{
  if (defer_stop && !rerun_mode) {
    stop_pending = 1;    // end_of_step stops the run
    return;
  }
  if (rerun_mode) {
    // rerun reads every frame whatever the timer says: stop judging instead.
    rerun_stopped = 1;
    if (comm->me == 0)
      utils::logmesg(lmp,
                     "{}: {}; a rerun cannot be cut short, so the remaining "
                     "frames are read but no longer checked (halt no checks every frame)\n",
                     label, why);
    return;
  }
  // Claim the timer only if nobody stopped the run yet (fix halt ... error soft, a wall-time
  // limit): its owner decides what later runs do.
  if (timer->is_timeout()) return;
  timer->force_timeout();
  forced_timeout = 1;
}

// Stop a run that starts from the configuration that halted.
void FixAceUqWatch::rehalt()
{
  if (halt_mode == HALT_ERROR)
    error->all(FLERR,
               "fix ace/uq/watch: step {} is the configuration that halted the watch "
               "(above the upper cutoff, by the frame rule or by the vote)",
               update->ntimestep);
  if (comm->me == 0 && rehalt_reported != halted_fingerprint)
    utils::logmesg(lmp,
                   "{}: step {} is the configuration that halted (above the "
                   "upper cutoff, by the frame rule or by the vote): this run stops too, and so "
                   "will any run starting here; to go on, unfix the watch, use halt no, or start "
                   "from another configuration\n",
                   label, update->ntimestep);
  rehalt_reported = halted_fingerprint;
  stop_run("");
}

void FixAceUqWatch::check()
{
  // A configuration is checked once, even when a new run starts where the last one ended; but a
  // configuration changed at the same step (displace_atoms, a box change, deleted or created
  // atoms between `run 0` commands, another model loaded by pair_coeff) is a new one and is
  // checked.
  if (rerun_stopped) return;
  const uint64_t fp = fingerprint();
  if (update->ntimestep == last_checked && fp == last_fingerprint) {
    // Judged already. A run that starts from the configuration that halted stops again: going
    // on would integrate on forces the watch has just declared untrustworthy.
    if (halted_now && fp == halted_fingerprint && halt_mode != HALT_NO && !forced_timeout &&
        !rerun_mode)
      rehalt();
    return;
  }
  last_checked = update->ntimestep;
  last_fingerprint = fp;
  if (pair->uq_step(method) != update->ntimestep)
    error->all(FLERR, "fix ace/uq/watch: pair ace/uq did not compute {} at step {}",
               PairAceUq::method_name(method), update->ntimestep);

  const int *clusters = nullptr;
  if (by_cluster) {
    if (pair->gamma_local_cluster_step() != update->ntimestep)
      error->all(FLERR,
                 "fix ace/uq/watch: pair ace/uq did not keep the gamma_local clusters at step {}",
                 update->ntimestep);
    clusters = pair->gamma_local_clusters();
  }

  const double *vals = pair->uq_values(method);
  const int *lone = pair->lone_step() == update->ntimestep ? pair->lone_atoms() : nullptr;
  const int nj = (int) jury.size();
  std::vector<const double *> jvals(nj);
  for (int j = 0; j < nj; j++) {
    if (pair->uq_step(jury[j]) != update->ntimestep)
      error->all(FLERR, "fix ace/uq/watch: pair ace/uq did not compute {} at step {}",
                 PairAceUq::method_name(jury[j]), update->ntimestep);
    jvals[j] = pair->uq_values(jury[j]);
  }
  // upper vote, per juror: whether a watched atom is above its upper cutoff, and the largest
  // u / u_max (reduced with MAX; -1 while no watched atom has a finite u_max, written as nan);
  // the frame rule's log-probability that no atom errs above e_max (reduced with SUM).
  std::vector<double> jmax(2 * nj, 0.0), jsum(nj, 0.0);
  for (int j = 0; j < nj; j++) jmax[nj + j] = -1.0;
  const int nlocal = atom->nlocal;
  const int *mask = atom->mask;
  const int *type = atom->type;
  double local[3] = {0.0, 0.0, 0.0};    // max value, any above lower, any above upper
  bigint nlone_local = 0;
  std::vector<int> flags(nlocal, 0);    // bit 1: above lower, bit 2: above upper, bit 4: lone
  for (int i = 0; i < nlocal; i++) {
    if (!(mask[i] & groupbit)) continue;
    const int s = pair->species_of_type(type[i]);
    if (s < 0) continue;
    if (lone && lone[i]) {
      // No neighbour: every uncertainty is 0 and the force is 0 by symmetry (it cannot be
      // wrong, so no halt), but its energy is the model's isolated-atom E0, which the training
      // data may never have tested: a candidate unless `lone ignore`.
      flags[i] |= 4;
      nlone_local++;
      if (lone_candidate) {
        flags[i] |= 1;
        local[1] = 1.0;
      }
    }
    const int c = clusters ? clusters[i] : -1;
    if (clusters && (c < 0 || c >= ncluster[s]))
      error->one(FLERR, "fix ace/uq/watch: atom {} has gamma_local cluster {} ({} has {})",
                 atom->tag[i], c, species_names[s], ncluster[s]);
    const double v = vals[i];
    local[0] = std::max(local[0], v);
    // A NaN uncertainty (non-finite descriptors: the structure has blown up) is above the
    // cutoffs (`v > cut` alone would let it pass silently), except an upper cutoff of +inf
    // (upper none, or a calibration without one): that never halts, as documented.
    const double up = upper_of(s, c);
    if (!(v <= lower_of(s, c))) flags[i] |= 1;
    if (v > up || (std::isnan(v) && up < INFINITY)) flags[i] |= 2;
    for (int j = 0; j < nj; j++) {
      const double vj = jvals[j][i], uj = jury_upper[j][s];
      // u / u_max where the species has an upper cutoff; a NaN u (a blown-up atom) as +inf,
      // above any cutoff, as the Python watch counts it.
      if (uj < INFINITY && uj > 0.0)
        jmax[nj + j] = std::max(jmax[nj + j], std::isnan(vj) ? INFINITY : vj / uj);
      // Lone atoms (u = 0, force 0 by symmetry) never halt, as above.
      if (flags[i] & 4) continue;
      if (vj > uj || (std::isnan(vj) && uj < INFINITY)) {
        flags[i] |= 2;
        jmax[j] = 1.0;
      }
    }
    if (flags[i] & 1) local[1] = 1.0;
    if (flags[i] & 2) local[2] = 1.0;
  }
  double global[3];
  MPI_Allreduce(local, global, 3, MPI_DOUBLE, MPI_MAX, world);
  bool frame_halt = false;
  // The frame rule's share of this rank: sum over the watched atoms of ln(1 - P(e > e_max | u))
  // under method m's calibrated s(u), with its p_halt. Lone atoms have u = 0 and a force of 0
  // by symmetry: they take no part. The atoms' species are collected once per check.
  std::vector<int> sp, sp_atom;
  if (upper_frame || nj > 0)
    for (int i = 0; i < nlocal; i++) {
      if (!(mask[i] & groupbit) || (flags[i] & 4)) continue;
      const int s = pair->species_of_type(type[i]);
      if (s < 0) continue;
      sp.push_back(s);
      sp_atom.push_back(i);
    }
  std::vector<double> uv(sp.size());
  auto local_log_calm = [&](int m, const double *v, double *p_halt, const char *what) {
    for (size_t k = 0; k < sp_atom.size(); k++) uv[k] = v[sp_atom[k]];
    double lc = 0.0;
    if (aceuq_model_uq_frame_log_calm(pair->model_handle(), m, (int) sp.size(), sp.data(),
                                      uv.data(), &lc, p_halt) != ACEUQ_STATUS_OK)
      error->one(FLERR, "fix ace/uq/watch: {}: {}", what, aceuq_last_error());
    return lc;
  };
  if (upper_frame) {
    double lc_local = local_log_calm(method, vals, &frame_p_halt, "upper frame"), lc = 0.0;
    MPI_Allreduce(&lc_local, &lc, 1, MPI_DOUBLE, MPI_SUM, world);
    // 0.0 - x, not -x: a calm frame (lc = 0) prints 0, not -0.
    frame_p = 0.0 - std::expm1(lc);
    // NaN (a blown-up atom) halts, as a NaN value above upper does. Every rank has the same sum
    // and p_halt; the decision is combined all the same, so that no rank can differ.
    int halt_mine = !(frame_p < frame_p_halt), halt_any = 0;
    MPI_Allreduce(&halt_mine, &halt_any, 1, MPI_INT, MPI_MAX, world);
    frame_halt = halt_any != 0;
  }
  if (nj > 0) {
    // upper vote: each juror's frame rule summed over ranks; every rank then counts the same
    // votes.
    for (int j = 0; j < nj; j++) {
      double ph = 0.0;
      jsum[j] = local_log_calm(jury[j], jvals[j], &ph, "upper vote");
    }
    std::vector<double> gmax(2 * nj), gsum(nj);
    MPI_Allreduce(jmax.data(), gmax.data(), 2 * nj, MPI_DOUBLE, MPI_MAX, world);
    MPI_Allreduce(jsum.data(), gsum.data(), nj, MPI_DOUBLE, MPI_SUM, world);
    jury_votes = 0;
    jury_above = 0;
    for (int j = 0; j < nj; j++) {
      jury_p[j] = 0.0 - std::expm1(gsum[j]);
      // No watched atom with an upper cutoff of this juror (a method that cannot reach e_max,
      // such as a saturating GP): no ratio, nan rather than a 0 that reads as far below one.
      jury_ratio[j] = gmax[nj + j] < 0.0 ? std::nan("") : gmax[nj + j];
      // NaN (a blown-up atom) votes, as in the frame rule.
      jury_votes += !(jury_p[j] < jury_p_halt[j]);
      jury_above += gmax[j] > 0.0;
    }
    // The vote needs two frame rules; one juror's own frame rule (upper auto), its own.
    frame_halt = jury_votes >= std::min(nj, 2);
  }
  MPI_Allreduce(&nlone_local, &nlone_last, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  if (nlone_last > 0 && !lone_reported) {
    lone_reported = 1;
    if (comm->me == 0)
      utils::logmesg(
          lmp,
          "{}: step {}: {} atoms have no neighbour of a model species inside the "
          "model cutoff: their uncertainty is 0 and the model's force on them 0 by symmetry, but "
          "their energy is the model's isolated-atom energy, which training data rarely test; "
          "{} (reported once)\n",
                   label, update->ntimestep, nlone_last,
                   lone_candidate ? "their frames are candidates (lone ignore to skip them, e.g. "
                                    "atoms deposited from the vacuum)"
                                  : "lone ignore: they are not candidates");
  }
  nchecks++;
  // Energies tallied at the next check, as fix halt does: a run that ends at a check (a halt)
  // can be followed by `run ... pre no`, whose first thermo output needs them.
  modify->addstep_compute(update->ntimestep + nevery);
  last_max = global[0];
  running_max = std::max(running_max, global[0]);
  const bool above_lower = global[1] > 0.0;
  const bool halting = halt_mode != HALT_NO && (global[2] > 0.0 || frame_halt);
  if ((above_lower && !dumpfile.empty()) || halting)
    write_frame(flags, halting, global[0], nlone_last);
  // A halt stays the state of this run (a minimizer's later line-search evaluation must not
  // clear it).
  if (halting)
    halted_now = 1;
  else if (!forced_timeout && !rerun_stopped)
    halted_now = 0;
  if (halting) {
    halted_step = update->ntimestep;
    // The configuration that halted (a minimizer's later evaluations change last_fingerprint).
    halted_fingerprint = last_fingerprint;
    if (halt_mode == HALT_ERROR)
      error->all(FLERR, "fix ace/uq/watch: {} {} at step {} (see the log)",
                 upper_vote ? "upper vote:" : PairAceUq::method_name(method),
                 upper_vote ? fmt::format("{} jurors above their upper cutoff, {} frame rules "
                                          "at p_halt",
                                          jury_above, jury_votes)
                 : global[2] > 0.0 ? "above the upper cutoff"
                                   : "likely to err above e_max somewhere (upper frame)",
                 update->ntimestep);
    stop_run("the watch stops at this frame");
  }
}

// 64-bit mixer (splitmix64 finalizer).
static uint64_t mix64(uint64_t z)
{
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Position on a 1e-6 Angstrom grid (insensitive to the last-bit rounding of unwrapping).
static uint64_t grid(double v)
{
  return static_cast<uint64_t>(static_cast<int64_t>(std::llround(v * 1.0e6)));
}

// Order-independent hash of the configuration: every atom's ID, type and unwrapped position
// (so re-wrapping into the box and migration between ranks change nothing), the box, and the
// model loaded.
uint64_t FixAceUqWatch::fingerprint()
{
  uint64_t local = 0;
  double **x = atom->x;
  imageint *image = atom->image;
  for (int i = 0; i < atom->nlocal; i++) {
    double u[3];
    domain->unmap(x[i], image[i], u);
    uint64_t h =
        mix64(static_cast<uint64_t>(atom->tag[i]) ^ (static_cast<uint64_t>(atom->type[i]) << 48));
    for (double v : u) h = mix64(h ^ grid(v));
    local ^= h;
  }
  uint64_t all = 0;
  MPI_Allreduce(&local, &all, 1, MPI_UINT64_T, MPI_BXOR, world);
  for (double v : {domain->boxlo[0], domain->boxlo[1], domain->boxlo[2], domain->boxhi[0],
                   domain->boxhi[1], domain->boxhi[2], domain->xy, domain->xz, domain->yz})
    all = mix64(all ^ grid(v));
  // The model too: after pair_coeff loads another, the same configuration is judged again.
  all = mix64(all ^ pair->model_generation());
  return all ^ mix64(static_cast<uint64_t>(atom->natoms));
}

void FixAceUqWatch::write_frame(const std::vector<int> &flags, bool halting, double gmax,
                                bigint nlone)
{
  const int nlocal = atom->nlocal;
  const int *mask = atom->mask;
  const int *type = atom->type;
  double **x = atom->x;
  const double *vals = pair->uq_values(method);
  const int *clusters = by_cluster ? pair->gamma_local_clusters() : nullptr;
  std::vector<double> mine;
  mine.reserve((size_t) NREC * nlocal);
  // Every atom, so that the frame is the simulated structure (atoms outside the group and
  // of types the model does not handle have watched = 0). Types of unknown element are only
  // possible without a dump file (resolve_elements), where the frame is never written.
  for (int i = 0; i < nlocal; i++) {
    const int s = pair->species_of_type(type[i]);
    const int ws = type_species[type[i]];
    if (ws < 0) continue;
    const bool model_atom = s >= 0;
    const double rec[NREC] = {(double) atom->tag[i],
                              (double) ws,
                              x[i][0],
                              x[i][1],
                              x[i][2],
                              model_atom ? vals[i] : 0.0,
                              (double) (flags[i] & 1),
                              (double) ((flags[i] >> 1) & 1),
                              clusters && model_atom ? (double) clusters[i] : -1.0,
                              model_atom && (mask[i] & groupbit) ? 1.0 : 0.0,
                              (double) ((flags[i] >> 2) & 1)};
    mine.insert(mine.end(), rec, rec + NREC);
  }
  int count = (int) mine.size();
  std::vector<int> counts(comm->nprocs), displs(comm->nprocs);
  MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
  std::vector<double> all;
  if (comm->me == 0) {
    int total = 0;
    for (int p = 0; p < comm->nprocs; p++) {
      displs[p] = total;
      total += counts[p];
    }
    all.resize(total);
  }
  MPI_Gatherv(mine.data(), count, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE,
              0, world);
  // Atoms that left a non-periodic box are no longer owned by any rank but stay in natoms
  // until LAMMPS's lost-atom check (or for good with `thermo_modify lost ignore`): the frame
  // lacks them, and says so.
  bigint owned_local = nlocal, owned = 0;
  MPI_Reduce(&owned_local, &owned, 1, MPI_LMP_BIGINT, MPI_SUM, 0, world);
  const bigint nlost = comm->me == 0 ? std::max<bigint>(0, atom->natoms - owned) : 0;
  const std::string lost_note =
      nlost > 0 ? fmt::format(" ({} atoms of the system are lost from the box and not in the frame)",
                              nlost)
                : std::string();

  int ok = 1;
  std::string message;
  if (comm->me == 0) {
    const int n = (int) all.size() / NREC;
    std::vector<int> order(n);
    for (int k = 0; k < n; k++) order[k] = k;
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return all[NREC * a] < all[NREC * b]; });
    std::vector<int64_t> ids(n);
    std::vector<int> species(n), cl(n);
    std::vector<double> pos(3 * n), value(n), lo(n), hi(n), cluster(n), watched(n), lone_col(n);
    std::set<std::pair<int, int>> clusters_lo, clusters_hi;
    const double *boxlo = domain->boxlo;
    int worst = -1, nlo = 0, nhi = 0;
    for (int k = 0; k < n; k++) {
      const double *r = &all[NREC * order[k]];
      ids[k] = (int64_t) std::llround(r[0]);
      species[k] = (int) r[1];
      for (int d = 0; d < 3; d++) pos[3 * k + d] = r[2 + d] - boxlo[d];
      value[k] = r[5];
      lo[k] = r[6];
      hi[k] = r[7];
      cluster[k] = r[8];
      cl[k] = (int) r[8];
      watched[k] = r[9];
      lone_col[k] = r[10];
      nlo += (int) lo[k];
      nhi += (int) hi[k];
      // Lone atoms are candidates for their empty environment, not for their cluster.
      if (lo[k] > 0.0 && lone_col[k] == 0.0) clusters_lo.insert({species[k], cl[k]});
      if (hi[k] > 0.0) clusters_hi.insert({species[k], cl[k]});
      // The atom named when halting: the largest value above its upper cutoff.
      const bool better =
          worst < 0 || (hi[k] > hi[worst]) || (hi[k] == hi[worst] && value[k] > value[worst]);
      if (better) worst = k;
    }
    const double *h = domain->h;    // xprd yprd zprd yz xz xy
    const double cell[9] = {h[0], 0.0, 0.0, h[5], h[1], 0.0, h[4], h[3], h[2]};
    const int pbc[3] = {domain->xperiodic, domain->yperiodic, domain->zperiodic};
    const std::string qname = PairAceUq::method_name(method);
    std::vector<const char *> col_names = {qname.c_str(), "above_lower", "above_upper"};
    std::vector<const double *> col_values = {value.data(), lo.data(), hi.data()};
    if (by_cluster) {
      col_names.push_back("cluster");
      col_values.push_back(cluster.data());
    }
    col_names.push_back("watched");
    col_values.push_back(watched.data());
    col_names.push_back("lone");
    col_values.push_back(lone_col.data());
    const double time = update->atime + (update->ntimestep - update->atimestep) * update->dt;
    std::vector<std::string> info_v = {std::to_string(update->ntimestep),
                                       real_text(time),
                                       qname,
                                       real_text(gmax),
                                       std::to_string(nlo),
                                       std::to_string(nhi),
                                       std::to_string(nlone),
                                       halting ? "halt" : "candidate"};
    std::vector<const char *> info_k = {"step",          "time",          "quantity",
                                        "max_value",     "n_above_lower", "n_above_upper",
                                        "n_lone",        "config_type"};
    if (nlost > 0) {
      info_k.push_back("n_lost");
      info_v.push_back(std::to_string(nlost));
    }
    if (upper_frame) {
      info_k.push_back("p_frame");
      info_v.push_back(real_text(frame_p));
    }
    // upper vote: every juror's frame probability and largest u / u_max ("gamma:0.97 ..."), and
    // the count of frame rules at p_halt.
    std::string jp, jr, jlog;
    for (size_t j = 0; j < jury.size(); j++) {
      jlog += fmt::format("{}{} {:.3g} ({:.3g})", j == 0 ? "" : ", ",
                          PairAceUq::method_name(jury[j]), jury_p[j], jury_ratio[j]);
      jp += fmt::format("{}{}:{}", j == 0 ? "" : " ", PairAceUq::method_name(jury[j]),
                        real_text(jury_p[j]));
      jr += fmt::format("{}{}:{}", j == 0 ? "" : " ", PairAceUq::method_name(jury[j]),
                        real_text(jury_ratio[j]));
    }
    if (upper_vote) {
      info_k.push_back("vote_p_frame");
      info_v.push_back(jp);
      info_k.push_back("vote_u_over_u_max");
      info_v.push_back(jr);
      info_k.push_back("votes");
      info_v.push_back(std::to_string(jury_votes));
    }
    if (by_cluster) {
      // Which (species, cluster) fired: e.g. "Li:0 Li:2", or "none".
      info_k.push_back("clusters_above_lower");
      info_v.push_back(cluster_list(clusters_lo, species_names));
      info_k.push_back("clusters_above_upper");
      info_v.push_back(cluster_list(clusters_hi, species_names));
    }
    std::vector<const char *> info_vp;
    for (const auto &v : info_v) info_vp.push_back(v.c_str());

    aceuq_frame_t frame;
    frame.natoms = n;
    frame.cell = cell;
    frame.pbc = pbc;
    frame.x = pos.data();
    frame.species = species.data();
    frame.ids = ids.data();
    frame.ncols = (int) col_names.size();
    frame.col_names = col_names.data();
    frame.col_values = col_values.data();
    frame.ninfo = (int) info_k.size();
    frame.info_keys = info_k.data();
    frame.info_values = info_vp.data();
    std::vector<const char *> extra;
    for (const auto &e : extra_names) extra.push_back(e.c_str());
    frame.nextra_species = (int) extra.size();
    frame.extra_species = extra.empty() ? nullptr : extra.data();
    if (!dumpfile.empty()) {
      if (aceuq_append_frame(pair->model_handle(), dumpfile.c_str(), &frame) != ACEUQ_STATUS_OK) {
        ok = 0;
        message = aceuq_last_error();
      } else {
        nframes++;
      }
    }
    if (halting && upper_vote && worst >= 0) {
      utils::logmesg(lmp,
                     "{}: halting at step {} by {}: {} of {} jurors have "
                     "an atom above their upper cutoff, {} frame rules reach p_halt; "
                     "P(some atom errs above e_max) (largest u / u_max): {}; the largest {} is "
                     "{:.6g} (atom {}; {} atoms above lower){}{}\n",
                     label, update->ntimestep,
                     jury.size() == 1
                         ? fmt::format("{}'s frame rule", PairAceUq::method_name(jury[0]))
                         : std::string("upper vote"),
                     jury_above, jury.size(), jury_votes, jlog, qname,
                     value[worst], ids[worst], nlo,
                     dumpfile.empty() ? "" : "; frame written to " + dumpfile, lost_note);
    } else if (halting && worst >= 0 && nhi == 0) {
      // Halted by the frame rule alone.
      utils::logmesg(lmp,
                     "{}: halting at step {}: P(some atom errs above e_max) = {:.6g} "
                     ">= {:.3g} (upper frame); no atom is above its upper cutoff, the largest {} "
                     "is {:.6g} (atom {}; {} atoms above lower){}{}\n",
                     label, update->ntimestep, frame_p, frame_p_halt, qname, value[worst], ids[worst],
                     nlo, dumpfile.empty() ? "" : "; frame written to " + dumpfile, lost_note);
    } else if (halting && worst >= 0) {
      const int s = species[worst];
      const int c = by_cluster ? cl[worst] : -1;
      const std::string where =
          by_cluster ? fmt::format(" ({} cluster {})", species_names[s], c) : std::string();
      utils::logmesg(
          lmp,
          "{}: halting at step {}: atom {}{} has {} = {:.6g} above the "
          "upper cutoff {:.6g} ({} atoms above upper, {} above lower){}{}{}\n",
          label, update->ntimestep, ids[worst], where, qname, value[worst], upper_of(s, c), nhi, nlo,
          by_cluster ? "; clusters above upper: " + cluster_list(clusters_hi, species_names) : "",
          dumpfile.empty() ? "" : "; frame written to " + dumpfile, lost_note);
    } else if (nlost > 0 && !dumpfile.empty() && ok) {
      utils::logmesg(lmp, "{}: step {}: candidate frame written to {}{}\n", label,
                     update->ntimestep, dumpfile, lost_note);
    }
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, world);
  MPI_Bcast(&nframes, 1, MPI_LMP_BIGINT, 0, world);
  if (!ok) error->all(FLERR, "fix ace/uq/watch: cannot write candidates: {}", message);
}

void FixAceUqWatch::post_run()
{
  // The halt ended this run only: later run/minimize commands run (fix halt's "continue").
  if (forced_timeout) timer->reset_timeout();
  forced_timeout = 0;
  rerun_stopped = 0;
  init_logged = 0;
  if (comm->me != 0) return;
  utils::logmesg(lmp, "{}: {} checks of {}, max {:.6g}, {} frames written{}{}\n", label,
                 nchecks, method >= 0 ? PairAceUq::method_name(method) : "?", running_max, nframes,
                 dumpfile.empty() ? "" : " to " + dumpfile,
                 halted_step >= 0 ? fmt::format(", halted at step {}", halted_step) : "");
}

double FixAceUqWatch::compute_scalar()
{
  return running_max;
}

double FixAceUqWatch::compute_vector(int n)
{
  switch (n) {
  case 0:
    return last_max;
  case 1:
    return running_max;
  case 2:
    return (double) nframes;
  case 3:
    return (double) nchecks;
  case 4:
    return (double) halted_now;
  case 5:
    return (double) halted_step;
  default:
    return (double) nlone_last;
  }
}
