"""The README's first-run times: demo --quick, demo and the fast test suite, beside one busy process.

Each job runs as a fresh process from the repository root (the demo into a
temporary folder), while one other process keeps one core busy for the whole
job, as another user's program would (``--quiet-machine`` leaves it out).
Prints wall time, the job's own CPU time and its exit status.

Usage::

    python benchmarks/first_run.py                     # all three (about 20 minutes)
    python benchmarks/first_run.py --jobs quick,demo   # some of them
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def busy_core(enabled=True):
    """One process that spins on one core while the block runs."""
    other = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if enabled else None
    try:
        yield
    finally:
        if other is not None:
            other.kill()
            other.wait()


def timed(cmd, busy, log):
    """Run ``cmd`` (output to ``log``) beside a busy core; returns (wall s, child CPU s, exit status)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with busy_core(busy), open(log, "w") as fh:
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", default="quick,demo,tests", help="comma-separated: quick, demo, tests")
    p.add_argument("--quiet-machine", action="store_true", help="no competing busy process")
    p.add_argument("--logs", default=None, help="folder for each job's output (default: a temporary one)")
    args = p.parse_args(argv)
    busy = not args.quiet_machine
    logs = Path(args.logs or tempfile.mkdtemp(prefix="first_run_"))
    logs.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "ddm_neuro.cli"]
    work = Path(tempfile.mkdtemp(prefix="first_run_out_"))
    jobs = {"quick": cli + ["demo", "--quick", "--out", str(work / "quick")],
            "demo": cli + ["demo", "--out", str(work / "demo")],
            "tests": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]}
    print(f"{os.cpu_count()} cores, {'one busy process beside each job' if busy else 'no competing process'}; "
          f"logs in {logs}")
    print(f"{'job':<28} {'wall':>8} {'CPU':>8} {'exit':>5}")
    for name in args.jobs.split(","):
        wall, cpu, rc = timed(jobs[name], busy, logs / f"{name}.log")
        label = {"quick": "ddm-neuro demo --quick", "demo": "ddm-neuro demo", "tests": "python -m pytest -q"}[name]
        print(f"{label:<28} {wall / 60:>6.1f} m {cpu / 60:>6.1f} m {rc:>5}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
