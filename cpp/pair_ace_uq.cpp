/* ----------------------------------------------------------------------
   aceuq: pair style ace/uq.

     pair_style ace/uq [uq_every N] [uq gamma,gamma_local,...]
     pair_coeff * * model.aceuq Li [Mg|NULL ...]
     pair_coeff * * Cu-PBE-core-rep.ace Cu      (a pacemaker potential alone: no uncertainty)
     pair_coeff * * pot.yaml pot.asi Cu         (pacemaker + active-set inverse: gamma)
     pair_coeff * * pot.yaml pot.asi pot.cutoffs.toml Cu   (+ calibrated cutoffs of gamma)
     pair_coeff * * pot.yaml pot.asi pot.lasi pot.cutoffs.toml Cu
                                               (+ clustered active sets: gamma_local)

   Energies, forces, per-atom energy and virial from the Rust library
   (aceuq_compute); per-atom uncertainties on the steps they are asked for:
   every N steps (uq_every), or when fix pair / fix ace/uq/watch set the
   <method>_flag trigger. Only glue here; the science is in src/.
------------------------------------------------------------------------- */

#include "pair_ace_uq.h"

#include "aceuq.h"
#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cstring>

using namespace LAMMPS_NS;

// Method names, fit options and ids come from the library's one table (src/uq/method.rs) through
// the C ABI; NMETHODS only sizes the arrays and is checked against the library in the constructor.
const char *PairAceUq::method_name(int m)
{
  const char *name = aceuq_method_name(m);
  return name ? name : "?";
}

const char *PairAceUq::method_fit_option(int m)
{
  const char *option = aceuq_method_fit_option(m);
  return option ? option : "?";
}

int PairAceUq::method_id(const std::string &name)
{
  for (int m = 0; m < NMETHODS; m++)
    if (name == method_name(m)) return m;
  return -1;
}

std::string PairAceUq::method_names()
{
  std::string names;
  for (int m = 0; m < NMETHODS; m++) names += std::string(m ? ", " : "") + method_name(m);
  return names;
}

/* ---------------------------------------------------------------------- */

PairAceUq::PairAceUq(LAMMPS *lmp) :
    Pair(lmp), model(nullptr), cutmax(0.0), uq_every(0), uq_named(0), cluster_wanted(0),
    cluster_last_step(-1), lone_last_step(-1), n_ens_cols(0)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  // A plugin built against another version of the library's header would index the wrong arrays.
  if (aceuq_method_count() != NMETHODS)
    error->all(FLERR,
               "pair ace/uq: the aceuq library knows {} uncertainty methods, this plugin {}: "
               "rebuild the plugin against the library's include/aceuq.h",
               aceuq_method_count(), NMETHODS);
  if (!aceuq_struct_sizes_match(sizeof(aceuq_system_t), sizeof(aceuq_results_t),
                                sizeof(aceuq_frame_t)))
    error->all(FLERR,
               "pair ace/uq: this plugin was built against another version of the aceuq "
               "library's include/aceuq.h (its structs differ): rebuild the plugin (make build)");
  for (int m = 0; m < NMETHODS; m++) {
    uq_selected[m] = 0;
    uq_requested[m] = 0;
    available[m] = 0;
    uq_flag[m] = 0;
    uq_last_step[m] = -1;
  }
}

PairAceUq::~PairAceUq()
{
  free_model();
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairAceUq::free_model()
{
  aceuq_model_free(model);
  model = nullptr;
}

void PairAceUq::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

/* ----------------------------------------------------------------------
   pair_style ace/uq [uq_every N] [uq m1,m2,...]
------------------------------------------------------------------------- */

void PairAceUq::settings(int narg, char **arg)
{
  uq_every = 0;
  uq_named = 0;
  for (int m = 0; m < NMETHODS; m++) uq_requested[m] = 0;
  int iarg = 0;
  while (iarg < narg) {
    std::string key = arg[iarg];
    if (key == "uq_every") {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "pair_style ace/uq uq_every", error);
      uq_every = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (uq_every < 0)
        error->all(FLERR, "pair_style ace/uq: uq_every must be >= 0, got {}", uq_every);
      iarg += 2;
    } else if (key == "uq") {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "pair_style ace/uq uq", error);
      std::string list = arg[iarg + 1];
      size_t start = 0;
      while (start <= list.size()) {
        size_t end = list.find(',', start);
        if (end == std::string::npos) end = list.size();
        const std::string part = list.substr(start, end - start);
        int m = method_id(part);
        if (m < 0)
          error->all(FLERR, "pair_style ace/uq: unknown uncertainty method '{}' (known: {})", part,
                     method_names());
        uq_requested[m] = 1;
        uq_named = 1;
        start = end + 1;
      }
      iarg += 2;
    } else {
      error->all(FLERR, "pair_style ace/uq: unknown keyword '{}' (expected uq_every or uq)", key);
    }
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.aceuq Elem1 [Elem2|NULL ...]
------------------------------------------------------------------------- */

void PairAceUq::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  // An optional active-set inverse follows a pacemaker potential, as for ML-PACE's
  // pace/extrapolation: pair_coeff * * pot.yaml pot.asi Elem ...
  auto ends_with = [](const std::string &s, const std::string &tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  // then, optionally, the clustered local active sets `aceuq activeset --clusters K` wrote
  // (pot.lasi, for gamma_local) and the cutoffs `aceuq calibrate` wrote (pot.cutoffs.toml).
  // Decided by the names alone, so that a wrong number of elements is reported as that.
  const bool has_asi = narg > 3 && ends_with(arg[3], ".asi");
  const bool has_lasi = has_asi && narg > 4 && ends_with(arg[4], ".lasi");
  const int cut_arg = 4 + (has_lasi ? 1 : 0);
  const bool has_cutoffs = has_asi && narg > cut_arg && ends_with(arg[cut_arg], ".toml");
  const int first_elem = 3 + (has_asi ? 1 : 0) + (has_lasi ? 1 : 0) + (has_cutoffs ? 1 : 0);
  if (narg > 3 && !has_asi && ends_with(arg[3], ".lasi"))
    error->all(FLERR,
               "pair_coeff for ace/uq: {} (clustered active sets) goes after the potential's "
               "active-set inverse: '* * pot.yaml pot.asi pot.lasi [pot.cutoffs.toml] Elem ...'",
               arg[3]);
  for (int k = first_elem; k < narg; k++)
    if (ends_with(arg[k], ".asi") || ends_with(arg[k], ".lasi") || ends_with(arg[k], ".toml") ||
        ends_with(arg[k], ".aceuq"))
      error->all(FLERR,
                 "pair_coeff for ace/uq: '{}' is a file where an element name is expected; the "
                 "order is '* * pot.yaml pot.asi [pot.lasi] [pot.cutoffs.toml] Elem ...' (a "
                 ".lasi or cutoffs file needs the .asi before it)",
                 arg[k]);
  if (narg != first_elem + ntypes)
    error->all(FLERR,
               "pair_coeff for ace/uq needs '* * model.aceuq' (or '* * pot.yaml pot.asi "
               "[pot.lasi] [pot.cutoffs.toml]') followed by one element name (or NULL) per atom "
               "type: {} types, got {} names",
               ntypes, narg - first_elem);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for ace/uq must use '* *' (one model for all types)");

  free_model();
  model_file = arg[2];
  // Every pair_coeff, on every rank, draws the next number: unique across pair styles
  // re-created by later pair_style commands too.
  static uint64_t loads = 0;
  generation = ++loads;
  // Every rank reads the files; decide collectively so that a rank that failed alone (a file
  // system visible on some nodes only, say) ends the run instead of leaving the others waiting.
  auto collective = [&](aceuq_status_t status, const std::string &what, const std::string &file) {
    const int ok_local = status == ACEUQ_STATUS_OK ? 1 : 0;
    const std::string load_error = ok_local ? "" : aceuq_last_error();
    int ok_min = 0, ok_max = 0;
    MPI_Allreduce(&ok_local, &ok_min, 1, MPI_INT, MPI_MIN, world);
    MPI_Allreduce(&ok_local, &ok_max, 1, MPI_INT, MPI_MAX, world);
    if (ok_max == 0) error->all(FLERR, "ace/uq: cannot load {}: {}", what, load_error);
    if (ok_min == 0) {
      // Some ranks failed: the lowest of them tells every rank why, and all stop together (an
      // abort from the failing rank alone could end the job before its message is printed).
      const int mine = ok_local ? comm->nprocs : comm->me;
      int first = 0;
      MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, world);
      int len = comm->me == first ? (int) load_error.size() : 0;
      MPI_Bcast(&len, 1, MPI_INT, first, world);
      std::string why = comm->me == first ? load_error : std::string(len, ' ');
      if (len > 0) MPI_Bcast(&why[0], len, MPI_CHAR, first, world);
      error->all(FLERR, "ace/uq: cannot load {} on MPI rank {} (other ranks could): {}", file,
                 first, why);
    }
  };
  collective(aceuq_model_load(model_file.c_str(), &model), "model", "model " + model_file);
  if (has_asi) {
    const std::string what = std::string("active set ") + arg[3];
    collective(aceuq_model_load_active_set(model, arg[3]), what, what);
  }
  if (has_lasi) {
    // The same entry point as the .asi: the library tells the two apart by the extension.
    const std::string what = std::string("clustered active sets ") + arg[4];
    collective(aceuq_model_load_active_set(model, arg[4]), what, what);
  }
  if (has_cutoffs) {
    const std::string what = std::string("cutoffs ") + arg[cut_arg];
    collective(aceuq_model_load_cutoffs(model, arg[cut_arg]), what, what);
  }

  map.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    const char *elem = arg[first_elem - 1 + t];
    if (strcmp(elem, "NULL") == 0) continue;
    int idx = -1;
    if (aceuq_model_species_index(model, elem, &idx) != ACEUQ_STATUS_OK)
      error->all(FLERR, "ace/uq: atom type {}: {} (model {})", t, aceuq_last_error(), model_file);
    map[t] = idx;
  }
  if (aceuq_model_cutoff(model, &cutmax) != ACEUQ_STATUS_OK)
    error->all(FLERR, "ace/uq: {}", aceuq_last_error());

  int count = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = (map[i] >= 0 && map[j] >= 0) ? 1 : 0;
      count += setflag[i][j];
    }
  if (count == 0) error->all(FLERR, "ace/uq: pair_coeff maps no atom type to a model species");

  resolve_uq_selection();
  if (aceuq_model_ensemble_columns(model, &n_ens_cols) != ACEUQ_STATUS_OK)
    error->all(FLERR, "ace/uq: {}", aceuq_last_error());
  // Ensemble force columns on ghost atoms are summed onto their owners.
  comm_reverse = 3 * n_ens_cols;
  if (comm->me == 0) {
    std::string have;
    for (int m = 0; m < NMETHODS; m++)
      if (available[m]) have += std::string(have.empty() ? "" : ",") + method_name(m);
    utils::logmesg(lmp,
                   "ace/uq: model {} (aceuq {}, {} kernels), cutoff {:.4g} A, uncertainty: {}\n",
                   model_file, aceuq_version(), aceuq_simd_kernels(), cutmax,
                   have.empty() ? "none" : have);
  }
}

/* ----------------------------------------------------------------------
   The methods computed every uq_every steps: those named by pair_style uq (each must be in
   the model), else every method the model has. Resolved at pair_coeff (so that a missing
   method is reported there) and again at init, so that a pair_style command re-issued after
   pair_coeff (which keeps the model) takes effect instead of leaving the old selection.
------------------------------------------------------------------------- */

void PairAceUq::resolve_uq_selection()
{
  for (int m = 0; m < NMETHODS; m++) uq_selected[m] = 0;
  int format = 0;
  if (aceuq_model_format(model, &format) != ACEUQ_STATUS_OK)
    error->all(FLERR, "ace/uq: {}", aceuq_last_error());
  for (int m = 0; m < NMETHODS; m++) {
    int has = 0;
    if (aceuq_model_has_method(model, m, &has) != ACEUQ_STATUS_OK)
      error->all(FLERR, "ace/uq: {}", aceuq_last_error());
    available[m] = has;
    if (uq_named && uq_requested[m] && !has && format == 1)
      error->all(FLERR,
                 "ace/uq: {} is a pacemaker potential: aceuq gives it only 'gamma', with an "
                 "active-set inverse, and 'gamma_local', with clustered active sets (pair_coeff * "
                 "* {} pot.asi [pot.lasi] ...), so it has no '{}' uncertainty here (remove 'uq "
                 "{}' from pair_style{})",
                 model_file, model_file, method_name(m), method_name(m),
                 m == ACEUQ_METHOD_GAMMA         ? " or add the .asi file"
                 : m == ACEUQ_METHOD_GAMMA_LOCAL ? " or add the .lasi file"
                                                 : "");
    if (uq_named && uq_requested[m] && !has)
      error->all(FLERR,
                 "ace/uq: model {} has no '{}' uncertainty (pair_style ... uq {}); refit it with "
                 "`aceuq fit {}`",
                 model_file, method_name(m), method_name(m), method_fit_option(m));
  }
  for (int m = 0; m < NMETHODS; m++) uq_selected[m] = uq_named ? uq_requested[m] : available[m];
}

/* ---------------------------------------------------------------------- */

void PairAceUq::init_style()
{
  if (!model) error->all(FLERR, "ace/uq: no model: use pair_coeff * * model.aceuq ...");
  resolve_uq_selection();
  if (force->newton_pair == 0) error->all(FLERR, "Pair style ace/uq requires newton pair on");
  // Models are fitted in eV and Angstrom; any other unit system would read them as kcal/mol,
  // nm, ... without a word. LAMMPS converts nothing for pair styles, so refuse.
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR,
               "pair ace/uq needs 'units metal' (eV, Angstrom, ps: the units of the model), got "
               "'units {}'; put 'units metal' before the box is defined",
               update->unit_style);
  // Ensemble force columns on ghost atoms are summed onto their owners (comm_reverse, set by
  // pair_coeff). Under pair_style hybrid the communication buffers are sized from the hybrid
  // style's comm_reverse, which copies its sub-styles' only when the sub-styles are created,
  // before any pair_coeff: raise it here (Comm::init, which sizes them, runs after this).
  if (force->pair && force->pair != this)
    force->pair->comm_reverse = std::max(force->pair->comm_reverse, comm_reverse);
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairAceUq::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "All pair coeffs are not set");
  return cutmax;
}

/* ---------------------------------------------------------------------- */

void PairAceUq::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);

  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;

  if ((int) species.size() < nall) {
    species.resize(nall);
    tags.resize(nall);
  }
  for (int k = 0; k < nall; k++) {
    species[k] = map[type[k]];
    tags[k] = atom->tag ? (int64_t) atom->tag[k] : (int64_t) k + 1;
  }

  // Compressed neighbour list, cut at the model's largest cutoff (the list includes the skin).
  const double cutsq_max = cutmax * cutmax;
  offsets.resize(inum + 1);
  neigh.clear();
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    offsets[ii] = (int) neigh.size();
    if (species[i] < 0) continue;
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      if (species[j] < 0) continue;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      if (dx * dx + dy * dy + dz * dz < cutsq_max) neigh.push_back(j);
    }
  }
  offsets[inum] = (int) neigh.size();
  if (fij.size() < 3 * neigh.size()) fij.resize(3 * neigh.size());
  if ((int) eatom_buf.size() < nlocal) eatom_buf.resize(nlocal);

  // Which uncertainties to compute this step.
  const bool periodic = uq_every > 0 && update->ntimestep % uq_every == 0;
  int methods[NMETHODS];
  double *outs[NMETHODS];
  int n_uq = 0;
  for (int m = 0; m < NMETHODS; m++) {
    if (!available[m] || !(uq_flag[m] || (periodic && uq_selected[m]))) continue;
    if ((int) uq_arrays[m].size() < atom->nmax) uq_arrays[m].resize(atom->nmax);
    std::fill(uq_arrays[m].begin(), uq_arrays[m].begin() + nlocal, 0.0);
    methods[n_uq] = m;
    outs[n_uq] = uq_arrays[m].data();
    n_uq++;
  }

  aceuq_system_t sys;
  sys.nlocal = nlocal;
  sys.nall = nall;
  sys.x = nall > 0 ? &x[0][0] : nullptr;
  sys.species = species.data();
  sys.tag = tags.data();
  sys.inum = inum;
  sys.ilist = ilist;
  sys.offsets = offsets.data();
  sys.neigh = neigh.data();

  aceuq_results_t res;
  double energy = 0.0;
  res.energy = &energy;
  res.eatom = eatom_buf.data();
  res.fij = fij.data();
  res.n_uq = n_uq;
  res.uq_methods = methods;
  res.uq_values = outs;
  bool want_ens = false;
  for (int k = 0; k < n_uq; k++) want_ens = want_ens || methods[k] == ACEUQ_METHOD_ENSEMBLE;
  if (want_ens && ens_forces.size() < (size_t) 3 * n_ens_cols * atom->nmax)
    ens_forces.resize((size_t) 3 * n_ens_cols * atom->nmax);
  res.ens_forces = want_ens ? ens_forces.data() : nullptr;
  res.gamma_local_cluster = nullptr;
  if (cluster_wanted)
    for (int k = 0; k < n_uq; k++)
      if (methods[k] == ACEUQ_METHOD_GAMMA_LOCAL) {
        if ((int) cluster_array.size() < atom->nmax) cluster_array.resize(atom->nmax);
        std::fill(cluster_array.begin(), cluster_array.begin() + nlocal, -1);
        res.gamma_local_cluster = cluster_array.data();
      }

  if (aceuq_compute(model, &sys, &res) != ACEUQ_STATUS_OK)
    error->one(FLERR, "ace/uq (step {}): {}", update->ntimestep, aceuq_last_error());

  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    if (species[i] < 0) continue;
    for (int k = offsets[ii]; k < offsets[ii + 1]; k++) {
      const int j = neigh[k];
      const double *g = &fij[3 * k];
      f[i][0] += g[0];
      f[i][1] += g[1];
      f[i][2] += g[2];
      f[j][0] -= g[0];
      f[j][1] -= g[1];
      f[j][2] -= g[2];
      // Virial only (zero energy): the pair's share of the virial, split between i and j.
      if (vflag_either)
        ev_tally_xyz(i, j, nlocal, force->newton_pair, 0.0, 0.0, g[0], g[1], g[2],
                     x[i][0] - x[j][0], x[i][1] - x[j][1], x[i][2] - x[j][2]);
    }
    // ev_tally_full adds half of its energy argument to atom i.
    if (eflag) ev_tally_full(i, 2.0 * eatom_buf[i], 0.0, 0.0, 0.0, 0.0, 0.0);
  }
  if (vflag_fdotr) virial_fdotr_compute();

  if (want_ens) {
    if (n_ens_cols > 0) comm->reverse_comm(this);
    if (aceuq_ensemble_sigma(model, nlocal, species.data(), inum, ilist, ens_forces.data(),
                             uq_arrays[ACEUQ_METHOD_ENSEMBLE].data()) != ACEUQ_STATUS_OK)
      error->one(FLERR, "ace/uq (step {}): {}", update->ntimestep, aceuq_last_error());
  }

  for (int k = 0; k < n_uq; k++) {
    uq_flag[methods[k]] = 0;
    uq_last_step[methods[k]] = update->ntimestep;
  }
  if (res.gamma_local_cluster) cluster_last_step = update->ntimestep;
  if (n_uq > 0) {
    // Model atoms without a model-species neighbour inside the cutoff (an empty environment:
    // every descriptor, and so every uncertainty, is 0). Under pair_style hybrid the list
    // holds no atoms of NULL types, so an atom surrounded only by them counts as lone too: the
    // model sees nothing around it.
    if ((int) lone_array.size() < atom->nmax) lone_array.resize(atom->nmax);
    std::fill(lone_array.begin(), lone_array.begin() + nlocal, 0);
    for (int ii = 0; ii < inum; ii++) {
      const int i = ilist[ii];
      if (i < nlocal && species[i] >= 0 && offsets[ii + 1] == offsets[ii]) lone_array[i] = 1;
    }
    lone_last_step = update->ntimestep;
  }
}

/* ----------------------------------------------------------------------
   fix pair support: extract("<method>_flag") and extract_peratom("<method>")
------------------------------------------------------------------------- */

void *PairAceUq::extract(const char *str, int &dim)
{
  std::string s(str);
  const std::string suffix = "_flag";
  if (s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0) {
    int m = method_id(s.substr(0, s.size() - suffix.size()));
    if (m >= 0) {
      if (!available[m]) {
        int format = 0;
        if (model && aceuq_model_format(model, &format) == ACEUQ_STATUS_OK && format == 1)
          error->all(FLERR,
                     "ace/uq: {} is a pacemaker potential: fix pair can ask it only for 'gamma', "
                     "with an active-set inverse, and 'gamma_local', with clustered active sets "
                     "(pair_coeff * * {} pot.asi [pot.lasi] ...; build them with `aceuq "
                     "activeset --model {} --data train.xyz [--clusters K]`), not for '{}'{}",
                     model_file, model_file, model_file, method_name(m),
                     m <= ACEUQ_METHOD_GAMMA_LOCAL ? " without that file" : "");
        error->all(FLERR, "ace/uq: model {} has no '{}' uncertainty; refit it with `aceuq fit {}`",
                   model_file, method_name(m), method_fit_option(m));
      }
      dim = 0;
      return (void *) &uq_flag[m];
    }
  }
  return nullptr;
}

void *PairAceUq::extract_peratom(const char *str, int &ncol)
{
  int m = method_id(str);
  if (m < 0 || !available[m]) return nullptr;
  if ((int) uq_arrays[m].size() < atom->nmax) uq_arrays[m].resize(atom->nmax, 0.0);
  ncol = 0;
  return (void *) uq_arrays[m].data();
}

int PairAceUq::pack_reverse_comm(int n, int first, double *buf)
{
  const int w = 3 * n_ens_cols;
  int m = 0;
  for (int i = first; i < first + n; i++)
    for (int k = 0; k < w; k++) buf[m++] = ens_forces[(size_t) i * w + k];
  return m;
}

void PairAceUq::unpack_reverse_comm(int n, int *list, double *buf)
{
  const int w = 3 * n_ens_cols;
  int m = 0;
  for (int i = 0; i < n; i++) {
    const int j = list[i];
    for (int k = 0; k < w; k++) ens_forces[(size_t) j * w + k] += buf[m++];
  }
}

double PairAceUq::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += (double) species.capacity() * sizeof(int) + tags.capacity() * sizeof(int64_t);
  bytes += (double) (offsets.capacity() + neigh.capacity()) * sizeof(int);
  bytes += (double) (fij.capacity() + eatom_buf.capacity()) * sizeof(double);
  for (int m = 0; m < NMETHODS; m++) bytes += (double) uq_arrays[m].capacity() * sizeof(double);
  bytes += (double) ens_forces.capacity() * sizeof(double);
  bytes += (double) (cluster_array.capacity() + lone_array.capacity()) * sizeof(int);
  return bytes;
}
