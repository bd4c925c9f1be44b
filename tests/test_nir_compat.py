"""Exported NIR files open in old and new NIR readers: nir 1.0.4 (no ``v_reset``, no metadata on ``Linear``,
``Input``, ``Output``) and the installed one, with the same content.

The old reader runs in a subprocess with ``PYTHONPATH`` set to a folder holding nir 1.0.4: ``$DDM_NIR_OLD``,
or one the test installs once into ddm_neuro's cache (``pip install --target DIR --no-deps nir==1.0.4``);
skipped only where pip cannot reach PyPI.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from ddm_neuro.fit.matching import fit  # noqa: E402
from ddm_neuro.sde.systems import get_system  # noqa: E402
from exporters.nir.export import build_graph, export  # noqa: E402

READ = r"""
import json, sys
import numpy as np
import nir
def walk(g, prefix=""):
    out = {}
    for name, node in g.nodes.items():
        key = prefix + name
        if isinstance(node, nir.NIRGraph):
            out.update(walk(node, key + "/"))
            continue
        fields = {k: float(np.sum(np.asarray(v, dtype=np.float64))) for k, v in vars(node).items()
                  if isinstance(v, np.ndarray) and k not in ("input_type", "output_type")}
        out[key] = {"type": type(node).__name__, "fields": fields}
    return out
try:
    g = nir.read(sys.argv[1])
except Exception as exc:
    print(json.dumps({"version": nir.__version__, "error": f"{type(exc).__name__}: {exc}"}))
else:
    print(json.dumps({"version": nir.__version__, "nodes": walk(g), "dt": float(g.metadata["dt"]),
                      "edges": sorted(map(list, g.edges))}))
"""


def old_reader():
    """A folder holding nir 1.0.4: ``$DDM_NIR_OLD``, else one installed once into ddm_neuro's cache
    (``pip install --target``; skipped only where pip cannot reach PyPI)."""
    path = os.environ.get("DDM_NIR_OLD")
    if path:
        if not (Path(path) / "nir").is_dir():
            pytest.fail(f"DDM_NIR_OLD={path} holds no nir package")
        return path
    cache = Path(os.environ.get("DDM_NEURO_CACHE") or Path.home() / ".cache" / "ddm_neuro") / "nir-1.0.4"
    if not (cache / "nir").is_dir():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp),
                              "nir==1.0.4"], capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            pytest.skip(f"nir 1.0.4 could not be installed into {cache}: {res.stderr.strip().splitlines()[-1:]}")
        try:
            tmp.rename(cache)
        except OSError:   # another process installed it meanwhile
            pass
    return str(cache)


def read_with(path, pythonpath=None):
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else dict(os.environ)
    out = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def model():
    """Double well (one variable), N = 60 LIF neurons without refractory period, closed form only."""
    return fit(get_system("double_well"), n_neurons=60, neuron={"name": "lif", "tau_ref": 0.0}, steps=0,
               n_train=2000, n_val=500, n_test=300, n_noise=60, seed=1, progress=False)


def test_old_and_new_readers_read_the_same_file(model, tmp_path):
    old = old_reader()
    path = export(model, tmp_path / "dw.nir", progress=False)
    a, b = read_with(path, old), read_with(path)
    assert a["version"] == "1.0.4" and b["version"] == nir.__version__ and "error" not in a, a
    assert a["edges"] == b["edges"] and a["dt"] == b["dt"]
    assert set(a["nodes"]) == set(b["nodes"]) and "rnn/rnn.lif" in a["nodes"]
    for name, node in a["nodes"].items():
        assert node["type"] == b["nodes"][name]["type"]
        for field, value in node["fields"].items():                      # weights and parameters alike
            assert np.isclose(value, b["nodes"][name]["fields"][field], rtol=1e-6), (name, field)
    # the new reader supplies v_reset = 0, the field the old one has not
    assert "v_reset" not in a["nodes"]["rnn/rnn.lif"]["fields"]
    assert b["nodes"]["rnn/rnn.lif"]["fields"]["v_reset"] == 0


def test_plain_nir_write_is_not_readable_by_nir_104(model, tmp_path):
    """What the export avoids: ``nir.write`` of the same graph stores ``v_reset``, which nir 1.0.4 refuses."""
    old = old_reader()
    path = tmp_path / "plain.nir"
    nir.write(path, build_graph(model))
    got = read_with(path, old)
    assert "v_reset" in got.get("error", ""), got
