/* The C ABI of aceuq exercised through include/aceuq.h alone: every entry point's error paths
 * (NULL pointers, bad files, wrong species, bad neighbour indices, non-finite positions, unknown
 * method names) must return a status with a helpful message, never crash. Built and run (also
 * under valgrind when installed) by tests/c_abi.rs.
 *
 * Usage: test_abi MODEL.aceuq TRUNCATED.aceuq CORRUPT.aceuq SCRATCH_DIR
 * Exit status 0 if every check passed; each failure is printed with its line. */
#include "aceuq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    checks++;                                                                             \
    if (!(cond)) {                                                                        \
      failures++;                                                                         \
      fprintf(stderr, "test_abi.c:%d: FAILED: %s (last error: %s)\n", __LINE__, #cond,    \
              aceuq_last_error());                                                        \
    }                                                                                     \
  } while (0)

/* The call returns `status` and the last error contains `needle`. */
#define EXPECT(call, status, needle)                                                      \
  do {                                                                                    \
    aceuq_status_t st_ = (call);                                                          \
    checks++;                                                                             \
    if (st_ != (status) || strstr(aceuq_last_error(), (needle)) == NULL) {                \
      failures++;                                                                         \
      fprintf(stderr, "test_abi.c:%d: FAILED: %s gave %d (want %d), message '%s' (want '%s')\n", \
              __LINE__, #call, (int) st_, (int) (status), aceuq_last_error(), (needle));  \
    }                                                                                     \
  } while (0)

#define OK(call) CHECK((call) == ACEUQ_STATUS_OK)

/* A small LAMMPS-like system: two owned atoms, one ghost; atom 0 sees 1 and 2, atom 1 sees 0. */
typedef struct {
  double x[9];
  int32_t species[3];
  int64_t tag[3];
  int32_t ilist[2];
  int32_t offsets[3];
  int32_t neigh[3];
  double fij[9];
  double energy;
  double eatom[2];
  aceuq_system_t sys;
  aceuq_results_t res;
} fixture;

static void fixture_init(fixture *f)
{
  memset(f, 0, sizeof *f);
  const double x[9] = {0.0, 0.0, 0.0, 2.9, 0.2, -0.1, -0.4, 2.7, 0.6};
  memcpy(f->x, x, sizeof x);
  for (int k = 0; k < 3; k++) {
    f->species[k] = 0;
    f->tag[k] = 41 + k;
  }
  f->ilist[0] = 0;
  f->ilist[1] = 1;
  f->offsets[0] = 0;
  f->offsets[1] = 2;
  f->offsets[2] = 3;
  f->neigh[0] = 1;
  f->neigh[1] = 2;
  f->neigh[2] = 0;
  f->sys.nlocal = 2;
  f->sys.nall = 3;
  f->sys.x = f->x;
  f->sys.species = f->species;
  f->sys.tag = f->tag;
  f->sys.inum = 2;
  f->sys.ilist = f->ilist;
  f->sys.offsets = f->offsets;
  f->sys.neigh = f->neigh;
  f->res.energy = &f->energy;
  f->res.eatom = f->eatom;
  f->res.fij = f->fij;
}

static long file_size(const char *path)
{
  FILE *fp = fopen(path, "rb");
  if (!fp) return -1;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fclose(fp);
  return n;
}

static void test_load(const char *model, const char *truncated, const char *corrupt,
                      const char *scratch)
{
  aceuq_model_t *h = (aceuq_model_t *) 0x1;
  EXPECT(aceuq_model_load(NULL, &h), ACEUQ_STATUS_INVALID_ARGUMENT, "path is NULL");
  CHECK(h == NULL); /* *out is cleared before anything can fail */
  EXPECT(aceuq_model_load(model, NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");
  EXPECT(aceuq_model_load("/nonexistent/dir/m.aceuq", &h), ACEUQ_STATUS_IO,
         "/nonexistent/dir/m.aceuq");
  CHECK(h == NULL);
  /* A directory is not a model file either. */
  EXPECT(aceuq_model_load(scratch, &h), ACEUQ_STATUS_IO, scratch);
  EXPECT(aceuq_model_load(truncated, &h), ACEUQ_STATUS_FORMAT, "truncated");
  CHECK(h == NULL);
  EXPECT(aceuq_model_load(corrupt, &h), ACEUQ_STATUS_FORMAT, "corrupt");
  CHECK(h == NULL);
  char path[4096];
  snprintf(path, sizeof path, "%s/empty.aceuq", scratch);
  FILE *fp = fopen(path, "wb");
  CHECK(fp != NULL);
  if (fp) fclose(fp);
  EXPECT(aceuq_model_load(path, &h), ACEUQ_STATUS_FORMAT, "not an aceuq model file");
  /* Invalid UTF-8 in the path. */
  EXPECT(aceuq_model_load("/tmp/\xff\xfe.aceuq", &h), ACEUQ_STATUS_INVALID_ARGUMENT, "UTF-8");
}

static void test_queries(aceuq_model_t *h)
{
  int32_t n = -1, idx = -1, id = -1, has = -1;
  double rc = 0.0, lo = 0.0, hi = 0.0;
  char buf[16];
  OK(aceuq_model_nspecies(h, &n));
  CHECK(n == 1);
  EXPECT(aceuq_model_nspecies(NULL, &n), ACEUQ_STATUS_INVALID_ARGUMENT, "model handle is NULL");
  EXPECT(aceuq_model_nspecies(h, NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");
  OK(aceuq_model_species_index(h, "Li", &idx));
  CHECK(idx == 0);
  EXPECT(aceuq_model_species_index(h, "Xe", &idx), ACEUQ_STATUS_DATA,
         "species 'Xe' is not in the model (model species: Li)");
  EXPECT(aceuq_model_species_index(h, NULL, &idx), ACEUQ_STATUS_INVALID_ARGUMENT,
         "species name is NULL");
  EXPECT(aceuq_model_species_index(NULL, "Li", &idx), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
  EXPECT(aceuq_model_species_index(h, "Li", NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");
  OK(aceuq_model_species_name(h, 0, buf, sizeof buf));
  CHECK(strcmp(buf, "Li") == 0);
  EXPECT(aceuq_model_species_name(h, 0, buf, 2), ACEUQ_STATUS_INVALID_ARGUMENT, "too small");
  EXPECT(aceuq_model_species_name(h, 0, NULL, 16), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
  EXPECT(aceuq_model_species_name(h, 1, buf, sizeof buf), ACEUQ_STATUS_INVALID_ARGUMENT,
         "species index 1 out of range");
  EXPECT(aceuq_model_species_name(h, -1, buf, sizeof buf), ACEUQ_STATUS_INVALID_ARGUMENT,
         "species index -1 out of range");
  OK(aceuq_model_cutoff(h, &rc));
  CHECK(rc > 1.0 && rc < 20.0);
  EXPECT(aceuq_model_cutoff(NULL, &rc), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");

  OK(aceuq_method_t_from_name("gamma", &id));
  CHECK(id == ACEUQ_METHOD_GAMMA);
  OK(aceuq_method_t_from_name("gp", &id));
  CHECK(id == ACEUQ_METHOD_GP);
  EXPECT(aceuq_method_t_from_name("variance", &id), ACEUQ_STATUS_INVALID_ARGUMENT,
         "unknown uncertainty method 'variance' (known: gamma");
  EXPECT(aceuq_method_t_from_name("", &id), ACEUQ_STATUS_INVALID_ARGUMENT, "unknown");
  EXPECT(aceuq_method_t_from_name(NULL, &id), ACEUQ_STATUS_INVALID_ARGUMENT,
         "method name is NULL");
  EXPECT(aceuq_method_t_from_name("gamma", NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");

  OK(aceuq_model_has_method(h, ACEUQ_METHOD_GAMMA, &has));
  CHECK(has == 0); /* the test model is fitted without uncertainty */
  EXPECT(aceuq_model_has_method(h, 99, &has), ACEUQ_STATUS_INVALID_ARGUMENT,
         "method id 99 out of range");
  EXPECT(aceuq_model_has_method(h, -1, &has), ACEUQ_STATUS_INVALID_ARGUMENT, "out of range");
  EXPECT(aceuq_model_has_method(NULL, 0, &has), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
  EXPECT(aceuq_model_has_method(h, 0, NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");

  OK(aceuq_model_ensemble_size(h, &n));
  CHECK(n == 0);
  EXPECT(aceuq_model_ensemble_size(NULL, &n), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
  EXPECT(aceuq_model_ensemble_size(h, NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");
  n = -1;
  OK(aceuq_model_ensemble_columns(h, &n));
  CHECK(n == 0);
  EXPECT(aceuq_model_ensemble_columns(NULL, &n), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
  EXPECT(aceuq_model_ensemble_columns(h, NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "out is NULL");
  {
    int32_t sp = 0, il = 0;
    double f[3] = {0, 0, 0}, out = 0;
    EXPECT(aceuq_ensemble_sigma(h, 1, &sp, 1, &il, f, &out), ACEUQ_STATUS_MISSING,
           "no ensemble");
    EXPECT(aceuq_ensemble_sigma(NULL, 1, &sp, 1, &il, f, &out), ACEUQ_STATUS_INVALID_ARGUMENT,
           "NULL");
  }

  EXPECT(aceuq_model_uq_cutoffs(h, ACEUQ_METHOD_GAMMA, 0, &lo, &hi), ACEUQ_STATUS_MISSING,
         "no calibrated cutoffs for 'gamma' of species Li");
  EXPECT(aceuq_model_uq_cutoffs(h, 12, 0, &lo, &hi), ACEUQ_STATUS_INVALID_ARGUMENT,
         "method id 12 out of range");
  EXPECT(aceuq_model_uq_cutoffs(h, 0, 5, &lo, &hi), ACEUQ_STATUS_INVALID_ARGUMENT,
         "species index 5 out of range");
  EXPECT(aceuq_model_uq_cutoffs(NULL, 0, 0, &lo, &hi), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");

  /* Per-cluster cutoffs: this model has no gamma_local clusters. */
  int32_t ncl = -1, own = -1;
  EXPECT(aceuq_model_gamma_local_clusters(h, 0, &ncl), ACEUQ_STATUS_MISSING, "no 'gamma_local'");
  CHECK(ncl == -1);
  EXPECT(aceuq_model_gamma_local_clusters(h, 3, &ncl), ACEUQ_STATUS_INVALID_ARGUMENT,
         "species index 3 out of range");
  EXPECT(aceuq_model_gamma_local_clusters(NULL, 0, &ncl), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
  EXPECT(aceuq_model_uq_cluster_cutoffs(h, ACEUQ_METHOD_GAMMA_LOCAL, 0, 0, &lo, &hi, &own),
         ACEUQ_STATUS_MISSING, "no 'gamma_local'");
  EXPECT(aceuq_model_uq_cluster_cutoffs(h, 12, 0, 0, &lo, &hi, NULL),
         ACEUQ_STATUS_INVALID_ARGUMENT, "method id 12 out of range");
  EXPECT(aceuq_model_uq_cluster_cutoffs(h, ACEUQ_METHOD_GAMMA_LOCAL, -1, 0, &lo, &hi, NULL),
         ACEUQ_STATUS_INVALID_ARGUMENT, "species index -1 out of range");
  EXPECT(aceuq_model_uq_cluster_cutoffs(NULL, 0, 0, 0, &lo, &hi, NULL),
         ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
  CHECK(own == -1);

  /* Calibration notes: nothing stored, a cluster without gamma_local, bad arguments. */
  {
    char note[64] = "untouched";
    size_t need = 0;
    EXPECT(aceuq_model_uq_calibration_note(h, ACEUQ_METHOD_GAMMA, 0, -1, ACEUQ_NOTE_SUMMARY, note,
                                           sizeof note, &need),
           ACEUQ_STATUS_MISSING, "no calibrated cutoffs for 'gamma' of species Li");
    EXPECT(aceuq_model_uq_calibration_note(h, ACEUQ_METHOD_GAMMA, 0, 0, ACEUQ_NOTE_SUMMARY, note,
                                           sizeof note, &need),
           ACEUQ_STATUS_MISSING, "no 'gamma_local'");
    EXPECT(aceuq_model_uq_calibration_note(h, ACEUQ_METHOD_GAMMA, 0, -1, 7, note, sizeof note,
                                           &need),
           ACEUQ_STATUS_INVALID_ARGUMENT, "note part 7 out of range");
    EXPECT(aceuq_model_uq_calibration_note(h, ACEUQ_METHOD_GAMMA, 0, -1, ACEUQ_NOTE_SUMMARY, NULL,
                                           8, &need),
           ACEUQ_STATUS_INVALID_ARGUMENT, "buf is NULL");
    EXPECT(aceuq_model_uq_calibration_note(NULL, 0, 0, -1, 0, note, sizeof note, NULL),
           ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
    CHECK(strcmp(note, "untouched") == 0 && need == 0);
  }
}

static void test_compute(aceuq_model_t *h)
{
  fixture f;
  /* Valid call: finite energies, energy = sum of atom energies, Newton's third law. */
  fixture_init(&f);
  OK(aceuq_compute(h, &f.sys, &f.res));
  CHECK(isfinite(f.energy) && fabs(f.energy - (f.eatom[0] + f.eatom[1])) < 1e-12);
  for (int k = 0; k < 9; k++) CHECK(isfinite(f.fij[k]));
  CHECK(f.fij[0] != 0.0 || f.fij[1] != 0.0 || f.fij[2] != 0.0);
  /* dE_0/dr_01 and dE_1/dr_10 are both in fij; the ghost pair is one-sided. */

  /* Same call without optional outputs. */
  fixture_init(&f);
  f.res.energy = NULL;
  f.res.eatom = NULL;
  f.sys.tag = NULL;
  OK(aceuq_compute(h, &f.sys, &f.res));

  /* Isolated atom: no neighbours at all, so no fij needed; energy is finite. */
  fixture_init(&f);
  f.sys.nlocal = 1;
  f.sys.nall = 1;
  f.sys.inum = 1;
  f.offsets[1] = 0;
  f.res.fij = NULL;
  f.eatom[0] = NAN;
  OK(aceuq_compute(h, &f.sys, &f.res));
  CHECK(isfinite(f.eatom[0]) && f.energy == f.eatom[0]);
  /* Nothing to do: no atoms. */
  fixture_init(&f);
  f.sys.nlocal = 0;
  f.sys.nall = 0;
  f.sys.inum = 0;
  f.sys.x = NULL;
  f.sys.species = NULL;
  f.sys.ilist = NULL;
  f.offsets[0] = 0;
  f.energy = 7.0;
  OK(aceuq_compute(h, &f.sys, &f.res));
  CHECK(f.energy == 0.0);

  /* NULL arguments. */
  fixture_init(&f);
  EXPECT(aceuq_compute(NULL, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT,
         "model handle is NULL");
  EXPECT(aceuq_compute(h, NULL, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "system is NULL");
  EXPECT(aceuq_compute(h, &f.sys, NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "results is NULL");
  f.sys.x = NULL;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "x is NULL");
  fixture_init(&f);
  f.sys.species = NULL;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "species is NULL");
  fixture_init(&f);
  f.sys.neigh = NULL;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "neigh is NULL");
  fixture_init(&f);
  f.sys.offsets = NULL;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "offsets is NULL");
  fixture_init(&f);
  f.res.fij = NULL;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "fij is NULL");

  /* Inconsistent sizes. */
  fixture_init(&f);
  f.sys.nall = 1; /* fewer than nlocal */
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "inconsistent sizes");
  fixture_init(&f);
  f.sys.nlocal = -2;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "inconsistent sizes");
  fixture_init(&f);
  f.sys.inum = 3;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "inconsistent sizes");
  fixture_init(&f);
  f.offsets[1] = 3;
  f.offsets[2] = 1; /* decreasing */
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "offsets");
  fixture_init(&f);
  f.offsets[0] = -1;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "offsets");

  /* Bad indices. */
  fixture_init(&f);
  f.neigh[1] = 3; /* == nall */
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT,
         "neighbour index 3 out of range (nall = 3)");
  fixture_init(&f);
  f.neigh[2] = -5;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT,
         "neighbour index -5 out of range");
  fixture_init(&f);
  f.ilist[1] = 2; /* a ghost as centre */
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT,
         "ilist entry 2 out of range (nlocal = 2)");
  fixture_init(&f);
  f.species[2] = 1; /* model has one species */
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT,
         "atom index 2 has species 1 (model has 1)");
  fixture_init(&f);
  f.species[0] = -2;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "species -2");
  /* Species -1 means "not this model's atom": skipped, not an error. */
  fixture_init(&f);
  f.species[2] = -1;
  OK(aceuq_compute(h, &f.sys, &f.res));
  CHECK(f.fij[3] == 0.0 && f.fij[4] == 0.0 && f.fij[5] == 0.0);

  /* Non-finite positions name the atom ID (tag). */
  fixture_init(&f);
  f.x[4] = NAN; /* atom 1, tag 42 */
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_DATA, "atom 42 has a non-finite position");
  fixture_init(&f);
  f.x[6] = INFINITY; /* ghost 2, tag 43 */
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_DATA, "atom 43 has a non-finite position");
  fixture_init(&f);
  f.x[0] = -INFINITY;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_DATA, "atom 41 has a non-finite position");
  /* Without tags the message uses index + 1. */
  fixture_init(&f);
  f.sys.tag = NULL;
  f.x[4] = NAN;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_DATA, "atom 2 has a non-finite position");

  /* Coincident atoms (r = 0): an error naming both, not NaN forces. */
  fixture_init(&f);
  f.x[3] = f.x[4] = f.x[5] = 0.0;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_DATA,
         "atoms 41 and 42 are at the same position");
  /* Very close atoms (0.05 Å) are fine: finite and repulsive (atom 0 pushed towards -x). */
  fixture_init(&f);
  f.x[3] = 0.05;
  f.x[4] = f.x[5] = 0.0;
  OK(aceuq_compute(h, &f.sys, &f.res));
  CHECK(isfinite(f.energy) && f.energy > 100.0);
  /* fij = dE_0/dr_01 along +x: energy falls as the neighbour moves away. */
  CHECK(f.fij[0] < 0.0);
  for (int k = 0; k < 9; k++) CHECK(isfinite(f.fij[k]));

  /* Uncertainty requests. */
  fixture_init(&f);
  double uq_out[2];
  double *outs[1] = {uq_out};
  int32_t methods[1] = {ACEUQ_METHOD_GAMMA};
  f.res.n_uq = 1;
  f.res.uq_methods = methods;
  f.res.uq_values = outs;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_MISSING, "has no 'gamma' uncertainty");
  methods[0] = 42;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT,
         "uncertainty method id 42 out of range");
  methods[0] = ACEUQ_METHOD_GAMMA;
  outs[0] = NULL;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT,
         "output array for gamma is NULL");
  f.res.uq_methods = NULL;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "uq_methods is NULL");
  f.res.n_uq = -1;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT, "n_uq");
  /* A gamma_local cluster array without gamma_local requested. */
  fixture_init(&f);
  int32_t clusters[2] = {-1, -1};
  f.res.gamma_local_cluster = clusters;
  EXPECT(aceuq_compute(h, &f.sys, &f.res), ACEUQ_STATUS_INVALID_ARGUMENT,
         "gamma_local is not among the requested methods");
  CHECK(clusters[0] == -1 && clusters[1] == -1);

  /* After all those errors the handle still works and gives the same answer. */
  fixture init2;
  fixture_init(&init2);
  OK(aceuq_compute(h, &init2.sys, &init2.res));
  fixture_init(&f);
  OK(aceuq_compute(h, &f.sys, &f.res));
  CHECK(f.energy == init2.energy);
}

static void test_append(aceuq_model_t *h, const char *scratch)
{
  char path[4096];
  snprintf(path, sizeof path, "%s/frames.xyz", scratch);
  remove(path);
  const double cell[9] = {10, 0, 0, 0, 10, 0, 0, 0, 10};
  const int32_t pbc[3] = {1, 1, 1};
  const double x[6] = {0, 0, 0, 1.5, 1.5, 1.5};
  int32_t species[2] = {0, 0};
  const int64_t ids[2] = {7, 9};
  const double gamma[2] = {0.5, 2.5};
  const char *names[1] = {"gamma"};
  const double *vals[1] = {gamma};
  const char *keys[2] = {"step", "note"};
  const char *values[2] = {"100", "two words"};
  aceuq_frame_t fr = {2, cell, pbc, x, species, ids, 1, names, vals, 2, keys, values, 0, NULL};
  OK(aceuq_append_frame(h, path, &fr));
  OK(aceuq_append_frame(h, path, &fr));
  long size = file_size(path);
  CHECK(size > 0);
  FILE *fp = fopen(path, "r");
  char line[512] = {0};
  int nlines = 0, frames = 0;
  if (fp) {
    while (fgets(line, sizeof line, fp)) {
      if (nlines % 4 == 0) frames += strcmp(line, "2\n") == 0;
      if (nlines % 4 == 1) CHECK(strstr(line, "step=100") && strstr(line, "note=\"two words\""));
      nlines++;
    }
    fclose(fp);
  }
  CHECK(nlines == 8 && frames == 2);

  EXPECT(aceuq_append_frame(NULL, path, &fr), ACEUQ_STATUS_INVALID_ARGUMENT, "NULL");
  EXPECT(aceuq_append_frame(h, NULL, &fr), ACEUQ_STATUS_INVALID_ARGUMENT, "path is NULL");
  EXPECT(aceuq_append_frame(h, path, NULL), ACEUQ_STATUS_INVALID_ARGUMENT, "frame is NULL");
  species[1] = 3;
  EXPECT(aceuq_append_frame(h, path, &fr), ACEUQ_STATUS_INVALID_ARGUMENT,
         "species index 3 out of range");
  species[1] = 0;
  fr.natoms = -1;
  EXPECT(aceuq_append_frame(h, path, &fr), ACEUQ_STATUS_INVALID_ARGUMENT, "negative count");
  fr.natoms = 2;
  fr.cell = NULL;
  EXPECT(aceuq_append_frame(h, path, &fr), ACEUQ_STATUS_INVALID_ARGUMENT, "cell is NULL");
  fr.cell = cell;
  fr.x = NULL;
  EXPECT(aceuq_append_frame(h, path, &fr), ACEUQ_STATUS_INVALID_ARGUMENT, "x is NULL");
  fr.x = x;
  const char *bad_names[1] = {NULL};
  fr.col_names = bad_names;
  EXPECT(aceuq_append_frame(h, path, &fr), ACEUQ_STATUS_INVALID_ARGUMENT, "column name is NULL");
  fr.col_names = names;
  EXPECT(aceuq_append_frame(h, "/nonexistent/dir/frames.xyz", &fr), ACEUQ_STATUS_IO,
         "cannot append to /nonexistent/dir/frames.xyz");
  /* No failed call added anything to the file. */
  CHECK(file_size(path) == size);

  /* Atoms the model does not handle (hybrid NULL types) carry their own element. */
  char other[4096];
  snprintf(other, sizeof other, "%s/whole.xyz", scratch);
  remove(other);
  int32_t nsp = 0;
  OK(aceuq_model_nspecies(h, &nsp));
  const char *extra[1] = {"He"};
  species[1] = nsp;
  EXPECT(aceuq_append_frame(h, other, &fr), ACEUQ_STATUS_INVALID_ARGUMENT, "out of range");
  fr.nextra_species = 1;
  fr.extra_species = extra;
  OK(aceuq_append_frame(h, other, &fr));
  fp = fopen(other, "r");
  int he = 0;
  if (fp) {
    while (fgets(line, sizeof line, fp)) he += strncmp(line, "He ", 3) == 0;
    fclose(fp);
  }
  CHECK(he == 1);
  const char *bad_extra[1] = {"H e"};
  fr.extra_species = bad_extra;
  EXPECT(aceuq_append_frame(h, other, &fr), ACEUQ_STATUS_INVALID_ARGUMENT,
         "is not an element symbol");
  fr.nextra_species = -1;
  EXPECT(aceuq_append_frame(h, other, &fr), ACEUQ_STATUS_INVALID_ARGUMENT, "negative");
}

int main(int argc, char **argv)
{
  if (argc != 5) {
    fprintf(stderr, "usage: %s MODEL TRUNCATED CORRUPT SCRATCH_DIR\n", argv[0]);
    return 2;
  }
  const char *v = aceuq_version();
  CHECK(v != NULL && strlen(v) > 0);
  CHECK(aceuq_last_error() != NULL);
  aceuq_model_free(NULL); /* ignored */

  test_load(argv[1], argv[2], argv[3], argv[4]);
  aceuq_model_t *h = NULL;
  OK(aceuq_model_load(argv[1], &h));
  if (!h) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], aceuq_last_error());
    return 1;
  }
  test_queries(h);
  test_compute(h);
  test_append(h, argv[4]);
  aceuq_model_free(h);
  /* A second handle loads and frees cleanly (no state left behind by the first). */
  OK(aceuq_model_load(argv[1], &h));
  aceuq_model_free(h);

  printf("test_abi: %d checks, %d failures (aceuq %s)\n", checks, failures, v);
  return failures == 0 ? 0 : 1;
}
