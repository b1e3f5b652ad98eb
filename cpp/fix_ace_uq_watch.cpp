/* ----------------------------------------------------------------------
   aceuq: fix ace/uq/watch.

   SCAFFOLDING (build plumbing only): the constructor calls the Rust
   library to prove it is linked and callable; init() (reached by `run`)
   raises a LAMMPS error. The real fix replaces this file.
------------------------------------------------------------------------- */

#include "fix_ace_uq_watch.h"

#include "aceuq.h"
#include "comm.h"
#include "error.h"
#include "utils.h"

using namespace LAMMPS_NS;
using namespace FixConst;

/* ---------------------------------------------------------------------- */

FixAceUqWatch::FixAceUqWatch(LAMMPS *lmp, int narg, char **arg) : Fix(lmp, narg, arg)
{
  // see PairAceUq: aceuq_version() cannot fail or unwind.
  const char *version = aceuq_version();
  if (comm->me == 0)
    utils::logmesg(lmp, "fix ace/uq/watch: aceuq library version {} (scaffolding fix)\n",
                   version ? version : "(null)");
}

/* ---------------------------------------------------------------------- */

int FixAceUqWatch::setmask()
{
  return END_OF_STEP;
}

/* ---------------------------------------------------------------------- */

void FixAceUqWatch::init()
{
  error->all(FLERR, "fix ace/uq/watch: not implemented yet");
}

/* ---------------------------------------------------------------------- */

void FixAceUqWatch::end_of_step()
{
  error->all(FLERR, "fix ace/uq/watch: not implemented yet");
}
