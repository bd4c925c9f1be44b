#!/usr/bin/env bash
# build_nest_mpi.sh -- build an MPI-enabled NEST simulator 3.10.0 once, into a cache.
#
# What it does
#   The pip wheel `nest-simulator` is built without MPI (nest.build_info["have_mpi"] is
#   False), so multi-rank NEST benchmarks need a source build.  This script
#     1. downloads the PyPI sdist nest_simulator-3.10.0.tar.gz (the plain NEST CMake source
#        tree with a scikit-build pyproject wrapper, which is not used here) into
#        <cache>/src/ unless it is already there,
#     2. configures it with CMake (-Dwith-mpi=ON -Dwith-openmp=ON, GSL, ltdl, PyNEST for
#        the current `python`; docs, Boost, HDF5, SIONlib, MUSIC, libneurosim OFF),
#     3. compiles in <cache>/nest-mpi-3.10.0.build/ (kept after a failure, so a rerun
#        resumes the build), installs into a staging dir (make install DESTDIR=...) and
#        moves it to the prefix <cache>/nest-mpi-3.10.0 in one step,
#     4. writes <prefix>/bin/nest_vars.sh, runs a 2-rank mpirun smoke test and only then
#        writes the marker <prefix>/.build_complete.  A prefix without the marker is
#        treated as incomplete and rebuilt.
#   If the marker exists and `import nest` from the prefix works (with have_mpi True),
#   the script prints the prefix and the env lines and exits 0 without rebuilding.
#   The pip wheel in site-packages is left alone; the MPI build is only picked up when
#   PYTHONPATH points at it (PYTHONPATH entries come before site-packages).
#
#   <cache> is ${DDM_NEURO_CACHE:-$HOME/.cache/ddm_neuro}.  The log of every run is
#   appended to <cache>/nest-mpi-3.10.0.build.log.
#
# Prerequisites
#   Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin libgsl-dev libltdl-dev
#                  cmake g++ make   (CMake >= 3.19; the Python headers of `python`).
#   Without mpicc (or the other tools) the script exits 2 with one line naming them.
#   Python: cython >= 3 and numpy in the env of `python` (cython is pip-installed if
#   missing).  Network access to PyPI only when the sdist is not yet in <cache>/src/.
#
# Options / environment
#   --force              rebuild even if a complete install exists
#   PYTHON=...           interpreter to build PyNEST for (default: `python` on PATH)
#   NEST_BUILD_JOBS=N    parallel make jobs (default 1)
#   DDM_NEURO_CACHE=DIR  cache root (default $HOME/.cache/ddm_neuro)
#
# Run time measured here (2 shared cores, make -j1, under nice -n 19, Python 3.11.7,
# GCC 12.2, Open MPI 4.1.4, CMake 3.25): full build incl. download, configure, install
# and smoke test 1098 s (18 min 18 s); an idempotent rerun takes about 1 s.
# The install needs about 50 MB; the build tree is removed after a successful build.
#
# Boost is OFF (libboost-dev is not needed): NEST then lacks the iaf_bw_2001 model and
# uses its own connection sort instead of Boost's (only connection setup is affected)
# and prints mangled C++ type names in some error messages.
# The smoke test and the prefix are independent of the pip wheel, which stays installed.
#
# Using the result (prefix P = <cache>/nest-mpi-3.10.0, Python 3.11 shown):
#   source P/bin/nest_vars.sh
#   # or, equivalently:
#   export PYTHONPATH=P/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}
#   export LD_LIBRARY_PATH=P/lib/nest${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
#   export PATH=P/bin:$PATH
#   mpirun -np 2 python my_script.py        # as root (containers) Open MPI also needs
#                                           # --allow-run-as-root; --oversubscribe when
#                                           # ranks > cores
#   In the script, nest.NumProcesses() (== nest.num_processes) and nest.Rank() give the
#   MPI size and rank; set verbosity with nest.verbosity = nest.VerbosityLevel.ERROR
#   (nest.set_verbosity("M_ERROR") still works in 3.10 but emits a deprecation warning).

set -euo pipefail

NEST_VERSION=3.10.0
SDIST_NAME="nest_simulator-${NEST_VERSION}.tar.gz"
CACHE="${DDM_NEURO_CACHE:-$HOME/.cache/ddm_neuro}"
PREFIX="${CACHE}/nest-mpi-${NEST_VERSION}"
MARKER="${PREFIX}/.build_complete"
WORK="${CACHE}/nest-mpi-${NEST_VERSION}.build"
LOG="${CACHE}/nest-mpi-${NEST_VERSION}.build.log"
SRC_DIR="${CACHE}/src"
JOBS="${NEST_BUILD_JOBS:-1}"
FORCE=0

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build_nest_mpi.sh: unknown argument '$arg' (use --force or --help)" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- prerequisites
APT_HINT="apt-get install -y libopenmpi-dev openmpi-bin libgsl-dev libltdl-dev cmake g++ make"
missing=()
for tool in mpicc mpicxx mpirun cmake make c++ gsl-config; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "build_nest_mpi.sh: missing ${missing[*]}; install the Debian packages first: ${APT_HINT}" >&2
    exit 2
fi
if [ ! -e /usr/include/ltdl.h ] && ! ls /usr/local/include/ltdl.h >/dev/null 2>&1; then
    echo "build_nest_mpi.sh: missing ltdl.h; install the Debian packages first: ${APT_HINT}" >&2
    exit 2
fi

PY="${PYTHON:-python}"
if ! PY_EXE="$("$PY" -c 'import sys; print(sys.executable)' 2>/dev/null)"; then
    echo "build_nest_mpi.sh: cannot run Python interpreter '$PY' (set PYTHON=...)" >&2
    exit 2
fi
PY_VER="$("$PY_EXE" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
PY_SITE="${PREFIX}/lib/python${PY_VER}/site-packages"

# Open MPI refuses to start as root without --allow-run-as-root; --oversubscribe lets
# 2 ranks run on a 1-core machine.  Both flags are Open MPI only.
MPIRUN_FLAGS=()
if mpirun --version 2>&1 | grep -q "Open MPI"; then
    [ "$(id -u)" -eq 0 ] && MPIRUN_FLAGS+=(--allow-run-as-root)
    MPIRUN_FLAGS+=(--oversubscribe)
fi

env_lines() {
    cat <<EOF
source ${PREFIX}/bin/nest_vars.sh
# or, equivalently:
export PYTHONPATH=${PY_SITE}\${PYTHONPATH:+:\$PYTHONPATH}
export LD_LIBRARY_PATH=${PREFIX}/lib/nest\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export PATH=${PREFIX}/bin:\$PATH
# then e.g.: mpirun ${MPIRUN_FLAGS[*]} -np 2 python your_script.py
EOF
}

# Run a command with the MPI build on the import path (the pip wheel stays untouched).
with_nest_env() {
    PYTHONPATH="${PY_SITE}${PYTHONPATH:+:$PYTHONPATH}" \
    LD_LIBRARY_PATH="${PREFIX}/lib/nest${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    PATH="${PREFIX}/bin:$PATH" \
    PYNEST_QUIET=1 \
    "$@"
}

CHECK_PY="import os, nest; \
assert os.path.realpath(nest.__file__).startswith(os.path.realpath('${PREFIX}') + os.sep), nest.__file__; \
assert nest.build_info['have_mpi'], 'NEST built without MPI'; \
assert nest.build_info['version'] == '${NEST_VERSION}', nest.build_info['version']"

installed_ok() {
    [ -f "$MARKER" ] && with_nest_env "$PY_EXE" -c "$CHECK_PY" >/dev/null 2>&1
}

if [ "$FORCE" -eq 0 ] && installed_ok; then
    echo "NEST ${NEST_VERSION} with MPI is already built: ${PREFIX}"
    echo "($(tr '\n' ' ' < "$MARKER"))"
    echo "To use it:"
    env_lines
    exit 0
fi

# ---------------------------------------------------------------- build
mkdir -p "$CACHE" "$SRC_DIR"
exec > >(tee -a "$LOG") 2>&1
T0=$SECONDS
echo "=== build_nest_mpi.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): NEST ${NEST_VERSION} -> ${PREFIX}"
echo "python: ${PY_EXE} (${PY_VER}); mpicc: $(command -v mpicc); $(mpirun --version 2>&1 | head -n1); $(cmake --version | head -n1); jobs=${JOBS}"
if [ -e "$PREFIX" ]; then
    echo "Existing prefix ${PREFIX} is incomplete or --force was given: it will be replaced."
fi

# 1. sdist (downloaded to a temp dir and moved, so a broken download never sits in the cache)
if [ ! -f "${SRC_DIR}/${SDIST_NAME}" ] || ! gzip -t "${SRC_DIR}/${SDIST_NAME}" 2>/dev/null; then
    dl="$(mktemp -d "${SRC_DIR}/.dl.XXXXXX")"
    echo "Downloading ${SDIST_NAME} from PyPI ..."
    "$PY_EXE" -m pip download "nest-simulator==${NEST_VERSION}" --no-binary :all: --no-deps \
        -d "$dl"
    gzip -t "${dl}/${SDIST_NAME}"
    mv -f "${dl}/${SDIST_NAME}" "${SRC_DIR}/${SDIST_NAME}"
    rm -rf "$dl"
fi
echo "sdist: ${SRC_DIR}/${SDIST_NAME} ($(du -h "${SRC_DIR}/${SDIST_NAME}" | cut -f1))"

# 2. Cython >= 3 is needed to cythonize PyNEST
if ! "$PY_EXE" -c 'import Cython, sys; sys.exit(int(Cython.__version__.split(".")[0]) < 3)' 2>/dev/null; then
    echo "Installing cython>=3 for ${PY_EXE} ..."
    "$PY_EXE" -m pip install "cython>=3"
fi
"$PY_EXE" -c 'import numpy' 2>/dev/null || "$PY_EXE" -m pip install numpy
CYTHON_EXE="$(dirname "$PY_EXE")/cython"
[ -x "$CYTHON_EXE" ] || CYTHON_EXE="$(command -v cython || command -v cython3 || true)"

# 3. unpack (once) and configure
mkdir -p "$WORK"
SRC="${WORK}/nest_simulator-${NEST_VERSION}"
if [ ! -f "${WORK}/.unpacked" ]; then
    rm -rf "$SRC"
    tar -xzf "${SRC_DIR}/${SDIST_NAME}" -C "$WORK"
    touch "${WORK}/.unpacked"
fi
BUILD="${WORK}/build"
mkdir -p "$BUILD"
cd "$BUILD"
echo "--- cmake configure"
cmake "$SRC" \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DCMAKE_INSTALL_LIBDIR=lib \
    -Dwith-mpi=ON \
    -Dwith-openmp=ON \
    -Dwith-gsl=ON \
    -Dwith-ltdl=ON \
    -Dwith-python=ON \
    -DPython_EXECUTABLE="$PY_EXE" \
    ${CYTHON_EXE:+-DCYTHON_EXECUTABLE="$CYTHON_EXE"} \
    -Dwith-boost=OFF \
    -Dwith-hdf5=OFF \
    -Dwith-sionlib=OFF \
    -Dwith-music=OFF \
    -Dwith-libneurosim=OFF \
    -Dwith-userdoc=OFF \
    -Dwith-devdoc=OFF

# 4. compile and install into a staging dir, then move it into place in one step
echo "--- make -j${JOBS}"
make -j"$JOBS"
STAGE="${WORK}/stage"
rm -rf "$STAGE"
echo "--- make install (staged)"
make install DESTDIR="$STAGE" >/dev/null
[ -d "${STAGE}${PREFIX}" ] || { echo "staged install not found at ${STAGE}${PREFIX}" >&2; exit 1; }

if [ -f "${STAGE}${PREFIX}/bin/nest_vars.sh" ]; then
    echo "NEST installed its own bin/nest_vars.sh"
else
    cat > "${STAGE}${PREFIX}/bin/nest_vars.sh" <<EOF
# Generated by benchmarks/build_nest_mpi.sh: puts the MPI-enabled NEST ${NEST_VERSION}
# (PyNEST for Python ${PY_VER}) ahead of any pip-installed nest-simulator.
export NEST_INSTALL_DIR=${PREFIX}
export PYTHONPATH=${PY_SITE}\${PYTHONPATH:+:\$PYTHONPATH}
export LD_LIBRARY_PATH=${PREFIX}/lib/nest\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export PATH=${PREFIX}/bin:\$PATH
EOF
fi

rm -rf "$PREFIX"
mv "${STAGE}${PREFIX}" "$PREFIX"
rm -rf "$STAGE"

# 5. checks: import from the prefix, then the 2-rank smoke test
echo "--- import check"
with_nest_env "$PY_EXE" -c "$CHECK_PY; print('import OK:', nest.__file__, nest.build_info['version'], 'have_mpi=%s' % nest.build_info['have_mpi'])"

echo "--- smoke test: mpirun ${MPIRUN_FLAGS[*]} -np 2"
SMOKE_PY="import nest; nest.verbosity = nest.VerbosityLevel.ERROR; \
n = nest.Create('iaf_psc_alpha', 4, params={'I_e': 400.0}); sr = nest.Create('spike_recorder'); \
nest.Connect(n, sr); nest.Simulate(50.0); \
print('SMOKE', nest.NumProcesses(), nest.Rank(), 'local_spikes=%d' % sr.n_events, flush=True)"
set +e
smoke_out="$(cd /tmp && with_nest_env mpirun "${MPIRUN_FLAGS[@]}" -np 2 "$PY_EXE" -c "$SMOKE_PY" 2>&1)"
smoke_rc=$?
set -e
echo "$smoke_out"
if [ "$smoke_rc" -ne 0 ] \
   || [ "$(grep -c '^SMOKE 2 ' <<<"$smoke_out")" -ne 2 ] \
   || ! grep -q '^SMOKE 2 0 ' <<<"$smoke_out" || ! grep -q '^SMOKE 2 1 ' <<<"$smoke_out"; then
    echo "Smoke test FAILED (rc=${smoke_rc}); ${PREFIX} is left without the marker and will be rebuilt next time." >&2
    exit 1
fi

# 6. marker last, then drop the build tree
WALL=$((SECONDS - T0))
{
    echo "nest=${NEST_VERSION} mpi=ON openmp=ON python=${PY_EXE} (${PY_VER})"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) wall_s=${WALL} jobs=${JOBS}"
} > "$MARKER"
cd "$CACHE"
rm -rf "$WORK"

echo "=== done: build wall time ${WALL} s ($((WALL / 60)) min $((WALL % 60)) s)"
echo "MPI-enabled NEST ${NEST_VERSION} installed in: ${PREFIX}"
echo "To make 'python -c \"import nest\"' pick the MPI build:"
env_lines
