/* ----------------------------------------------------------------------
   aceuq: pair style ace/uq.

   SCAFFOLDING (build plumbing only): the constructor calls the Rust
   library to prove it is linked and callable; settings/coeff/compute raise
   a LAMMPS error. The real pair style replaces this file.
------------------------------------------------------------------------- */

#include "pair_ace_uq.h"

#include "aceuq.h"
#include "comm.h"
#include "error.h"
#include "utils.h"

using namespace LAMMPS_NS;

/* ---------------------------------------------------------------------- */

PairAceUq::PairAceUq(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;

  // aceuq_version() returns a pointer to static storage and cannot fail or
  // unwind (see src/ffi/mod.rs), so no status check is needed here.
  const char *version = aceuq_version();
  if (comm->me == 0)
    utils::logmesg(lmp, "ace/uq: aceuq library version {} (scaffolding pair style)\n",
                   version ? version : "(null)");
}

/* ---------------------------------------------------------------------- */

void PairAceUq::settings(int, char **)
{
  error->all(FLERR, "ace/uq: not implemented yet");
}

/* ---------------------------------------------------------------------- */

void PairAceUq::coeff(int, char **)
{
  error->all(FLERR, "ace/uq: not implemented yet");
}

/* ---------------------------------------------------------------------- */

void PairAceUq::compute(int, int)
{
  error->all(FLERR, "ace/uq: not implemented yet");
}
