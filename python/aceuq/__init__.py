"""aceuq from Python: linear ACE potentials with per-atom uncertainty.

* :class:`Model` -- a ``*.aceuq`` file: species, uncertainty methods, calibrated cutoffs.
* :class:`AceUQCalculator` -- an ASE calculator: energy, forces, stress, per-atom energies and
  every stored uncertainty per atom in ``calc.results`` (``"gamma"``, ``"gamma_local"``,
  ``"ensemble"``, ``"distance"``, ``"gp"``, ``"contact"``).
* :class:`Watch` -- an ASE dynamics/optimizer observer that does what ``fix ace/uq/watch`` does in
  LAMMPS: appends candidate frames above the lower cutoff and stops the run (raises
  :class:`Extrapolation`) above the upper cutoff.
* :func:`fit`, :func:`calibrate`, :func:`evaluate`, :func:`select`, :func:`cli` -- the command
  line's work on lists of ASE ``Atoms`` (same code, same numbers as ``aceuq fit`` etc.).

Units are ASE's (and LAMMPS metal's): Å, eV, eV/Å, eV/Å^3 for stress.
"""

from ._native import AceuqError, Model, __version__
from .calculator import AceUQCalculator
from .watch import Extrapolation, Watch
from .workflow import calibrate, cli, evaluate, fit, select

__all__ = [
    "AceUQCalculator",
    "AceuqError",
    "Extrapolation",
    "Model",
    "Watch",
    "__version__",
    "calibrate",
    "cli",
    "evaluate",
    "fit",
    "select",
]
