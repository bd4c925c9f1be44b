#!/usr/bin/env bash
# Distributed NEST runs of an exported ddm_neuro project: 1 thread, 2 threads, 2 MPI ranks, each verified.
#
#   bash benchmarks/nest_mpi.sh [MODEL.ddm] [OUTDIR]
#
# Without MODEL, fits ou_rot with N = 1000 tanh neurons. Exports it with
# `ddm-neuro export --format nest`, then runs the project's run.py (16 trials x
# 60 SDE time units, seed 1) three ways -- the PyPI wheel with 1 and 2 threads,
# and the MPI-enabled NEST of benchmarks/build_nest_mpi.sh under
# `mpirun -np 2` (1 thread per rank) -- and verifies each trajectory. It also
# checks that the noise-free network gives the same trajectory all three ways
# (max difference printed). Printed: wall time, NEST's run time, peak memory
# per rank, and each verdict. Figures: benchmarks/RESULTS_nest.md.
#
# Needs: ddm_neuro with the nest extra, and the MPI build (run
# benchmarks/build_nest_mpi.sh once; about 20 min here).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${DDM_NEURO_CACHE:-$HOME/.cache/ddm_neuro}"
MPI_NEST="$CACHE/nest-mpi-3.10.0"
OUT="${2:-$(mktemp -d /tmp/nest_mpi.XXXX)}"
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
if [ ! -f "$MPI_NEST/.build_complete" ]; then
    echo "error: no MPI-enabled NEST in $MPI_NEST; run: bash $HERE/build_nest_mpi.sh" >&2
    exit 2
fi
MODEL="${1:-}"
if [ -z "$MODEL" ]; then
    MODEL="$OUT/ourot1000.ddm"
    ddm-neuro fit ou_rot -n 1000 -o "$MODEL" --force --quiet --threads 1
fi
ddm-neuro export "$MODEL" --format nest -o "$OUT/proj" --force --quiet
RUN="$OUT/proj/run.py"
ARGS=(--seed 1 --trials 16 --duration 60)
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2)

timed() {  # timed NAME command...: wall seconds and the run's own line
    local name="$1"; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" 2>&1 | grep -v "^\s*$" | tail -1
    t1=$(date +%s.%N)
    echo "  $name: wall $(python -c "print(f'{$t1 - $t0:.1f}')") s"
}

echo "model: $MODEL; outputs in $OUT; load $(cut -d' ' -f1 /proc/loadavg)"
timed "1 thread" python "$RUN" "${ARGS[@]}" --threads 1 -o "$OUT/t1.npz" --force
timed "2 threads" python "$RUN" "${ARGS[@]}" --threads 2 -o "$OUT/t2.npz" --force
timed "2 ranks" env PYTHONPATH="$MPI_NEST/lib/python3.11/site-packages" \
    LD_LIBRARY_PATH="$MPI_NEST/lib/nest${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "${MPIRUN[@]}" python "$RUN" "${ARGS[@]}" --threads 1 -o "$OUT/r2.npz" --force
for f in t1 t2 r2; do
    echo "verify $f: $(ddm-neuro verify "$MODEL" "$OUT/$f.npz" --report "$OUT/${f}_report" --force 2>/dev/null \
        | grep -E "^(PASSED|FAILED)")"
done
# the same network, noise-free, three ways: equal trajectories
python "$RUN" --seed 1 --trials 2 --duration 5 --no-noise -o "$OUT/q1.npz" --force > /dev/null
python "$RUN" --seed 1 --trials 2 --duration 5 --no-noise --threads 2 -o "$OUT/q2.npz" --force > /dev/null
env PYTHONPATH="$MPI_NEST/lib/python3.11/site-packages" \
    LD_LIBRARY_PATH="$MPI_NEST/lib/nest${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "${MPIRUN[@]}" python "$RUN" --seed 1 --trials 2 --duration 5 --no-noise -o "$OUT/qr.npz" --force > /dev/null 2>&1
python - "$OUT" <<'EOF'
import sys
import numpy as np
out = sys.argv[1]
a, b, c = (np.load(f"{out}/{n}.npz")["z"] for n in ("q1", "q2", "qr"))
print(f"noise-free, max |difference| against 1 thread: 2 threads {np.abs(a - b).max():.3g}, "
      f"2 ranks {np.abs(a - c).max():.3g}")
EOF
