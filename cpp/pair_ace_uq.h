/* -*- c++ -*- ----------------------------------------------------------
   aceuq: pair style ace/uq (linear ACE with per-atom uncertainty).

   SCAFFOLDING: this class only proves the build plumbing (the plugin loads,
   links libaceuq.a and calls into Rust). It prints the aceuq version and
   refuses every real operation. The real pair style replaces it.
------------------------------------------------------------------------- */

// The PairStyle() block lets the same file be compiled into a LAMMPS built
// from source (its style registry scans headers for it); the plugin build
// never defines PAIR_CLASS and registers the style in aceuqplugin.cpp.
#ifdef PAIR_CLASS
// clang-format off
PairStyle(ace/uq,PairAceUq);
// clang-format on
#else

#ifndef LMP_PAIR_ACE_UQ_H
#define LMP_PAIR_ACE_UQ_H

#include "pair.h"

namespace LAMMPS_NS {

class PairAceUq : public Pair {
 public:
  explicit PairAceUq(class LAMMPS *);
  ~PairAceUq() override = default;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
};

}    // namespace LAMMPS_NS

#endif
#endif
