"""The runnable examples (examples/*.py) as smoke tests.

Each example runs with ``--quick`` in a fresh process, as a user would run it,
into a folder under ``tmp_path``; it must exit 0 and write its figures
(non-empty PNG files). ``--quick`` sizes take 5-15 s of CPU each (fit a few
dozen neurons, short runs, no Brian2 compile). ``examples/decompositions.py``
is checked the same way when it exists (marked slow, as its author's own
quick-run test is).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: example -> figures it must write (relative to its output folder)
FIGURES = {
    "lorenz_end_to_end.py": ["attractor.png", "report/drift_field.png"],
    "associative_switching.py": ["switching.png", "success.png"],
    "episodic_cycling.py": ["phase_portrait.png", "angle.png", "visits.png", "angle_density.png"],
    "user_toml_system.py": ["attractor.png", "input_response.png", "report/drift_field.png"],
    "decompositions.py": [],  # another author's example: any PNG will do
}


def _run(script, *args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(EXAMPLES.parent))


# decompositions.py is another author's; its own quick run is marked slow (tests/test_analysis.py), so here too
SCRIPTS = [pytest.param(s, marks=pytest.mark.slow) if s == "decompositions.py" else s for s in FIGURES]


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_quick_and_writes_its_figures(script, tmp_path):
    if not (EXAMPLES / script).exists():
        pytest.skip(f"examples/{script} does not exist (yet)")
    out = tmp_path / "out"
    proc = _run(script, "--quick", "--out", str(out))
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    pngs = sorted(out.rglob("*.png"))
    assert pngs, f"{script} wrote no figures:\n{proc.stdout[-2000:]}"
    for name in FIGURES[script]:
        fig = out / name
        assert fig.is_file() and fig.stat().st_size > 1000, f"{script}: missing figure {name}"
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_example_refuses_an_existing_output_folder(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    proc = _run("associative_switching.py", "--quick", "--out", str(out))
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
