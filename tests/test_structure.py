"""The shape of the house, checked from the source: no import cycles inside ddm_neuro, no imports of
another module's private names, exporters never import the torch simulators, a thin command line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_SIMULATORS = ("ddm_neuro.run.rate", "ddm_neuro.spiking.simulator", "ddm_neuro.run.backends")


def _modules(package):
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _imports(name, path, is_pkg, known):
    """``(target module, imported names)`` of every import in the file, module- or function-level."""
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                if sub in known:          # "from package import module"
                    found.append((sub, None))
                else:
                    found.append((mod, alias.name))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
    return found


def _graph(package):
    mods = _modules(package)
    graph = {}
    for name, (path, is_pkg) in mods.items():
        graph[name] = _imports(name, path, is_pkg, mods)
    return mods, graph


def test_no_import_cycles_inside_ddm_neuro():
    mods, graph = _graph("ddm_neuro")
    # a package's __init__ re-exporting its own modules is not a cycle of concepts: only module -> module edges
    edges = {m: sorted({t for t, _ in imps if t in mods and t != m and not m.startswith(t + ".")})
             for m, imps in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", ["ddm_neuro", "exporters"])
def test_no_module_imports_another_modules_private_names(package):
    mods, graph = _graph(package)
    bad = [f"{m} imports {t}.{n}" for m, imps in graph.items() for t, n in imps
           if n and n.startswith("_") and not n.startswith("__") and t != m and t.split(".")[0] in ("ddm_neuro", "exporters")]
    assert not bad, bad


def test_exporters_never_import_the_torch_simulators():
    _, graph = _graph("exporters")
    bad = [f"{m} imports {t}" for m, imps in graph.items() for t, _ in imps
           if any(t == s or t.startswith(s + ".") for s in TORCH_SIMULATORS)]
    assert not bad, bad


def test_core_never_imports_exporters():
    _, graph = _graph("ddm_neuro")
    bad = [f"{m} imports {t}" for m, imps in graph.items() for t, _ in imps if t.split(".")[0] == "exporters"]
    assert not bad, bad


def test_the_command_line_is_thin():
    files = sorted((ROOT / "ddm_neuro" / "cli").glob("*.py")) if (ROOT / "ddm_neuro" / "cli").is_dir() \
        else [ROOT / "ddm_neuro" / "cli.py"]
    lines = sum(len(f.read_text().splitlines()) for f in files)
    assert lines < 300, f"the CLI holds {lines} lines ({', '.join(f.name for f in files)}); keep rules in the library"
