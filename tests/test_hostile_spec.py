"""Hostile SDE specs: each ends in one clear line naming the problem, quickly, with nothing written.

Inputs that used to hang (huge powers found only after evaluation or after
substituting parameters, /dev/zero, a FIFO, a model file embedding such a spec)
run in one child process with a deadline, so that a regression fails here
instead of hanging the suite.
"""
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import sympy
import torch

from ddm_neuro.cli import main
from ddm_neuro.errors import DDMError, SpecError
from ddm_neuro.sde.expressions import MAX_EXPRESSION_CHARS, parse, substitute
from ddm_neuro.sde.equation import MAX_GRID_ELEMENTS, SDE
from ddm_neuro.sde.spec import MAX_SPEC_BYTES, sde_from_spec
from ddm_neuro.sde.systems import SPECS


def spec(drift=None, diffusion=None, variables=("v",), **extra):
    """A small valid spec dict with the given parts replaced."""
    out = {"variables": list(variables),
           "drift": drift if drift is not None else {v: f"-{v}" for v in variables},
           "diffusion": diffusion if diffusion is not None else {v: "1" for v in variables}}
    out.update(extra)
    return out


def refused(spec_dict, **kw):
    """The SpecError message for an invalid spec; no warning may be emitted on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SpecError) as info:
            sde_from_spec(spec_dict, **kw)
    assert [str(w.message) for w in caught] == []
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


# --------------------------------------------------------------------------- hangs, in a child with a deadline
CHILD = textwrap.dedent("""\
    import json, sys, time
    import ddm_neuro.sde.expressions
    from ddm_neuro.errors import DDMError
    from ddm_neuro.sde.spec import load_spec, sde_from_spec
    from ddm_neuro.network import LatentRNN

    # the budget on sympy, shortened for the test (a valid case takes 1 s on a quiet machine)
    ddm_neuro.sde.expressions.SYMPY_SECONDS = 4.0
    for case in json.loads(sys.stdin.read()):
        print("START", case["name"], flush=True)
        t0 = time.perf_counter()
        try:
            if case["kind"] == "spec":
                sde_from_spec(case["arg"], overrides=case.get("overrides"))
            elif case["kind"] == "load":
                load_spec(case["arg"])
            else:
                LatentRNN.load(case["arg"]).sde()
            error, kind = None, None
        except Exception as exc:  # a traceback is reported as such, and the next case still runs
            error, kind = str(exc), type(exc).__name__ if not isinstance(exc, DDMError) else "DDMError"
        print("DONE", json.dumps({"name": case["name"], "seconds": time.perf_counter() - t0, "error": error,
                                  "kind": kind}), flush=True)
""")

HANG_CASES = {
    # name: (kind, argument, expected message pieces)
    "power-after-cancellation": ("spec", spec({"v": "2**(v-v+10**10)"}),
                                 ["drift.v:", "exponent 10000000000", "limit of 1000"]),
    "symbolic-base-huge-exponent": ("spec", spec({"v": "(2*v)**(v-v+10**10)"}),
                                    ["drift.v:", "exponent 10000000000", "limit of 1000"]),
    "parameter-exponent": ("spec", spec({"v": "2**k"}, parameters={"k": 10_000_000_000}),
                           ["drift.v:", "exponent 10000000000", "after substituting parameters"]),
    "parameter-exponent-float": ("spec", spec({"v": "(2*v)**k"}, parameters={"k": 1e10}),
                                 ["drift.v:", "exponent 1e+10", "after substituting parameters"]),
    "parameter-exponent-negative": ("spec", spec({"v": "2**k*v"}, parameters={"k": -10_000_000_000}),
                                    ["drift.v:", "exponent -10000000000", "limit of 1000"]),
    "parameter-power-of-itself": ("spec", spec({"v": "k**k"}, parameters={"k": 10_000_000_000}),
                                  ["drift.v:", "exponent 10000000000"]),
    "exponent-from-cancelling-parameters": ("spec", spec({"v": "2**(a - b)"},
                                                         parameters={"a": 10 ** 30 + 10 ** 10, "b": 10 ** 30}),
                                            ["drift.v:", "exponent 10000000000"]),
    "override-as-exponent": ("spec", {**spec({"v": "v**k"}, parameters={"k": 2}), "name": "p"},
                             ["drift.v:", "exponent 1e+10"]),
    "nested-powers": ("spec", spec({"v": "(((10**64)**64)**64)**64"}),
                      ["drift.v:", "about 10^4096", "beyond float64's range"]),
    "diffusion-power": ("spec", spec(diffusion={"v": "1 + 0*(3*v)**(v - v + 10**12)"}),
                        ["diffusion.v:", "exponent 1000000000000"]),
    "sympy-expansion": ("spec", spec({"v": "abs(tanh((log(v) + log(w) + 1)**64))", "w": "-w"}, variables=("v", "w")),
                        ["drift.v:", "too hard to simplify", "sympy ran longer than 4 s"]),
    "complex-constant-in-a-power": ("spec", spec({"v": "tanh((-log(asin(64)))**v)"}),
                                    ["drift.v:", "is complex", "asin(64)"]),
    "tan-of-a-huge-constant": ("spec", spec({"v": "tan(exp(10**64))*v"}),
                               ["drift.v:", "beyond float64's range"]),
    "pole-times-a-hard-factor": ("spec", spec({"v": "cosh(sqrt(v**64))/(v - v)"}), ["drift.v:", "divides by zero"]),
    "pole-inside-a-power": ("spec", spec({"v": "cosh(v**32)*(v - v)**-1"}),
                            ["drift.v:", "divides by zero (0 to a negative power)"]),
    "pole-after-substitution": ("spec", spec({"v": "cosh(v**32)/k"}, parameters={"k": 0}),
                                ["drift.v:", "after substituting parameters", "divides by zero"]),
    "log(0)-after-substitution": ("spec", spec({"v": "cosh(v**32)*log(k)"}, parameters={"k": 0.0}),
                                  ["drift.v:", "after substituting parameters", "is undefined"]),
    "power-of-a-sign": ("spec", spec({"v": "-((sign(0.5))**(v - v + 1000))**(k*k)"}, parameters={"k": -1}),
                        None),
    "too-many-variables": ("spec", spec(variables=[f"x{i}" for i in range(2000)]),
                           ["'variables' has 2000 names; the limit is 32"]),
    "too-many-noise-columns": ("spec", spec(diffusion={"matrix": [["1"] * 100000]}),
                               ["diffusion.matrix has 100000 columns (noise channels); the limit is 64"]),
    "too-much-expression-text": ("spec", spec({f"x{i}": "+".join(["x0"] * 600) for i in range(20)},
                                              variables=[f"x{i}" for i in range(20)]),
                                 ["drift and diffusion hold", "the limit is 20000"]),
    "dev-zero": ("load", "/dev/zero", ["/dev/zero", "not a regular file"]),
    "fifo": ("load", "{fifo}", ["fifo", "not a regular file"]),
    "model-file-embedding-a-hang": ("model", "{model}", ["drift.x:", "exponent 10000000000"]),
}
HANG_SECONDS = 8.0  # the budget (4 s) plus start-up: minutes before the budget existed


@pytest.fixture(scope="module")
def hang_results(tmp_path_factory, small_model_path):
    folder = tmp_path_factory.mktemp("hostile")
    fifo = folder / "spec.fifo"
    os.mkfifo(fifo)
    # a real model file whose embedded spec is the power-after-cancellation case
    with np.load(small_model_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays.pop("__meta__").tobytes().decode())
    header["sde_spec"] = {"kind": "spec", "spec": spec({"x": "2**(x-x+10**10)", "y": "-y"}, variables=("x", "y"))}
    model = folder / "hostile.ddm"
    with open(model, "wb") as fh:
        np.savez(fh, **arrays, __meta__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    cases = []
    for name, (kind, arg, _) in HANG_CASES.items():
        if isinstance(arg, str):
            arg = arg.format(fifo=fifo, model=model)
        case = {"name": name, "kind": kind, "arg": arg}
        if name == "override-as-exponent":
            case["overrides"] = {"k": 1e10}
        cases.append(case)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(cases), capture_output=True,
                              text=True, timeout=90, env=env)
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = "(killed at the deadline)"
    results, started = {}, None
    for line in stdout.splitlines():
        if line.startswith("START "):
            started = line.split(" ", 1)[1]
        elif line.startswith("DONE "):
            done = json.loads(line.split(" ", 1)[1])
            results[done["name"]] = done
    return results, started, stderr


@pytest.mark.parametrize("case", list(HANG_CASES))
def test_inputs_that_used_to_hang_end_quickly_in_one_line(case, hang_results):
    results, started, stderr = hang_results
    assert case in results, f"{case!r} never finished (last started: {started!r}; stderr: {stderr[-500:]})"
    result = results[case]
    assert result["seconds"] < HANG_SECONDS, f"{case!r} took {result['seconds']:.1f} s"
    msg, pieces = result["error"], HANG_CASES[case][2]
    if pieces is None:  # valid, only slow before
        assert msg is None, msg
        return
    assert msg is not None, f"{case!r} was accepted"
    assert result["kind"] == "DDMError", f"{case!r} raised {result['kind']}: {msg}"
    assert "\n" not in msg
    for piece in pieces:
        assert piece in msg, (piece, msg)


# --------------------------------------------------------------------------- tracebacks and unclear errors
EXPRESSION_CASES = {
    "sqrt(-1)": ("sqrt(-1)", ["drift.v:", "'sqrt(-1)' is complex", "(I is about 0+1j)"]),
    "log(-1)": ("log(-1)", ["drift.v:", "is complex", "I*pi"]),
    "log(0)": ("log(0)", ["drift.v:", "is undefined", "zoo"]),
    "pole": ("v/(v - v)", ["drift.v:", "divides by zero"]),
    "tan(pi/2)": ("tan(pi/2)", ["drift.v:", "is undefined"]),
    "atan2(0, 0)": ("atan2(0, 0)", ["drift.v:", "is undefined", "nan"]),
    "negative base, fractional power": ("(-1)**0.5", ["drift.v:", "is complex"]),
    "bare function": ("exp", ["drift.v:", "function 'exp' is used without arguments", "exp(x)"]),
    "bare function in a product": ("2*exp", ["drift.v:", "function 'exp' is used without arguments"]),
    "function of a function": ("exp(exp)", ["drift.v:", "function 'exp' is used without arguments"]),
    "sum of 3000 terms": ("+".join(["v"] * 3000), ["drift.v:", "5999 characters",
                                                    f"limit of {MAX_EXPRESSION_CHARS} characters"]),
    "deep unary chain": ("-" * 1500 + "v", ["drift.v:", "nests 1501 levels deep", "limit is 100"]),
    "deeply nested calls": ("exp(" * 150 + "v" + ")" * 150, ["drift.v:", "nests 151 levels deep"]),
    "infinite literal": ("1e309*v", ["drift.v:", "gives inf, not a finite number"]),
    "float overflow": ("1e300*1e300", ["drift.v:", "gives inf"]),
    "huge integer literal": ("1" + "0" * 400 + "*v", ["drift.v:", "10^400-ish (401 digits)",
                                                        "beyond float64's range"]),
    "float power overflow": ("10.0**(v - v + 400)", ["drift.v:", "about 10^400"]),
    "exp of a huge float": ("exp(1e300)*v", ["drift.v:", "about 10^4.34e+299"]),
}


@pytest.mark.parametrize("case", list(EXPRESSION_CASES))
def test_bad_expressions_name_the_key_and_the_problem(case):
    text, pieces = EXPRESSION_CASES[case]
    msg = refused(spec({"v": text}))
    for piece in pieces:
        assert piece in msg, (piece, msg)


@pytest.mark.parametrize("text, piece", [("sign(v, v)", "sign() takes 1 argument, got 2"),
                                         ("abs()", "abs() takes 1 argument, got 0"),
                                         ("atan2(v)", "atan2() takes 2 arguments, got 1"),
                                         ("log(v, 2, 3)", "log() takes 1 or 2 arguments, got 3")])
def test_functions_take_their_number_of_arguments(text, piece):
    assert piece in refused(spec({"v": text}))


def test_log_with_a_base_and_sign_inside_abs_still_evaluate_in_numpy_and_torch():
    sde = sde_from_spec(spec({"v": "-log(2 + v**2, 2) - abs(exp(sign(v)))"}))
    z = np.array([[-0.5], [0.0], [1.5]])
    want = -np.log2(2 + z ** 2) - np.exp(np.sign(z))
    np.testing.assert_allclose(sde.drift(z), want, rtol=1e-12)
    np.testing.assert_allclose(sde.drift_torch(torch.tensor(z)).numpy(), want, rtol=1e-12)


def test_sign_of_a_constant_does_not_overflow_as_an_integer():
    # numpy's sign(0) is an int64: (sign(0) + 10**12)**2 wrapped around to 2e18
    sde = sde_from_spec(spec({"v": "(sign(v - v) + k)**2*1e-24 - v"}, parameters={"k": 10 ** 12}))
    z = np.array([[0.5], [-1.0]])
    np.testing.assert_allclose(sde.drift(z), 1.0 - z, rtol=1e-12)
    np.testing.assert_allclose(sde.drift_torch(torch.tensor(z)).numpy(), 1.0 - z, rtol=1e-12)


def test_the_same_expressions_in_a_diffusion_matrix_name_the_entry():
    msg = refused(spec(diffusion={"matrix": [["1", "sqrt(-1)"]]}))
    assert msg.startswith("diffusion.matrix[0][1]: 'sqrt(-1)' is complex")


@pytest.mark.parametrize("text, pieces", [
    ("log(v)", ["drift.v is not finite over the domain", "(at v=-1)"]),
    ("asin(2*v)", ["drift.v is not finite over the domain"]),
    ("exp(1000*v)", ["drift.v is not finite over the domain"]),
])
def test_non_finite_on_the_domain_is_one_line_without_warnings(text, pieces):
    msg = refused(spec({"v": text}))
    for piece in pieces:
        assert piece in msg, (piece, msg)


def named(*rows):
    """Parametrize rows, each identified by its first entry (a short case name)."""
    return [pytest.param(*row, id=row[0]) for row in rows]


@pytest.mark.parametrize("case, parts, pieces", named(
    ("nan parameter", dict(parameters={"a": float("nan")}), ["parameters.a must be a finite number, got nan"]),
    ("inf parameter", dict(parameters={"a": float("inf")}), ["parameters.a must be a finite number, got inf"]),
    ("huge integer parameter", dict(parameters={"a": 10 ** 400}),
     ["parameters.a = 10^400-ish (401 digits) is beyond float64's range"]),
    ("huge float parameter squared", dict(drift={"v": "k*k*v"}, parameters={"k": 1e300}),
     ["drift.v:", "after substituting parameters", "about 10^600"]),
    ("complex after substitution", dict(drift={"v": "(-2)**k*v"}, parameters={"k": 0.5}),
     ["drift.v:", "after substituting parameters", "is complex"]),
    ("parameter named like a function, called", dict(drift={"v": "exp(v)"}, parameters={"exp": 1.0}),
     ["drift.v:", "'exp' is a parameter or variable here, not a function"]),
    ("non-string parameter name", dict(parameters={1: 2.0}), ["parameter name 1 is not a valid name"]),
    ("keyword parameter name", dict(parameters={"lambda": 2.0}), ["'lambda' is a Python keyword"]),
    ("too many parameters", dict(parameters={f"p{i}": 1.0 for i in range(1001)}),
     ["[parameters] has 1001 entries; the limit is 1000"]),
    ("keyword variable", dict(variables=["if"], drift={"if": "-1"}, diffusion={"if": "1"}),
     ["'variables' entry 'if' is a Python keyword"]),
    ("very long name", dict(variables=["v" * 100000], drift={"v" * 100000: "-1"}, diffusion={"v" * 100000: "1"}),
     ["(100000 characters) is longer than 64 characters"]),
    ("unicode name", dict(variables=["vé"], drift={"vé": "-1"}, diffusion={"vé": "1"}),
     ["'variables' entry 'vé' is not a valid name"]),
    ("duplicate variables", dict(variables=["v", "v"]), ["'variables' has duplicate names: ['v', 'v']"]),
    ("inverted domain", dict(domain={"v": [1.0, -1.0]}), ["domain.v must be [low, high] with low < high"]),
    ("NaN domain", dict(domain={"v": [float("nan"), 1.0]}), ["domain.v must be [low, high]", "nan"]),
    ("huge-integer domain", dict(domain={"v": [-10 ** 400, 10 ** 400]}), ["domain.v must be [low, high]"]),
    ("domain wider than float64", dict(domain={"v": [-1e308, 1e308]}), ["domain.v", "wider than float64's range"]),
    ("inverted input range", dict(inputs=["u"], input_range={"u": [1.0, 0.0]}),
     ["input_range.u must be [low, high] with low < high"]),
    ("NaN input range", dict(inputs=["u"], input_range={"u": [0.0, float("nan")]}), ["input_range.u must be"]),
    ("name with a newline", dict(name="a\nb"), ["'name' must be at most 100 printable characters", "'a\\nb'"]),
    ("huge name", dict(name="n" * 10 ** 6), ["'name' must be at most 100 printable characters"]),
    ("description not a string", dict(description={"a": 1}), ["'description' must be a string"]),
    ("tags of the wrong type", dict(tags="chaotic"), ["'tags' must be a list"]),
))
def test_hostile_spec_fields(case, parts, pieces):
    msg = refused(spec(**parts))
    for piece in pieces:
        assert piece in msg, (piece, msg)


def test_unknown_keys_of_mixed_types_are_listed():
    assert "unknown key(s) [1, 'zz']" in refused({**spec(), 1: 2, "zz": 3})


def test_a_spec_nested_too_deeply_to_copy_is_refused():
    deep = []
    for _ in range(5000):
        deep = [deep]
    msg = refused(spec(description="x", tags=deep))
    assert "nested too deeply" in msg


def test_the_domain_grid_stays_bounded_in_high_dimensions():
    for d in (4, 8, 9, 16, 17, 32):
        sde = SDE.from_callables(lambda z: -z, 1.0, [f"x{i}" for i in range(d)])
        grid = sde.domain_grid()
        assert grid.shape[1] == d and len(grid) * d * d <= MAX_GRID_ELEMENTS
        assert np.all(np.abs(grid) <= 1)
    assert len(SDE.from_callables(lambda z: -z, 1.0, [f"x{i}" for i in range(8)]).domain_grid()) == 5 ** 8


# ---------------------------------------------------------------- the command line: one line, nothing written
def fit_refuses(path, tmp_path, capsys, pieces):
    out = tmp_path / "out.ddm"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["fit", str(path), "-n", "8", "--steps", "0", "-o", str(out), "--quiet"])
    stdout, stderr = capsys.readouterr()
    assert rc == 2, (rc, stderr)
    assert stderr.startswith("ddm-neuro fit: error: ") and stderr.count("\n") == 1, stderr
    assert stdout == "" and not out.exists()
    assert [str(w.message) for w in caught] == []
    for piece in pieces:
        assert piece in stderr, (piece, stderr)


GOOD_TOML = 'variables = ["v"]\n[drift]\nv = "-v"\n[diffusion]\nv = "1"\n'


@pytest.mark.parametrize("case, content, pieces", named(
    ("not UTF-8", GOOD_TOML.encode().replace(b'"1"', b'"\xff"'), ["not UTF-8 text (byte 0xff at offset"]),
    ("over the size limit", b"#" * (MAX_SPEC_BYTES + 1), ["larger than 1 MiB"]),
    ("sqrt(-1)", GOOD_TOML.replace('"-v"', '"sqrt(-1)"').encode(), ["drift.v: 'sqrt(-1)' is complex"]),
    ("bare function name", GOOD_TOML.replace('"-v"', '"exp"').encode(), ["function 'exp' is used without"]),
    ("sum of 3000 terms", GOOD_TOML.replace('"-v"', '"' + "+".join(["v"] * 3000) + '"').encode(),
     ["drift.v: expression", "limit of 2000 characters"]),
    ("nan parameter", GOOD_TOML.replace('[drift]', '[parameters]\na = nan\n[drift]').encode(),
     ["parameters.a must be a finite number, got nan"]),
    ("log(v) on the domain", GOOD_TOML.replace('"1"', '"log(v)"').encode(), ["diffusion.v is not finite"]),
    ("deeply nested TOML", b"a = " + b"[" * 100000 + b"]" * 100000, ["not valid TOML"]),
    ("huge TOML integer", b"a = " + b"1" * 5000, ["not valid TOML"]),
))
def test_fit_refuses_hostile_spec_files_in_one_line(case, content, pieces, tmp_path, capsys):
    path = tmp_path / "system.toml"
    path.write_bytes(content)
    fit_refuses(path, tmp_path, capsys, pieces)


def test_fit_refuses_a_directory(tmp_path, capsys):
    folder = tmp_path / "specs.toml"
    folder.mkdir()
    fit_refuses(folder, tmp_path, capsys, ["is a directory, not a spec file"])


# --------------------------------------------------------------------------- valid input is unchanged
def test_substitute_equals_sympy_subs_on_the_built_in_systems():
    for name, s in SPECS.items():
        syms = {v: sympy.Symbol(v, real=True) for v in [*s["variables"], *s.get("inputs", []), *s["parameters"]]}
        subs = {syms[k]: sympy.Float(v) if isinstance(v, float) else sympy.Integer(v)
                for k, v in s["parameters"].items()}
        for key, text in [*s["drift"].items(), *s["diffusion"].items()]:
            expr = parse(text, syms, key)
            assert sympy.srepr(substitute(expr, subs, key, text)) == sympy.srepr(expr.subs(subs)), (name, key)


@pytest.mark.parametrize("variable, drift", [("sgn", "-sign(sgn)*sgn"), ("Abs", "-abs(Abs)"),
                                             ("numpy", "-exp(numpy)"), ("torch", "-torch"),
                                             ("__builtins__", "-__builtins__")])
def test_names_that_shadow_printer_names_still_evaluate(variable, drift):
    sde = sde_from_spec(spec({variable: drift}, {variable: "1"}, variables=(variable,)))
    z = np.array([[-0.5], [0.25], [1.0]])
    f = sde.drift(z)
    ft = sde.drift_torch(torch.tensor(z)).numpy()
    np.testing.assert_allclose(f, ft, rtol=1e-12)
    x = z[:, 0]
    want = {"sgn": -np.sign(x) * x, "Abs": -np.abs(x), "numpy": -np.exp(x), "torch": -x, "__builtins__": -x}
    np.testing.assert_allclose(f[:, 0], want[variable], rtol=1e-12)


def test_big_integers_evaluate_in_numpy_and_torch():
    sde = sde_from_spec(spec({"v": "sin(10**20)*v + 2**64*2**64*v*0 - v"}))
    z = np.array([[0.5], [-1.0]])
    want = (math.sin(1e20) - 1) * z
    np.testing.assert_allclose(sde.drift(z), want, rtol=1e-12)
    np.testing.assert_allclose(sde.drift_torch(torch.tensor(z)).numpy(), want, rtol=1e-12)


def test_generous_limits_accept_long_real_expressions():
    poly = " + ".join(f"{i + 1}*v**{i % 7}" for i in range(150))  # ~1500 characters, a 150-term chain
    sde = sde_from_spec(spec({"v": f"-({poly})*v"}, domain={"v": [-1.0, 1.0]}))
    assert np.isfinite(sde.drift(np.array([[0.3]]))).all()
    assert sde_from_spec(spec({"v": "-v**k"}, parameters={"k": 1000})).drift(np.array([[0.5]]))[0, 0] == -0.5 ** 1000


def test_errors_are_ddm_errors():
    assert issubclass(SpecError, DDMError)
