"""The command line's work on lists of ASE ``Atoms``.

Each function writes its structures to extended XYZ in a temporary folder and runs the same code
as the ``aceuq`` command of the same name, in this process; keyword options become that
command's options (``energy_weight=1.0`` -> ``--energy-weight 1.0``, ``active_set=True`` ->
``--active-set``, lists are comma-joined). See ``aceuq <command> --help`` for every option and
its default.
"""

from __future__ import annotations

import csv
import os
import tempfile
import warnings

import numpy as np
from ase.io import read, write

from . import _native
from ._native import AceuqError, Model
from .calculator import AceUQCalculator


def cli(*args) -> int:
    """Run ``aceuq`` with these arguments in this process (``cli("info", "--model",
    "li.aceuq")``) and return its exit code. Printed output goes to the process's stdout and
    stderr."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(args[0])
    return _native.cli([os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args])


def _options(options: dict, command: str) -> list[str]:
    """``options`` as ``aceuq command``'s options: None leaves an option out, a switch (an
    option without a value, ``active_set``) is given for True and left out for False; other
    booleans reach the command as ``true``/``false``, which says what it takes instead."""
    switches = set(_native.switches(command) or ())
    argv = []
    for key, value in options.items():
        name = key.replace("_", "-")
        flag = "--" + name
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)) and name in switches:
            if value:
                argv.append(flag)
        elif isinstance(value, (bool, np.bool_)):
            argv += [flag, "true" if value else "false"]
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return argv


def _run(command: str, argv: list[str]):
    """Run the command; on failure raise AceuqError with the command's message (which it also
    printed to stderr)."""
    args = [command] + [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in argv]
    code, message = _native.cli_with_message(args)
    if code != 0:
        raise AceuqError(
            f"aceuq {command} failed (exit code {code})" + (f": {message}" if message else "")
        )


def _structures(images, folder: str, name: str, labelled: bool = True) -> list[str]:
    """Paths for ``images``: a path (or list of paths) is used as it is; Atoms (or a list of
    them) are written to ``folder/name.xyz`` (``labelled``: their labels matter, so say when an
    AceUQCalculator's results are left out)."""
    if images is None:
        return []
    if isinstance(images, (str, os.PathLike)):
        return [os.fspath(images)]
    images = list(images) if not hasattr(images, "positions") else [images]
    if images and all(isinstance(i, (str, os.PathLike)) for i in images):
        return [os.fspath(i) for i in images]
    # The results of an AceUQCalculator are the model's own predictions, not labels: such Atoms
    # are written without them (other calculators' results, e.g. read from a file, are labels).
    own = [k for k, a in enumerate(images) if isinstance(getattr(a, "calc", None), AceUQCalculator)]
    if own and labelled:
        warnings.warn(
            f"{len(own)} of the {len(images)} {name} structures have an AceUQCalculator: its "
            "results are the model's predictions, not labels, and are left out (attach the "
            "reference results, e.g. a SinglePointCalculator, to use them as labels)",
            stacklevel=3,
        )
    if own:
        images = list(images)
        for k in own:
            images[k] = images[k].copy()  # without the calculator
    path = os.path.join(folder, f"{name}.xyz")
    write(path, images, format="extxyz")
    return [path]


def _model_file(model, folder: str) -> str:
    """A path for ``model``: a path as it is; a loaded :class:`Model` written to ``folder`` as it
    was loaded (its file may have changed or gone since), under its file's name."""
    if not isinstance(model, Model):
        return os.fspath(model)
    path = os.path.join(folder, os.path.basename(os.fspath(model.path)) or "model.aceuq")
    with open(path, "wb") as f:
        f.write(model.__reduce__()[1][1])
    return path


def _many(flag: str, paths: list[str]) -> list[str]:
    return [flag] + paths if paths else []


def fit(train, out, valid=None, species=None, **options) -> Model:
    """Fit a model on ``train`` (ASE Atoms with energies and forces, or extended XYZ paths),
    choosing the ridge (and, for the default basis, the basis) on ``valid``; write it to ``out``
    and return it loaded. Options as ``aceuq fit``: ``cutoff``, ``nmax``, ``lmax``,
    ``grow_basis``, ``target_force``, ``target_energy``, ``ridge``, ``energy_weight``,
    ``force_weight``, ``active_set=True``, ``clusters=K``, ``ensemble=N``, ``distance=True``,
    ``gp=True``, ``energy_key``, ``forces_key``, ..."""
    with tempfile.TemporaryDirectory(prefix="aceuq-") as tmp:
        argv = _many("--train", _structures(train, tmp, "train"))
        argv += _many("--valid", _structures(valid, tmp, "valid"))
        if species is not None:
            argv += ["--species", species if isinstance(species, str) else ",".join(species)]
        argv += ["--out", os.fspath(out)] + _options(options, "fit")
        _run("fit", argv)
    return Model(os.fspath(out))


def calibrate(model, valid, out=None, **options) -> Model:
    """Calibrate the stored uncertainty cutoffs of ``model`` (a path) on validation data
    (``valid``: Atoms with labels or paths), as ``aceuq calibrate``: ``pool_size``,
    ``max_error``, ``high`` (labelled high-uncertainty structures), ``methods``, ``tail``,
    ``upper_rule``, ``p_halt``, ... Writes ``out`` (default: the model file itself, ``path`` of
    a loaded :class:`Model`, which is calibrated as it was loaded) and returns it loaded."""
    if out is None and isinstance(model, Model):
        out = model.path
    with tempfile.TemporaryDirectory(prefix="aceuq-") as tmp:
        source = _model_file(model, tmp)
        argv = ["--model", source] + _many("--valid", _structures(valid, tmp, "valid"))
        high = options.pop("high", None)
        argv += _many("--high", _structures(high, tmp, "high"))
        if out is not None:
            argv += ["--out", os.fspath(out)]
        argv += _options(options, "calibrate")
        _run("calibrate", argv)
    return Model(os.fspath(out if out is not None else source))


def evaluate(model, data, **options) -> dict:
    """Errors and uncertainties of ``model`` on labelled ``data``, as ``aceuq eval`` (which also
    prints its table): a dict of per-atom numpy arrays, the columns of ``aceuq eval --per-atom``
    (``structure``, ``atom``, ``species``, reference and predicted forces, ``force_error``, and
    one column per uncertainty method). A loaded :class:`Model` is evaluated as it was loaded."""
    with tempfile.TemporaryDirectory(prefix="aceuq-") as tmp:
        table = os.path.join(tmp, "per_atom.csv")
        model = _model_file(model, tmp)
        argv = ["--model", model] + _many("--data", _structures(data, tmp, "data"))
        argv += ["--per-atom", table] + _options(options, "eval")
        _run("eval", argv)
        with open(table, newline="") as f:
            rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    out = {}
    for k, name in enumerate(header):
        column = [r[k] for r in rows]
        key = name.split(" ")[0]
        try:
            out[key] = np.array(column, dtype=np.int64)
        except ValueError:
            try:
                out[key] = np.array(column, dtype=float)
            except ValueError:
                out[key] = np.array(column)
    return out


def select(model, candidates, max, out=None, **options):
    """The ``max`` most informative of ``candidates`` (Atoms, extended XYZ paths or LAMMPS dump
    paths) for labelling, by D-optimality against the model's active sets, as ``aceuq select``
    (halt frames left out unless ``include_halted=True``). Returns them as a list of Atoms
    (most informative first) and writes them to ``out`` if given. A loaded :class:`Model`
    selects as it was loaded."""
    with tempfile.TemporaryDirectory(prefix="aceuq-") as tmp:
        model = _model_file(model, tmp)
        dest = os.fspath(out) if out is not None else os.path.join(tmp, "selected.xyz")
        argv = ["--model", model] + _many(
            "--candidates", _structures(candidates, tmp, "candidates", labelled=False)
        )
        argv += ["--max", str(max), "--out", dest] + _options(options, "select")
        _run("select", argv)
        if not os.path.exists(dest) or os.path.getsize(dest) == 0:
            return []
        return read(dest, index=":", format="extxyz")
