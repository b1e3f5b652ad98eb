"""Watching an ASE run the way ``fix ace/uq/watch`` watches a LAMMPS run."""

from __future__ import annotations

import io
import math
import numbers
import os
import sys
import weakref

import numpy as np
from ase import Atoms, units
from ase.io import write
from ase.md.md import MolecularDynamics

from ._native import METHODS, AceuqError, append_xyz, check_appendable

# The methods that sit on the jury of ``upper="vote"``, in the order of fix ace/uq/watch.
JURY = ("gamma", "ensemble", "distance", "gp")


class Extrapolation(RuntimeError):
    """Raised by :class:`Watch` (``halt=True``) when an atom's uncertainty exceeds its upper
    cutoff, or (frame rule) when some atom is likely to err above the calibration's error limit.
    ``step``, ``atom`` (the atom furthest above its upper cutoff, or the most uncertain one for
    a halt by the frame rule alone; a 0-based index, as ASE counts, where the dump's ``id``
    column counts from 1, as LAMMPS does), ``value``, ``upper`` and ``p_frame`` (the frame
    rule's probability, NaN without it) say where; ``write_error`` is the exception that
    kept the halt frame from ``dump`` (None when it was written or there is no dump)."""

    def __init__(self, message, step, atom, value, upper, p_frame=math.nan, write_error=None):
        super().__init__(message)
        self.step, self.atom, self.value, self.upper = step, atom, value, upper
        self.p_frame = p_frame
        #: The exception that kept the halt frame from being written to ``dump`` (else None).
        self.write_error = write_error

    def __reduce__(self):
        # All fields, so that a halt in a worker process reaches its parent whole (pickle would
        # otherwise call __init__ with the message alone).
        message = self.args[0] if self.args else ""
        fields = (self.step, self.atom, self.value, self.upper, self.p_frame, self.write_error)
        return (type(self), (message, *fields))


def _check_calc(calc, needed):
    """Refuse a calculator that is not an AceUQCalculator computing the methods ``needed``."""
    if calc is None or not hasattr(calc, "uq_methods"):
        raise ValueError(
            "the atoms need an AceUQCalculator as their calculator (they have "
            f"{type(calc).__name__ if calc is not None else 'none'}): the watch reads its results"
        )
    unknown = [m for m in needed if m not in METHODS]
    if unknown:
        raise ValueError(
            f"{unknown[0]!r} is not an uncertainty method (the methods: {', '.join(METHODS)})"
        )
    missing = [m for m in needed if m not in calc.uq_methods]
    if missing:
        have = ", ".join(calc.uq_methods) or "none"
        raise ValueError(
            f"the calculator does not compute '{missing[0]}' (it computes: {have}); "
            f"create it with uq including '{missing[0]}'"
        )


def _check_dump(path):
    """Refuse a dump path that cannot be appended to, before the run (without creating it): a
    folder, a file that cannot be written, or one that is no XYZ or ends in an incomplete frame
    (as fix ace/uq/watch refuses them)."""
    if path == "":
        raise ValueError("dump='' names no file: give a file path, or dump=None for no dump")
    if os.path.isdir(path) or path.endswith(os.sep):
        raise ValueError(f"dump={path!r} is a directory: give a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path):
        ok, why = os.access(path, os.W_OK), "the file is not writable"
    elif not os.path.isdir(folder):
        ok, why = False, f"its folder {folder} does not exist (create it first)"
    else:
        ok, why = os.access(folder, os.W_OK | os.X_OK), f"its folder {folder} is not writable"
    if not ok:
        raise ValueError(f"dump={path!r} cannot be written: {why}")
    try:
        check_appendable(path)
    except AceuqError as e:
        raise ValueError(f"dump={path!r}: {e}") from None


class Watch:
    """An observer for ASE dynamics and optimizers: after each check it compares every atom's
    uncertainty ``quantity`` with the model's calibrated cutoffs (per species, and for
    ``gamma_local`` per cluster).

    * any atom above its lower cutoff: the frame is appended to ``dump`` (extended XYZ, the
      format fix ace/uq/watch writes and ``aceuq select`` reads: columns ``id``, the quantity,
      ``above_lower``, ``above_upper``, ``cluster`` for gamma_local; ``config_type=candidate``);
    * any atom above its upper cutoff, or (the frame rule) a probability that some atom errs
      above the calibration's error limit e_max, ``1 - prod_i (1 - P(e > e_max | u_i))`` from
      the calibrated error scale s(u), at or above the calibration's p_halt: the frame is
      written with ``config_type=halt`` and, with ``halt=True``, :class:`Extrapolation` is
      raised, which ends ``dyn.run()``.

    Usage::

        watch = Watch(atoms, "gamma", dump="candidates.xyz")
        dyn.attach(watch, interval=10)
        try:
            dyn.run(20000)
        except Extrapolation as e:
            print("stopped:", e)

    ``lower`` and ``upper`` default to the stored cutoffs (``"auto"``); a number replaces them for
    every atom, ``upper=None`` never halts. As ``fix ace/uq/watch``: ``upper="auto"`` also applies
    the frame rule when the calibration has a fitted s(u) for every species present (else single
    atoms only, said once in the log), ``"frame"`` insists on it (ValueError without), ``"atom"``
    is single atoms only. ``"vote"``: a jury of the methods among gamma, ensemble, distance and gp
    that the calculator computes and the calibration gives an error scale for (at least two;
    ValueError otherwise) halts when an atom is above the upper cutoff of any juror, or when the
    frame rules of at least two jurors reach p_halt; ``"auto"`` votes when ``aceuq calibrate``
    chose the vote, or halts by one method's own frame rule (e.g. contact's) when it chose that
    (it scores gamma's frame rule, the vote and single methods' frame rules on its labelled
    frames), the quantity is gamma, ``halt=True``, and exactly the methods it chose can sit. Frames
    written with the frame rule carry ``p_frame``, with the vote ``vote_p_frame``,
    ``vote_u_over_u_max`` and ``votes``. ``dyn``
    (optional) gives the step (and, for molecular dynamics, the time) written to the frames;
    otherwise the watch counts its own calls. Each check reads the atoms' calculator as it is
    then (it must be an AceUQCalculator computing the quantity). ``dump`` must be a writable
    file that is new, empty or XYZ with whole frames (ValueError when the watch is created);
    frames are appended as fix ace/uq/watch appends them: whole or not at all, under a file
    lock, a killed append undone by the next (AceuqError when one cannot be written), and a
    halt raises Extrapolation even when its frame cannot be written (``write_error``). ``log``:
    ``"-"`` (default) prints to ``sys.stdout`` as it is when printing, a file name appends to
    that file, a file object is written to, None silences. Attributes
    after a run: ``checks``, ``frames_dumped``, ``max_value``, ``halted`` (None or the
    Extrapolation). A ``dyn.run()`` after a halt goes on from the halted structure, and ASE calls
    the watch again only at its next interval: call ``watch()`` before it to halt at once while
    the structure still extrapolates.
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
        log="-",
    ):
        # An ASE filter (FrechetCellFilter, UnitCellFilter, ...) wraps the atoms an optimizer
        # moves: the watch reads the atoms themselves.
        from ase import Atoms

        inner = getattr(atoms, "atoms", None)
        if not isinstance(atoms, Atoms) and isinstance(inner, Atoms):
            atoms = inner
        if not isinstance(atoms, Atoms):
            raise TypeError(f"Watch needs an ase.Atoms (or a filter of one), got {type(atoms).__name__}")
        calc = atoms.calc
        _check_calc(calc, [quantity])
        self.atoms, self.calc, self.quantity = atoms, calc, quantity
        self.dump = os.fspath(dump) if dump is not None else None
        if self.dump is not None:
            _check_dump(self.dump)
        self.lower, self.upper, self.halt = lower, upper, halt
        self.dyn = dyn
        self.log = log
        self.checks = 0
        self.frames_dumped = 0
        self.max_value = -math.inf
        self.halted = None
        named = isinstance(upper, str) and upper in ("auto", "frame", "atom", "vote")
        number = isinstance(upper, numbers.Real) and not isinstance(upper, bool)
        if not (upper is None or named or number):
            raise ValueError(
                f"upper must be 'auto', 'frame', 'atom', 'vote', a number or None, got {upper!r}"
            )
        if number and math.isnan(upper):
            raise ValueError(
                "upper is NaN, which no value exceeds: give a number, 'auto' (the stored "
                "cutoffs) or None (never halt)"
            )
        low_number = isinstance(lower, numbers.Real) and not isinstance(lower, bool)
        if not ((isinstance(lower, str) and lower == "auto") or low_number) or (
            low_number and math.isnan(lower)
        ):
            raise ValueError(f"lower must be 'auto' or a number (not NaN), got {lower!r}")
        if low_number and number and lower > upper:
            raise ValueError(
                f"lower={lower!r} is above upper={upper!r}: give lower <= upper (the lower "
                "cutoff selects candidates, the upper one halts)"
            )
        rule = calc.model.halt_rule()
        # upper='vote': the jury's methods; upper='auto': exactly those the calibration chose (its
        # jury, or the one juror whose own frame rule it found best).
        seats = JURY if upper == "vote" or rule is None else tuple(rule[1])
        self.jury, left_out = self._sit_jury(seats) if upper in ("auto", "vote") else ([], [])
        if upper == "vote" and len(self.jury) < 2:
            raise ValueError(
                "upper='vote' needs at least two of gamma, ensemble, distance and gp computed by "
                "the calculator with calibrated cutoffs and a fitted error scale s(u) for every "
                f"species present, calibrated with the same e_max and p_halt, there are {len(self.jury)} ({'; '.join(left_out)}); or watch "
                "with upper='auto'"
            )
        # upper="auto" votes only where the calibration's choice applies: watching gamma (the
        # choice is between gamma's frame rule and the vote), halting, and with the very jury it
        # scored.
        note = None if rule is None else rule[2]
        auto_vote = upper == "auto" and rule is not None and rule[0] and halt
        if auto_vote and quantity != "gamma":
            auto_vote = False
            note += (
                "; the calibration scored its rules as gamma's watch would halt, and this watch is "
                f"on {quantity}: its own frame rule (upper='vote' to vote)"
            )
        if auto_vote and self.jury != list(rule[1]):
            auto_vote = False
            note += (
                f"; but the jury that can sit here is {', '.join(self.jury) or 'none'}"
                + (f" ({'; '.join(left_out)})" if left_out else "")
                + ", not the one the calibration scored: the frame rule"
            )
        self.voting = upper == "vote" or auto_vote
        log = self.log
        if upper == "auto" and halt and note is not None and log is not None:
            print(f"aceuq.Watch: {note}", file=log)
        if not self.voting:
            self.jury = []
        elif log is not None and len(self.jury) == 1:
            print(
                f"aceuq.Watch: halts by {self.jury[0]}'s frame rule: an atom above its upper "
                "cutoff, or P(some atom errs above e_max) >= p_halt by its error scale s(u)",
                file=log,
            )
        elif log is not None:
            print(
                f"aceuq.Watch: halts by upper vote of {', '.join(self.jury)}: an atom above any "
                "of their upper cutoffs, or P(some atom errs above e_max) >= p_halt by the "
                "frame rules of at least two"
                + (f" (left out: {'; '.join(left_out)})" if left_out else ""),
                file=log,
            )
        if named and upper == "frame" and not self._frame_available():
            raise ValueError(
                f"upper='frame': the calibration of {quantity} has no fitted error scale s(u) "
                "for a species present (not calibrated, or with --upper-rule ratio; aceuq "
                "calibrate with the default upper rule fits one); or watch with upper='atom' "
                "(single atoms only)"
            )
        self._warned = False
        self._frame_noted = False
        self._cached = (None, None)  # (species/cluster key, cutoffs)
        self._jury_cached = (None, None)  # (species key, the jurors' upper cutoffs)
        # Stored cutoffs are needed for "auto": said now, not at the first check in dyn.run().
        if quantity != "gamma_local" and (
            self.lower == "auto" or self._named_upper("auto", "frame", "atom")
        ):
            missing = [
                s
                for s in sorted(set(atoms.get_chemical_symbols()))
                if s in calc.model.species and calc.model.stored_cutoffs(quantity, s) is None
            ]
            if missing:
                raise ValueError(
                    f"{calc.model.path}: no calibrated {quantity} cutoffs for "
                    f"{', '.join(missing)}: run aceuq calibrate (or aceuq.calibrate) on "
                    "validation data, or give lower= and upper= numbers"
                )

    @property
    def log(self):
        """Where the watch prints: ``log`` as given, ``"-"`` (the default) being
        ``sys.stdout`` at the time of printing, None nothing."""
        return sys.stdout if isinstance(self._log, str) and self._log == "-" else self._log

    @log.setter
    def log(self, value):
        if isinstance(value, (str, os.PathLike)) and value != "-":
            # A file name, as ASE's logfile: appended to, a line at a time.
            f = open(value, "a", buffering=1)  # noqa: SIM115 (lives as long as the watch)
            weakref.finalize(self, f.close)
            value = f
        elif not (value is None or value == "-" or callable(getattr(value, "write", None))):
            raise ValueError(
                f"log must be '-' (standard output), None, a file name or a file object, got "
                f"{value!r}"
            )
        self._log = value

    def _sync_calc(self):
        """The atoms' calculator now (it may have been replaced since the watch was created):
        an AceUQCalculator computing the quantity and the jury's methods, or ValueError."""
        calc = self.atoms.calc
        # Checked at every call: calc.set(uq=...) may have dropped a method.
        _check_calc(calc, [self.quantity] + list(self.jury))
        if calc is not self.calc:
            # The jury, the notes and the frame rule were chosen from the model's calibration:
            # another model needs a watch of its own.
            old, new = os.fspath(self.calc.model.path), os.fspath(calc.model.path)
            if os.path.abspath(old) != os.path.abspath(new):
                raise ValueError(
                    f"the atoms' calculator now uses the model {new}, not {old} the watch was "
                    "created with: create a new Watch for it"
                )
            self.calc = calc
            self._cached = (None, None)
            self._jury_cached = (None, None)

    def _sit_jury(self, seats):
        """The jurors (methods of ``seats`` the calculator computes, with cutoffs and a fitted
        s(u) for every species present) and why the others are left out."""
        symbols = self.atoms.get_chemical_symbols()
        present = sorted(set(symbols))
        seated, left_out = [], []
        for m in seats:
            if m not in self.calc.uq_methods:
                left_out.append(f"{m}: not computed by the calculator")
                continue
            if self.calc.model.frame_log_calm(m, symbols, [0.0] * len(symbols)) is None:
                left_out.append(f"{m}: no fitted error scale s(u) for a species present")
                continue
            seated.append((m, {s: self.calc.model.error_limit(m, s) for s in present}))
        # Jurors answer the same question (e_max, p_halt) for every species: the largest group
        # that does sits (a tie: the group of the earliest method, gamma first).
        groups = [[c for c in seated if c[1] == a[1]] for a in seated]
        group = max(groups, key=len, default=[])
        jury = []
        for m, limits in seated:
            if group and limits != group[0][1]:
                ref_m, ref = group[0]
                s = next(s for s in present if limits[s] != ref[s])
                (e, p), (e0, p0) = limits[s], ref[s]
                left_out.append(
                    f"{m}: its {s} relation gives P(e > {e:g} eV/Å) at p_halt {p:g}, "
                    f"the jury's ({ref_m}) P(e > {e0:g} eV/Å) at p_halt {p0:g} (recalibrate "
                    "with the same --max-error and --p-halt to let it sit)"
                )
                continue
            jury.append(m)
        return jury, left_out

    def _vote(self):
        """The vote at this check: per juror whether an atom is above its upper cutoff, its
        frame probability, p_halt and largest u / u_max; and per atom whether any juror's
        upper cutoff is exceeded."""
        symbols = self.atoms.get_chemical_symbols()
        # The jurors' upper cutoffs depend only on the species: looked up again only when those
        # change, as the watched quantity's (_cutoffs).
        key = tuple(self.atoms.numbers)
        if self._jury_cached[0] != key:
            ups = [self.calc.cutoffs(m, self.atoms)[1] for m in self.jury]
            self._jury_cached = (key, ups)
        above_any = np.zeros(len(symbols), dtype=bool)
        rows = []
        for m, up in zip(self.jury, self._jury_cached[1]):
            u = np.asarray(self.calc.results[m])
            above = (u > up) | (np.isnan(u) & np.isfinite(up))
            above_any |= above
            log_calm, p_halt = self.calc.model.frame_log_calm(m, symbols, [float(v) for v in u])
            finite = np.isfinite(up) & (up > 0)
            # No atom with an upper cutoff of this juror (a method that cannot reach e_max, a
            # saturating GP): nan, as fix ace/uq/watch writes it, not a 0 that reads as calm. A
            # NaN u (a blown-up atom) counts as +inf, above any cutoff, as in the fix.
            ratio = (
                float(np.max(np.where(np.isnan(u), np.inf, u)[finite] / up[finite]))
                if finite.any()
                else math.nan
            )
            rows.append((m, bool(above.any()), -math.expm1(log_calm), p_halt, ratio))
        return rows, above_any

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

    def _named_upper(self, *names):
        return isinstance(self.upper, str) and self.upper in names

    def _frame_available(self):
        symbols = self.atoms.get_chemical_symbols()
        r = self.calc.model.frame_log_calm(self.quantity, symbols, [0.0] * len(symbols))
        return r is not None

    def _lookup_cutoffs(self):
        n = len(self.atoms)
        auto_upper = self._named_upper("auto", "frame", "atom")
        frame = self._named_upper("auto", "frame") and self._frame_available()
        if self.lower == "auto" or auto_upper:
            lo, up = self.calc.cutoffs(self.quantity, self.atoms)
        if self.lower != "auto":
            lo = np.full(n, float(self.lower))
        if not auto_upper:
            fixed = self.upper is None or self.upper == "vote"
            up = np.full(n, math.inf if fixed else float(self.upper))
        # A lower cutoff above the upper one would halt on atoms that were never candidates, as
        # fix ace/uq/watch says: a given lower above a calibrated upper is an error, a
        # calibrated lower above a given upper is lowered to it (with a warning).
        # When the jury halts, the quantity's own upper cutoff is not used (as in the fix).
        above = np.flatnonzero(lo > up) if not self.voting else np.array([], dtype=int)
        if above.size and self.lower != "auto" and auto_upper:
            k = above[0]
            where = self.atoms[k].symbol
            if self.quantity == "gamma_local":
                where += f" cluster {int(self.calc.results['gamma_local_cluster'][k])}"
            raise ValueError(
                f"for {where} the lower cutoff {lo[k]:.6g} is above the calibrated upper cutoff "
                f"{up[k]:.6g} of {self.quantity}: give a lower cutoff below the upper one (or "
                "upper=None)"
            )
        if self.lower != "auto" and auto_upper and not self.voting:
            # Every cluster of the species present, not only the clusters occupied now, as the
            # fix checks them at init: an atom moving into another cluster later must not end
            # the run with this error.
            model = self.calc.model
            for s in sorted(set(self.atoms.get_chemical_symbols())):
                k = model.clusters(s) if self.quantity == "gamma_local" else None
                for c in [None] if k is None else range(k):
                    stored = model.stored_cutoffs(self.quantity, s, c)
                    if stored is not None and float(self.lower) > stored[1]:
                        where = s if c is None else f"{s} cluster {c}"
                        raise ValueError(
                            f"for {where} the lower cutoff {float(self.lower):.6g} is above the "
                            f"calibrated upper cutoff {stored[1]:.6g} of {self.quantity}: give "
                            "a lower cutoff below the upper one (or upper=None)"
                        )
        if above.size and not auto_upper and not self._warned and self.log is not None:
            print(
                f"aceuq.Watch: warning: upper {float(self.upper):.6g} is below the calibrated "
                f"lower cutoff of {', '.join(sorted(set(self.atoms[above].get_chemical_symbols())))}"
                f"; their lower cutoff is set to {float(self.upper):.6g} (every candidate there "
                "is also a halt)",
                file=self.log,
            )
        if not self.voting:
            lo = np.minimum(lo, up)
        if not self._warned and self.log is not None:
            self._warned = True
            symbols = np.array(self.atoms.get_chemical_symbols())
            clusters = self.calc.results.get("gamma_local_cluster")
            per_cluster = self.quantity == "gamma_local" and clusters is not None
            parts = []
            for s in sorted(set(symbols)):
                k = np.flatnonzero(symbols == s)[0]
                # When the jury halts, the quantity's own upper cutoff is not used (as the fix
                # prints it: inf).
                shown = math.inf if self.voting else up[k]
                if per_cluster:
                    # gamma_local's cutoffs are per cluster: each cluster present, as
                    # `[Li:0: ...]` in the fix's line (one atom's would read as the species').
                    for c in sorted(set(clusters[symbols == s].tolist())):
                        j = np.flatnonzero((symbols == s) & (clusters == c))[0]
                        up_j = math.inf if self.voting else up[j]
                        parts.append(f"{s}:{c}: lower {lo[j]:.6g} upper {up_j:.6g}")
                else:
                    parts.append(f"{s}: lower {lo[k]:.6g} upper {shown:.6g}")
                if auto_upper and math.isinf(up[k]) and not self.voting:
                    # With the frame rule an entry without an upper cutoff can still halt, unless
                    # its uncertainty saturates so low that more atoms of its species than
                    # these are needed.
                    need = self.calc.model.frame_atoms_to_halt(self.quantity, s) if frame else None
                    count = int((symbols == s).sum())
                    if need is not None and need <= count:
                        continue
                    note = self.calc.model.calibration_note(self.quantity, s)
                    if need is not None:
                        many = "infinitely many" if math.isinf(need) else f"{need:.3g}"
                        rule = (
                            f"the frame rule would need {many} {s} atoms at its largest "
                            f"uncertainty to halt, the watch sees {count}"
                        )
                        note = f"{note}; {rule}" if note else rule
                    note = note or "none stored"
                    print(
                        f"aceuq.Watch: warning: {s} has no upper cutoff for {self.quantity}, "
                        f"the run will not halt on it ({note})",
                        file=self.log,
                    )
            print(f"aceuq.Watch: {self.quantity} [{'; '.join(parts)}]", file=self.log)
        return lo, up

    def _frame_rule(self, values):
        """``(p_frame, p_halt)`` of the frame rule, or None when it does not apply."""
        if not self._named_upper("auto", "frame"):
            return None
        symbols = self.atoms.get_chemical_symbols()
        r = self.calc.model.frame_log_calm(self.quantity, symbols, [float(v) for v in values])
        if r is None:
            if self.upper == "frame":
                raise ValueError(
                    f"upper='frame': the calibration of {self.quantity} has no fitted error "
                    "scale s(u) for a species present (not calibrated, or with --upper-rule "
                    "ratio; aceuq calibrate with the default upper rule fits one); or watch "
                    "with upper='atom' (single atoms only)"
                )
            if not self._frame_noted and self.log is not None:
                print(
                    f"aceuq.Watch: {self.quantity} halts on single atoms only: its calibration "
                    "has no fitted error scale s(u) for every species present",
                    file=self.log,
                )
            self._frame_noted = True
            return None
        log_calm, p_halt = r
        if not self._frame_noted and self.log is not None:
            print(
                f"aceuq.Watch: {self.quantity} also halts when P(some atom errs above e_max) "
                f">= {p_halt:.3g} (frame rule)",
                file=self.log,
            )
        self._frame_noted = True
        return -math.expm1(log_calm), p_halt

    def _step(self):
        if self.dyn is not None:
            step = int(self.dyn.nsteps)
            # A time only for molecular dynamics (an optimizer's dt is no time step).
            dt = getattr(self.dyn, "dt", None) if isinstance(self.dyn, MolecularDynamics) else None
            return step, math.nan if dt is None else step * dt / (1000.0 * units.fs)
        return self.checks - 1, math.nan

    def _write(
        self, values, above_lower, above_upper, kind, step, time, p_frame=None, vote=None
    ):
        # A new Atoms with what the watch writes only: no calculator and none of the atoms' other
        # arrays and info (reference forces or energies under custom keys, ...), so that the frame
        # carries no labels.
        src = self.atoms
        a = Atoms(numbers=src.numbers, positions=src.positions, cell=src.cell, pbc=src.pbc)
        # Momenta and what they and a labeller need (masses, initial moments and charges): not
        # labels.
        for key in ("momenta", "masses", "initial_magmoms", "initial_charges"):
            if key in src.arrays:
                a.arrays[key] = src.arrays[key].copy()
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
        if p_frame is not None:
            a.info["p_frame"] = p_frame
        if vote is not None:
            a.info["vote_p_frame"] = " ".join(f"{r[0]}:{r[2]:.10g}" for r in vote)
            a.info["vote_u_over_u_max"] = " ".join(f"{r[0]}:{r[4]:.10g}" for r in vote)
            a.info["votes"] = sum(not (r[2] < r[3]) for r in vote)
        buf = io.StringIO()
        write(buf, a, format="extxyz")
        # As fix ace/uq/watch appends (docs/candidates.md): the whole frame or nothing under a
        # file lock, a failed write (a full disk) cut off again, a killed append undone by the
        # next, and a file that is no XYZ or ends in somebody else's incomplete frame refused.
        append_xyz(self.dump, buf.getvalue())
        self.frames_dumped += 1

    def __call__(self):
        self._sync_calc()
        self.checks += 1
        self.atoms.get_potential_energy()
        values = np.asarray(self.calc.results[self.quantity])
        lo, up = self._cutoffs()
        if values.size:  # no atoms (yet): a check with nothing above anything
            self.max_value = max(self.max_value, float(values.max()))
        above_lower = values > lo
        vote = None
        if self.voting:
            # The jury halts: the quantity's own upper cutoff is not used.
            vote, above_upper = self._vote()
            frame, p_frame = None, None
            # The vote needs two frame rules; one juror's own frame rule (upper='auto'), its own.
            frame_halt = sum(not (r[2] < r[3]) for r in vote) >= min(2, len(vote))
        else:
            above_upper = values > up
            frame = self._frame_rule(values)
            p_frame = None if frame is None else frame[0]
            frame_halt = frame is not None and not (frame[0] < frame[1])
        step, time = self._step()
        if above_upper.any() or frame_halt:
            kind = "halt" if self.halt else "candidate"
            write_error = None
            if self.dump is not None:
                try:
                    self._write(values, above_lower, above_upper, kind, step, time, p_frame, vote)
                except Exception as err:
                    if not self.halt:
                        raise
                    write_error = err  # the halt matters more: raised below, with this attached
            if self.halt:
                # The atom's id in the dump (1-based), where its frame was written.
                def where(k):
                    written = self.dump is not None and write_error is None
                    return f", id {k + 1} in the dump" if written else ""

                if vote is not None:
                    # The atom named: the most uncertain one above a juror's upper cutoff, else
                    # the most uncertain one (as fix ace/uq/watch).
                    pool = np.flatnonzero(above_upper)
                    if pool.size == 0:
                        pool = np.arange(len(values))
                    k = int(pool[np.argmax(values[pool])])
                    rule = (
                        f"{self.jury[0]}'s frame rule" if len(self.jury) == 1 else "upper vote"
                    )
                    msg = (
                        f"halting at step {step} by {rule}: "
                        f"{sum(r[1] for r in vote)} of {len(vote)} jurors have an atom above "
                        f"their upper cutoff, {sum(not (r[2] < r[3]) for r in vote)} frame rules "
                        "reach p_halt; P(some atom errs above e_max) (largest u / u_max): "
                        + ", ".join(f"{r[0]} {r[2]:.3g} ({r[4]:.3g})" for r in vote)
                        + f"; the largest {self.quantity} is {values[k]:.6g} (atom index {k}"
                        f"{where(k)}; {int(above_lower.sum())} atoms above lower)"
                    )
                elif above_upper.any():
                    over = np.flatnonzero(above_upper)
                    k = over[np.argmax(values[over] - up[over])]
                    msg = (
                        f"halting at step {step}: atom index {k} ({self.atoms[k].symbol}"
                        f"{where(k)}) has "
                        f"{self.quantity} = {values[k]:.6g} above the upper cutoff {up[k]:.6g} "
                        f"({int(above_upper.sum())} atoms above upper, "
                        f"{int(above_lower.sum())} above lower)"
                    )
                else:
                    k = int(np.argmax(values))
                    msg = (
                        f"halting at step {step}: P(some atom errs above e_max) = "
                        f"{frame[0]:.6g} >= {frame[1]:.3g} (frame rule); no atom is above its "
                        f"upper cutoff, the largest {self.quantity} is {values[k]:.6g} (atom "
                        f"index {k}{where(k)}; {int(above_lower.sum())} atoms above lower)"
                    )
                if write_error is not None:
                    msg += (
                        f"; the frame could not be written to {self.dump} "
                        f"({type(write_error).__name__}: {write_error})"
                    )
                elif self.dump is not None:
                    msg += f"; frame written to {self.dump}"
                self.halted = Extrapolation(
                    msg,
                    step,
                    int(k),
                    float(values[k]),
                    float(up[k]) if vote is None else math.inf,
                    math.nan if p_frame is None else p_frame,
                    write_error,
                )
                if self.log is not None:
                    print(f"aceuq.Watch: {msg}", file=self.log)
                raise self.halted from write_error
        elif above_lower.any() and self.dump is not None:
            self._write(values, above_lower, above_upper, "candidate", step, time, p_frame, vote)
