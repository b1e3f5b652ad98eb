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
#include "pair_ace_uq.h"
#include "timer.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mpi.h>

using namespace LAMMPS_NS;
using namespace FixConst;

namespace {
// Per-atom record gathered to rank 0: id, species, x, y, z, value, above lower, above upper.
constexpr int NREC = 8;
}    // namespace

FixAceUqWatch::FixAceUqWatch(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), method(-1), lower_auto(1), upper_auto(1), upper_none(0), lower_value(0.0),
    upper_value(0.0), halt_mode(HALT_SOFT), pair(nullptr), nchecks(0), nframes(0), halted_step(-1),
    running_max(0.0), last_max(0.0), last_checked(-1)
{
  if (narg < 4) utils::missing_cmd_args(FLERR, "fix ace/uq/watch", error);
  nevery = utils::inumeric(FLERR, arg[3], false, lmp);
  if (nevery <= 0) error->all(FLERR, "fix ace/uq/watch: N must be > 0, got {}", nevery);

  int iarg = 4;
  while (iarg < narg) {
    const std::string key = arg[iarg];
    if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "fix ace/uq/watch " + key, error);
    const std::string val = arg[iarg + 1];
    if (key == "quantity") {
      method = PairAceUq::method_id(val);
      if (method < 0)
        error->all(FLERR, "fix ace/uq/watch: unknown quantity '{}' ({})", val,
                   PairAceUq::method_names());
    } else if (key == "dump") {
      dumpfile = val;
    } else if (key == "lower") {
      lower_auto = (val == "auto");
      if (!lower_auto) lower_value = utils::numeric(FLERR, val, false, lmp);
    } else if (key == "upper") {
      upper_auto = (val == "auto");
      upper_none = (val == "none");
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
    } else {
      error->all(FLERR,
                 "fix ace/uq/watch: unknown keyword '{}' (quantity, dump, lower, upper, halt)",
                 key);
    }
    iarg += 2;
  }
  if (!lower_auto && !upper_auto && !upper_none && upper_value < lower_value)
    error->all(FLERR, "fix ace/uq/watch: upper ({}) is below lower ({})", upper_value, lower_value);

  scalar_flag = 1;
  vector_flag = 1;
  size_vector = 4;
  global_freq = nevery;
  extscalar = 0;
  extvector = 0;
}

int FixAceUqWatch::setmask()
{
  return PRE_FORCE | END_OF_STEP;
}

void FixAceUqWatch::init()
{
  pair = dynamic_cast<PairAceUq *>(force->pair_match("ace/uq", 1, 0));
  if (!pair) error->all(FLERR, "fix ace/uq/watch requires pair_style ace/uq");
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

  int ns = 0;
  if (aceuq_model_nspecies(pair->model_handle(), &ns) != ACEUQ_STATUS_OK)
    error->all(FLERR, "fix ace/uq/watch: {}", aceuq_last_error());
  lower.assign(ns, lower_value);
  upper.assign(ns, upper_none ? std::numeric_limits<double>::infinity() : upper_value);
  for (int s = 0; s < ns; s++) {
    if (!lower_auto && !upper_auto) break;
    double lo = 0.0, hi = 0.0;
    if (aceuq_model_uq_cutoffs(pair->model_handle(), method, s, &lo, &hi) != ACEUQ_STATUS_OK)
      error->all(FLERR, "fix ace/uq/watch: {}", aceuq_last_error());
    if (lower_auto) lower[s] = lo;
    if (upper_auto) upper[s] = hi;
  }
  if (comm->me == 0) {
    std::string cut;
    for (int s = 0; s < ns; s++)
      cut += fmt::format(" [{}: {:.4g} / {:.4g}]", s, lower[s], upper[s]);
    utils::logmesg(lmp, "fix ace/uq/watch: every {} steps, {} lower/upper per species{}{}{}\n",
                   nevery, PairAceUq::method_name(method), cut,
                   dumpfile.empty() ? "" : ", candidates to " + dumpfile,
                   halt_mode == HALT_NO ? "" : ", halts above upper");
  }
}

void FixAceUqWatch::setup_pre_force(int)
{
  if (update->ntimestep % nevery == 0) pair->request_uq(method);
}

void FixAceUqWatch::pre_force(int)
{
  if (update->ntimestep % nevery == 0) pair->request_uq(method);
}

void FixAceUqWatch::setup(int)
{
  if (update->ntimestep % nevery == 0) check();
}

void FixAceUqWatch::end_of_step()
{
  check();
}

void FixAceUqWatch::check()
{
  // A configuration is checked once, even when a new run starts where the last one ended.
  if (update->ntimestep == last_checked) return;
  last_checked = update->ntimestep;
  if (pair->uq_step(method) != update->ntimestep)
    error->all(FLERR, "fix ace/uq/watch: pair ace/uq did not compute {} at step {}",
               PairAceUq::method_name(method), update->ntimestep);

  const double *vals = pair->uq_values(method);
  const int nlocal = atom->nlocal;
  const int *mask = atom->mask;
  const int *type = atom->type;
  double local[3] = {0.0, 0.0, 0.0};    // max value, any above lower, any above upper
  std::vector<int> flags(nlocal, 0);    // bit 1: above lower, bit 2: above upper
  for (int i = 0; i < nlocal; i++) {
    if (!(mask[i] & groupbit)) continue;
    const int s = pair->species_of_type(type[i]);
    if (s < 0) continue;
    const double v = vals[i];
    local[0] = std::max(local[0], v);
    if (v > lower[s]) flags[i] |= 1;
    if (v > upper[s]) flags[i] |= 2;
    if (flags[i] & 1) local[1] = 1.0;
    if (flags[i] & 2) local[2] = 1.0;
  }
  double global[3];
  MPI_Allreduce(local, global, 3, MPI_DOUBLE, MPI_MAX, world);
  nchecks++;
  last_max = global[0];
  running_max = std::max(running_max, global[0]);
  const bool above_lower = global[1] > 0.0;
  const bool halting = halt_mode != HALT_NO && global[2] > 0.0;
  if ((above_lower && !dumpfile.empty()) || halting) write_frame(flags, halting, global[0]);
  if (halting) {
    halted_step = update->ntimestep;
    if (halt_mode == HALT_ERROR)
      error->all(FLERR, "fix ace/uq/watch: {} above the upper cutoff at step {} (see the log)",
                 PairAceUq::method_name(method), update->ntimestep);
    timer->force_timeout();
  }
}

void FixAceUqWatch::write_frame(const std::vector<int> &flags, bool halting, double gmax)
{
  const int nlocal = atom->nlocal;
  const int *mask = atom->mask;
  const int *type = atom->type;
  double **x = atom->x;
  const double *vals = pair->uq_values(method);
  std::vector<double> mine;
  mine.reserve((size_t) NREC * nlocal);
  for (int i = 0; i < nlocal; i++) {
    if (!(mask[i] & groupbit)) continue;
    const int s = pair->species_of_type(type[i]);
    if (s < 0) continue;
    const double rec[NREC] = {(double) atom->tag[i],
                              (double) s,
                              x[i][0],
                              x[i][1],
                              x[i][2],
                              vals[i],
                              (double) (flags[i] & 1),
                              (double) ((flags[i] >> 1) & 1)};
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

  int ok = 1;
  std::string message;
  if (comm->me == 0) {
    const int n = (int) all.size() / NREC;
    std::vector<int> order(n);
    for (int k = 0; k < n; k++) order[k] = k;
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return all[NREC * a] < all[NREC * b]; });
    std::vector<int64_t> ids(n);
    std::vector<int> species(n);
    std::vector<double> pos(3 * n), value(n), lo(n), hi(n);
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
      nlo += (int) lo[k];
      nhi += (int) hi[k];
      if (worst < 0 || value[k] > value[worst]) worst = k;
    }
    const double *h = domain->h;    // xprd yprd zprd yz xz xy
    const double cell[9] = {h[0], 0.0, 0.0, h[5], h[1], 0.0, h[4], h[3], h[2]};
    const int pbc[3] = {domain->xperiodic, domain->yperiodic, domain->zperiodic};
    const std::string qname = PairAceUq::method_name(method);
    const std::string cname_lo = "above_lower", cname_hi = "above_upper";
    const char *col_names[3] = {qname.c_str(), cname_lo.c_str(), cname_hi.c_str()};
    const double *col_values[3] = {value.data(), lo.data(), hi.data()};
    const double time = update->atime + (update->ntimestep - update->atimestep) * update->dt;
    const std::string info_v[7] = {
        std::to_string(update->ntimestep), fmt::format("{:.10g}", time), qname,
        fmt::format("{:.10g}", gmax),      std::to_string(nlo),          std::to_string(nhi),
        halting ? "halt" : "candidate"};
    const char *info_k[7] = {"step",          "time",          "quantity",   "max_value",
                             "n_above_lower", "n_above_upper", "config_type"};
    const char *info_vp[7];
    for (int k = 0; k < 7; k++) info_vp[k] = info_v[k].c_str();

    aceuq_frame_t frame;
    frame.natoms = n;
    frame.cell = cell;
    frame.pbc = pbc;
    frame.x = pos.data();
    frame.species = species.data();
    frame.ids = ids.data();
    frame.ncols = 3;
    frame.col_names = col_names;
    frame.col_values = col_values;
    frame.ninfo = 7;
    frame.info_keys = info_k;
    frame.info_values = info_vp;
    if (!dumpfile.empty()) {
      if (aceuq_append_frame(pair->model_handle(), dumpfile.c_str(), &frame) != ACEUQ_STATUS_OK) {
        ok = 0;
        message = aceuq_last_error();
      } else {
        nframes++;
      }
    }
    if (halting && worst >= 0) {
      const int s = species[worst];
      utils::logmesg(lmp,
                     "fix ace/uq/watch: halting at step {}: atom {} has {} = {:.6g} above the "
                     "upper cutoff {:.6g} ({} atoms above upper, {} above lower){}\n",
                     update->ntimestep, ids[worst], qname, value[worst], upper[s], nhi, nlo,
                     dumpfile.empty() ? "" : "; frame written to " + dumpfile);
    }
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, world);
  MPI_Bcast(&nframes, 1, MPI_LMP_BIGINT, 0, world);
  if (!ok) error->all(FLERR, "fix ace/uq/watch: cannot write candidates: {}", message);
}

void FixAceUqWatch::post_run()
{
  if (comm->me != 0) return;
  utils::logmesg(lmp, "fix ace/uq/watch: {} checks of {}, max {:.6g}, {} frames written{}{}\n",
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
  default:
    return (double) nchecks;
  }
}
