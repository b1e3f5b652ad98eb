"""The ASE calculator of an aceuq model."""

from __future__ import annotations

import os

import numpy as np
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from ._native import Model


def _methods(model: Model, uq) -> list[str]:
    if uq is None or uq is False:
        return []
    if isinstance(uq, str):
        if uq.strip() == "all":
            return list(model.methods)
        uq = [u.strip() for u in uq.split(",") if u.strip()]
    else:
        try:
            uq = [str(u) for u in uq]
        except TypeError:
            raise ValueError(
                f"uq must be 'all', a method name, a comma-separated string, names in a list (any "
                f"iterable), or None, got {uq!r}"
            ) from None
    missing = [m for m in uq if m not in model.methods]
    if missing:
        have = ", ".join(model.methods) or "none"
        raise ValueError(
            f"{model.path}: no {missing[0]!r} uncertainty in this model (it has: {have}); "
            "build it with aceuq fit (--active-set, --clusters K, --ensemble N, --distance, "
            "--gp, --contact)"
        )
    return uq


class AceUQCalculator(Calculator):
    """ASE calculator for an aceuq model (``*.aceuq``).

    Parameters
    ----------
    model:
        Path of the model file, or a loaded :class:`aceuq.Model`.
    uq:
        Uncertainties to compute at every calculation: ``"all"`` (default: every method the model
        carries), a list or comma-separated string of method names, or ``None``.

    ``calc.results`` holds ``energy`` and ``free_energy`` (eV), ``energies`` (per atom, eV),
    ``forces`` (eV/Å), ``stress`` (eV/Å^3, Voigt order xx yy zz yz xz xy; fully periodic cells
    only) and, per atom, one array per uncertainty method named as in ``aceuq eval`` and
    ``pair_style ace/uq``: ``gamma``, ``gamma_local`` (with ``gamma_local_cluster``, the cluster
    that graded each atom), ``ensemble``, ``distance``, ``gp``, ``contact``. Neighbour lists are
    built inside; cells may be periodic along any subset of their vectors (the vectors along
    non-periodic directions may be zero, as ASE's slab builders give them without vacuum).
    ``calc.set(uq=...)`` changes the methods computed.

    Example::

        from ase.io import read
        from aceuq import AceUQCalculator
        atoms = read("frame.xyz")
        atoms.calc = AceUQCalculator("li.aceuq")
        e = atoms.get_potential_energy()
        gamma = atoms.calc.get_property("gamma", atoms)  # per atom, for the atoms as they are
        lower, upper = atoms.calc.cutoffs("gamma")   # per atom, from aceuq calibrate
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters = {"uq": "all"}
    nolabel = True

    def __init__(self, model, uq="all", **kwargs):
        self.model = model if isinstance(model, Model) else Model(os.fspath(model))
        self.uq_methods = _methods(self.model, uq)
        self._uq_properties()
        Calculator.__init__(self, uq=uq, **kwargs)

    def _uq_properties(self):
        # The uncertainties are properties too, so that atoms.calc.get_property("gamma", atoms)
        # computes them for the atoms as they are now (results[...] keeps the last ones).
        extra = list(self.uq_methods)
        if "gamma_local" in extra:
            extra.append("gamma_local_cluster")
        self.implemented_properties = type(self).implemented_properties + extra

    def set(self, **kwargs):
        """Change parameters (``uq``): returns the changed ones and, when any changed, drops the
        results so that the next calculation computes the new methods."""
        methods = _methods(self.model, kwargs["uq"]) if "uq" in kwargs else None
        changed = Calculator.set(self, **kwargs)
        if methods is not None:
            self.uq_methods = methods
            self._uq_properties()
        if changed:
            self.reset()
        return changed

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        a = self.atoms
        pbc = [bool(p) for p in a.pbc]
        periodic = all(pbc)
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError(
                "stress needs a cell periodic along all three vectors"
            )
        cell = a.cell.array.tolist() if any(pbc) else None
        pos = np.ascontiguousarray(a.positions, dtype="<f8")
        r = self.model.compute(
            a.get_chemical_symbols(), pos.tobytes(), cell, pbc, self.uq_methods
        )
        n = len(a)
        self.results["energy"] = r["energy"]
        self.results["free_energy"] = r["energy"]
        self.results["energies"] = np.frombuffer(r["energies"], dtype="<f8").copy()
        self.results["forces"] = np.frombuffer(r["forces"], dtype="<f8").reshape(n, 3).copy()
        if periodic:
            virial = np.array(r["virial"])
            stress = -virial / a.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]].copy()
        for m in self.uq_methods:
            self.results[m] = np.frombuffer(r[m], dtype="<f8").copy()
        if "gamma_local_cluster" in r:
            self.results["gamma_local_cluster"] = np.frombuffer(
                r["gamma_local_cluster"], dtype="<i8"
            ).copy()

    def cutoffs(self, method: str = "gamma", atoms=None):
        """Per-atom ``(lower, upper)`` cutoffs of ``method`` for ``atoms`` (default: the last
        calculated ones), as ``aceuq calibrate`` stored them: by species, and for
        ``gamma_local`` by the atom's cluster (its own cutoffs when calibrated, else its
        species'). ``upper`` is ``inf`` where there is no halting cutoff. Raises if the method is
        not calibrated for a species present."""
        atoms = atoms if atoms is not None else self.atoms
        if atoms is None:
            raise ValueError("no atoms: calculate first or pass atoms")
        symbols = atoms.get_chemical_symbols()
        clusters = None
        if method == "gamma_local":
            self.get_property("energy", atoms)
            clusters = self.results.get("gamma_local_cluster")
            if clusters is None:
                raise ValueError("gamma_local is not among the calculator's uq methods")
        lower = np.empty(len(symbols))
        upper = np.empty(len(symbols))
        memo = {}
        for i, s in enumerate(symbols):
            key = (s, None if clusters is None else int(clusters[i]))
            if key not in memo:
                c = self.model.stored_cutoffs(method, s, key[1])
                if c is None and method not in self.model.methods:
                    raise ValueError(
                        f"{self.model.path}: the model has no {method} uncertainty (it has: "
                        f"{', '.join(self.model.methods)}): refit it with that method, then "
                        "calibrate"
                    )
                if c is None:
                    raise ValueError(
                        f"{self.model.path}: no calibrated {method} cutoffs for {s}: "
                        "run aceuq calibrate (or aceuq.calibrate) on validation data"
                    )
                memo[key] = c
            lower[i], upper[i] = memo[key]
        return lower, upper
