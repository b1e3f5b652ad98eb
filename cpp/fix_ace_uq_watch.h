/* -*- c++ -*- ----------------------------------------------------------
   aceuq: fix ace/uq/watch (acts on per-atom uncertainty thresholds).

   SCAFFOLDING: this class only proves the build plumbing (a v2 plugin
   creator, a call into Rust). It prints the aceuq version and refuses to
   run. The real fix replaces it.
------------------------------------------------------------------------- */

#ifdef FIX_CLASS
// clang-format off
FixStyle(ace/uq/watch,FixAceUqWatch);
// clang-format on
#else

#ifndef LMP_FIX_ACE_UQ_WATCH_H
#define LMP_FIX_ACE_UQ_WATCH_H

#include "fix.h"

namespace LAMMPS_NS {

class FixAceUqWatch : public Fix {
 public:
  FixAceUqWatch(class LAMMPS *, int, char **);
  ~FixAceUqWatch() override = default;

  int setmask() override;
  void init() override;
  void end_of_step() override;
};

}    // namespace LAMMPS_NS

#endif
#endif
