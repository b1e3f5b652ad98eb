"""Watching an ASE run the way ``fix ace/uq/watch`` watches a LAMMPS run."""

from __future__ import annotations

import io
import math
import os
import sys

import numpy as np
from ase import units
from ase.io import write


class Extrapolation(RuntimeError):
    """Raised by :class:`Watch` (``halt=True``) when an atom's uncertainty exceeds its upper
    cutoff. ``step``, ``atom`` (0-based index), ``value`` and ``upper`` say where."""

    def __init__(self, message, step, atom, value, upper):
        super().__init__(message)
        self.step, self.atom, self.value, self.upper = step, atom, value, upper


class Watch:
    """An observer for ASE dynamics and optimizers: after each check it compares every atom's
    uncertainty ``quantity`` with the model's calibrated cutoffs (per species, and for
    ``gamma_local`` per cluster).

    * any atom above its lower cutoff: the frame is appended to ``dump`` (extended XYZ, the
      format fix ace/uq/watch writes and ``aceuq select`` reads: columns ``id``, the quantity,
      ``above_lower``, ``above_upper``, ``cluster`` for gamma_local; ``config_type=candidate``);
    * any atom above its upper cutoff: the frame is written with ``config_type=halt`` and, with
      ``halt=True``, :class:`Extrapolation` is raised, which ends ``dyn.run()``.

    Usage::

        watch = Watch(atoms, "gamma", dump="candidates.xyz")
        dyn.attach(watch, interval=10)
        try:
            dyn.run(20000)
        except Extrapolation as e:
            print("stopped:", e)

    ``lower`` and ``upper`` default to the stored cutoffs (``"auto"``); a number replaces them for
    every atom, ``upper=None`` never halts. ``dyn`` (optional) gives the step and time written to
    the frames; otherwise the watch counts its own calls. Attributes after a run: ``checks``,
    ``frames_dumped``, ``max_value``, ``halted`` (None or the Extrapolation).
    """

    def __init__(
        self,
        atoms,
        quantity="gamma",
        dump=None,
        lower="auto",
        upper="auto",
        halt=True,
        dyn=None,
        log=sys.stdout,
    ):
        calc = atoms.calc
        if calc is None or not hasattr(calc, "uq_methods"):
            raise ValueError("the atoms need an AceUQCalculator as their calculator")
        if quantity not in calc.uq_methods:
            have = ", ".join(calc.uq_methods) or "none"
            raise ValueError(
                f"the calculator does not compute '{quantity}' (it computes: {have}); "
                f"create it with uq including '{quantity}'"
            )
        self.atoms, self.calc, self.quantity = atoms, calc, quantity
        self.dump = os.fspath(dump) if dump is not None else None
        self.lower, self.upper, self.halt = lower, upper, halt
        self.dyn, self.log = dyn, log
        self.checks = 0
        self.frames_dumped = 0
        self.max_value = -math.inf
        self.halted = None
        self._warned = False
        self._cached = (None, None)  # (species/cluster key, cutoffs)

    def _cutoffs(self):
        # The cutoffs depend only on the atoms' species (and gamma_local clusters): looked up
        # again only when those change, not at every check.
        clusters = self.calc.results.get("gamma_local_cluster")
        key = (
            tuple(self.atoms.numbers),
            None if self.quantity != "gamma_local" else clusters.tobytes(),
        )
        if self._cached[0] != key:
            self._cached = (key, self._lookup_cutoffs())
        return self._cached[1]

    def _lookup_cutoffs(self):
        n = len(self.atoms)
        if self.lower == "auto" or self.upper == "auto":
            lo, up = self.calc.cutoffs(self.quantity, self.atoms)
        if self.lower != "auto":
            lo = np.full(n, float(self.lower))
        if self.upper != "auto":
            up = np.full(n, math.inf if self.upper is None else float(self.upper))
        if not self._warned and self.log is not None:
            self._warned = True
            symbols = np.array(self.atoms.get_chemical_symbols())
            parts = []
            for s in sorted(set(symbols)):
                k = np.flatnonzero(symbols == s)[0]
                parts.append(f"{s}: lower {lo[k]:.6g} upper {up[k]:.6g}")
                if self.upper == "auto" and math.isinf(up[k]):
                    note = self.calc.model.calibration_note(self.quantity, s)
                    print(
                        f"aceuq.Watch: warning: {s} has no upper cutoff for {self.quantity}, "
                        f"the run will not halt on it ({note or 'none stored'})",
                        file=self.log,
                    )
            print(f"aceuq.Watch: {self.quantity} [{'; '.join(parts)}]", file=self.log)
        return lo, up

    def _step(self):
        if self.dyn is not None:
            step = int(self.dyn.nsteps)
            dt = getattr(self.dyn, "dt", None)
            return step, math.nan if dt is None else step * dt / (1000.0 * units.fs)
        return self.checks - 1, math.nan

    def _write(self, values, above_lower, above_upper, kind, step, time):
        a = self.atoms.copy()  # without the calculator: the frame must carry no labels
        a.arrays["id"] = np.arange(1, len(a) + 1)
        a.arrays[self.quantity] = values.copy()
        a.arrays["above_lower"] = above_lower.astype(float)
        a.arrays["above_upper"] = above_upper.astype(float)
        if self.quantity == "gamma_local":
            a.arrays["cluster"] = self.calc.results["gamma_local_cluster"].copy()
        a.info = {
            "config_type": kind,
            "quantity": self.quantity,
            "step": step,
            "max_value": float(values.max()),
            "n_above_lower": int(above_lower.sum()),
            "n_above_upper": int(above_upper.sum()),
        }
        if not math.isnan(time):
            a.info["time"] = time  # ps, as fix ace/uq/watch writes it
        buf = io.StringIO()
        write(buf, a, format="extxyz")
        # One write of the whole frame: a reader never sees half of it.
        with open(self.dump, "a") as f:
            f.write(buf.getvalue())
        self.frames_dumped += 1

    def __call__(self):
        self.checks += 1
        self.atoms.get_potential_energy()
        values = np.asarray(self.calc.results[self.quantity])
        lo, up = self._cutoffs()
        self.max_value = max(self.max_value, float(values.max()))
        above_lower = values > lo
        above_upper = values > up
        step, time = self._step()
        if above_upper.any():
            kind = "halt" if self.halt else "candidate"
            if self.dump is not None:
                self._write(values, above_lower, above_upper, kind, step, time)
            if self.halt:
                over = np.flatnonzero(above_upper)
                k = over[np.argmax(values[over] - up[over])]
                msg = (
                    f"halting at step {step}: atom {k} ({self.atoms[k].symbol}) has "
                    f"{self.quantity} = {values[k]:.6g} above the upper cutoff {up[k]:.6g} "
                    f"({int(above_upper.sum())} atoms above upper, {int(above_lower.sum())} "
                    "above lower)"
                )
                if self.dump is not None:
                    msg += f"; frame written to {self.dump}"
                self.halted = Extrapolation(msg, step, int(k), float(values[k]), float(up[k]))
                if self.log is not None:
                    print(f"aceuq.Watch: {msg}", file=self.log)
                raise self.halted
        elif above_lower.any() and self.dump is not None:
            self._write(values, above_lower, above_upper, "candidate", step, time)
