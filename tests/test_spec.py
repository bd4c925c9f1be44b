"""SDE specs (DESIGN §4): TOML/dict -> SDE, and every refusal names the key and the problem."""
import re
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ddm_neuro.errors import SpecError
from ddm_neuro.sde.expressions import parse
from ddm_neuro.sde.spec import load_spec, sde_from_spec

# DESIGN §4's FitzHugh-Nagumo example, verbatim (its [domain] names only v).
DESIGN_FHN = textwrap.dedent("""\
    name = "fitzhugh_nagumo"
    variables = ["v", "w"]
    inputs = ["I"]                    # optional input channel names (u)
    [parameters]
    a = 0.7
    b = 0.8
    eps = 0.08
    [drift]                           # one expression per variable
    v = "v - v**3/3 - w + I"
    w = "eps*(v + a - b*w)"
    [diffusion]                       # diagonal: one expression per variable ...
    v = "0.1*sqrt(1 + v**2)"
    w = "0"
    # ... or a full d x m matrix:  matrix = [["0.1", "0"], ["0.05*v", "0.1"]]
    [input_range]                     # range of each input the fit must cover
    I = [0.0, 1.0]
    [domain]                          # optional box where accuracy matters
    v = [-2.5, 2.5]
    """)
# The same with a range for w too (the library needs every variable in [domain]).
FHN = DESIGN_FHN + "w = [-1.0, 2.5]\n"

Z = np.array([[0.5, -0.2], [-1.5, 0.75], [2.0, 1.0]])
U = np.array([[0.3], [0.0], [1.0]])


def fhn_drift(z, u, a=0.7, b=0.8, eps=0.08):
    v, w, current = z[:, 0], z[:, 1], u[:, 0]
    return np.stack([v - v ** 3 / 3 - w + current, eps * (v + a - b * w)], axis=1)


def spec(drift=None, diffusion=None, variables=("v", "w"), **extra):
    """A small valid spec dict, with the given parts replaced."""
    out = {"variables": list(variables),
           "drift": drift if drift is not None else {v: f"-{v}" for v in variables},
           "diffusion": diffusion if diffusion is not None else {v: "1" for v in variables}}
    out.update(extra)
    return out


def write(tmp_path, text, name="system.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(spec_dict, **kw):
    """The SpecError message for an invalid spec (numpy warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SpecError) as info:
            sde_from_spec(spec_dict, **kw)
    return str(info.value)


# --------------------------------------------------------------------------- valid specs
def test_fitzhugh_nagumo_compiles_and_matches_hand_computed_values(tmp_path):
    sde = load_spec(write(tmp_path, FHN))
    assert sde.name == "fitzhugh_nagumo"
    assert sde.variables == ("v", "w") and sde.inputs == ("I",) and sde.noise_dim == 2
    assert sde.input_range == {"I": (0.0, 1.0)}
    assert sde.domain == {"v": (-2.5, 2.5), "w": (-1.0, 2.5)}
    assert not sde.additive  # 0.1 sqrt(1 + v^2) depends on v
    # one point by hand: v = 0.5, w = -0.2, I = 0.3
    np.testing.assert_allclose(sde.drift(Z[:1], U[:1]),
                               [[0.5 - 0.125 / 3 + 0.2 + 0.3, 0.08 * (0.5 + 0.7 + 0.8 * 0.2)]], rtol=1e-12)
    np.testing.assert_allclose(sde.drift(Z, U), fhn_drift(Z, U), rtol=1e-12)
    g = sde.diffusion(Z)
    assert g.shape == (3, 2, 2)
    np.testing.assert_allclose(g[:, 0, 0], 0.1 * np.sqrt(1 + Z[:, 0] ** 2), rtol=1e-12)
    assert np.all(g[:, 1, :] == 0) and np.all(g[:, 0, 1] == 0)  # "w = 0" and the off-diagonal


def test_fitzhugh_nagumo_numpy_and_torch_agree(tmp_path):
    sde = load_spec(write(tmp_path, FHN))
    zt, ut = torch.tensor(Z), torch.tensor(U)
    np.testing.assert_allclose(sde.drift_torch(zt, ut).numpy(), sde.drift(Z, U), rtol=1e-12)
    np.testing.assert_allclose(sde.diffusion_torch(zt).numpy(), sde.diffusion(Z), rtol=1e-12)
    assert sde.drift_torch(zt, ut).dtype == torch.float64


def test_inputs_broadcast_and_default_to_zero(tmp_path):
    sde = load_spec(write(tmp_path, FHN))
    np.testing.assert_allclose(sde.drift(Z, [0.3]), fhn_drift(Z, np.full((3, 1), 0.3)), rtol=1e-12)
    np.testing.assert_allclose(sde.drift(Z), fhn_drift(Z, np.zeros((3, 1))), rtol=1e-12)


def test_design_example_verbatim_is_accepted(tmp_path):
    sde = load_spec(write(tmp_path, DESIGN_FHN))
    np.testing.assert_allclose(sde.drift(Z, U), fhn_drift(Z, U), rtol=1e-12)


def test_name_defaults_to_the_file_stem(tmp_path):
    text = FHN.replace('name = "fitzhugh_nagumo"\n', "")
    assert load_spec(write(tmp_path, text, "my_neuron.toml")).name == "my_neuron"


def test_full_matrix_diffusion_has_shape_d_by_m():
    sde = sde_from_spec(spec(diffusion={"matrix": [["0.1", "0", "0.2*v"], ["0.05*v", "0.1", "0"]]}))
    assert sde.noise_dim == 3 and not sde.additive
    g = sde.diffusion(Z)
    assert g.shape == (3, 2, 3)
    v = Z[:, 0]
    np.testing.assert_allclose(g[:, 0], np.stack([np.full(3, 0.1), np.zeros(3), 0.2 * v], 1), rtol=1e-12)
    np.testing.assert_allclose(g[:, 1], np.stack([0.05 * v, np.full(3, 0.1), np.zeros(3)], 1), rtol=1e-12)
    np.testing.assert_allclose(sde.diffusion_torch(torch.tensor(Z)).numpy(), g, rtol=1e-12)
    np.testing.assert_allclose(sde.diffusion_cov(Z), g @ np.swapaxes(g, 1, 2), rtol=1e-12)


def test_design_matrix_example_and_diagonal_form_shapes():
    full = sde_from_spec(spec(diffusion={"matrix": [["0.1", "0"], ["0.05*v", "0.1"]]}))
    assert full.noise_dim == 2 and full.diffusion(Z).shape == (3, 2, 2)
    np.testing.assert_allclose(full.diffusion(Z[:1])[0], [[0.1, 0.0], [0.025, 0.1]], rtol=1e-12)
    diag = sde_from_spec(spec(diffusion={"v": "0.3", "w": "0.2"}))
    assert diag.noise_dim == 2 and diag.additive
    np.testing.assert_array_equal(diag.diffusion(Z), np.broadcast_to(np.diag([0.3, 0.2]), (3, 2, 2)))


def test_zero_diffusion_entries_are_allowed():
    sde = sde_from_spec(spec(diffusion={"v": "0", "w": 0}))
    assert sde.additive
    assert np.all(sde.diffusion(Z) == 0)
    mat = sde_from_spec(spec(diffusion={"matrix": [["0", "0"], ["0", "0.5"]]}))
    np.testing.assert_array_equal(mat.diffusion(Z[:1])[0], [[0, 0], [0, 0.5]])


def test_parameter_overrides_replace_values_and_are_kept_in_the_spec(tmp_path):
    sde = load_spec(write(tmp_path, FHN), overrides={"eps": 0.2, "a": 1})
    assert sde.parameters["eps"] == 0.2 and sde.parameters["a"] == 1 and sde.parameters["b"] == 0.8
    np.testing.assert_allclose(sde.drift(Z, U), fhn_drift(Z, U, a=1.0, eps=0.2), rtol=1e-12)
    # the stored spec rebuilds the overridden SDE (what a model file keeps)
    again = sde_from_spec(sde.spec["spec"])
    np.testing.assert_allclose(again.drift(Z, U), sde.drift(Z, U), rtol=1e-12)


def test_overrides_do_not_change_the_callers_dict():
    s = spec(drift={"v": "-k*v", "w": "-w"}, parameters={"k": 1.0})
    sde_from_spec(s, overrides={"k": 3.0})
    assert s["parameters"]["k"] == 1.0


def test_unknown_override_is_refused_naming_it_and_the_known_parameters():
    msg = refused(spec(drift={"v": "-k*v", "w": "-w"}, parameters={"k": 1.0}), overrides={"kk": 2.0})
    assert "'kk'" in msg and "unknown parameter" in msg and "known: k" in msg


def test_constants_and_functions_evaluate():
    sde = sde_from_spec(spec(drift={"v": "pi*v + E", "w": "tanh(w) + abs(v) + atan2(w, 1)"}))
    z = Z[:1]
    np.testing.assert_allclose(sde.drift(z)[0], [math.pi * 0.5 + math.e,
                                                 math.tanh(-0.2) + 0.5 + math.atan2(-0.2, 1)], rtol=1e-12)


@pytest.mark.parametrize("expr", ["sqrt(2)*v", "log(2) + v", "exp(-1)*v"])
def test_torch_evaluates_exact_function_constants(expr):
    sde = sde_from_spec(spec(drift={"v": expr, "w": "-w"}))
    np.testing.assert_allclose(sde.drift_torch(torch.tensor(Z)).numpy(), sde.drift(Z), rtol=1e-12)


def test_torch_evaluates_sign():
    sde = sde_from_spec(spec(drift={"v": "-sign(v)", "w": "-w"}))
    np.testing.assert_allclose(sde.drift_torch(torch.tensor(Z)).numpy(), sde.drift(Z), rtol=1e-12)


# --------------------------------------------------------------------------- refusals
def test_unknown_symbol_names_the_symbol_and_the_key():
    msg = refused(spec(drift={"v": "-v + q", "w": "-w"}))
    assert "drift.v" in msg and "unknown symbol 'q'" in msg and "known: v, w" in msg


def test_unknown_symbol_in_diffusion_names_the_key():
    msg = refused(spec(diffusion={"v": "1", "w": "sigma"}))
    assert "diffusion.w" in msg and "'sigma'" in msg
    msg = refused(spec(diffusion={"matrix": [["1", "0"], ["0", "s*v"]]}))
    assert "diffusion.matrix[1][1]" in msg and "'s'" in msg


def test_diffusion_may_not_depend_on_inputs():
    msg = refused(spec(diffusion={"v": "0.1*I", "w": "1"}, inputs=["I"], input_range={"I": [0.0, 1.0]}))
    assert "diffusion.v" in msg and "'I'" in msg


def test_unknown_function_is_named_with_the_allowed_list():
    msg = refused(spec(drift={"v": "foo(v)", "w": "-w"}))
    assert "drift.v" in msg and "unknown function 'foo'" in msg and "allowed:" in msg and "tanh" in msg


@pytest.mark.parametrize("drift, missing, extra", [
    ({"v": "-v"}, "['w']", "[]"),
    ({"v": "-v", "w": "-w", "x": "1"}, "[]", "['x']"),
    ({"v": "-v", "x": "1"}, "['w']", "['x']"),
])
def test_wrong_drift_entries_name_what_is_missing_and_unexpected(drift, missing, extra):
    msg = refused(spec(drift=drift))
    assert "[drift]" in msg and "one entry per variable ['v', 'w']" in msg
    assert f"missing {missing}" in msg and f"unexpected {extra}" in msg


def test_missing_drift_table():
    s = spec()
    del s["drift"]
    msg = refused(s)
    assert "missing [drift]" in msg


def test_diffusion_matrix_with_wrong_row_count():
    msg = refused(spec(diffusion={"matrix": [["1", "0"]]}))
    assert "diffusion.matrix has 1 rows, expected 2" in msg


def test_diffusion_matrix_with_ragged_rows():
    msg = refused(spec(diffusion={"matrix": [["1", "0"], ["1"]]}))
    assert "diffusion.matrix" in msg and "same length" in msg and "[2, 1]" in msg


def test_diffusion_matrix_rows_that_are_not_lists_say_so():
    msg = refused(spec(diffusion={"matrix": ["1", "0"]}))
    assert "diffusion.matrix" in msg and ("str" in msg or "'1'" in msg)


def test_diagonal_diffusion_with_wrong_entries():
    msg = refused(spec(diffusion={"v": "1"}))
    assert "[diffusion]" in msg and "missing ['w']" in msg
    msg = refused(spec(diffusion={"v": "1", "w": "1", "matrix": [["1", "0"], ["0", "1"]]}))
    assert "'matrix' and other keys" in msg


@pytest.mark.parametrize("diffusion, domain, where", [
    ({"v": "log(v)", "w": "1"}, {"v": [-1.0, 1.0], "w": [0.0, 1.0]}, "domain"),
    ({"v": "log(v)", "w": "1"}, {"v": [0.0, 1.0], "w": [0.0, 1.0]}, "domain"),   # log(0) = -inf
    ({"v": "1", "w": "1/v"}, None, "probed on [-1, 1]"),                               # no domain: probes include 0
    ({"matrix": [["1", "sqrt(w)"], ["0", "1"]]}, {"v": [0.0, 1.0], "w": [-1.0, 1.0]}, "domain"),
])
def test_diffusion_not_finite_over_the_domain(diffusion, domain, where):
    extra = {"domain": domain} if domain else {}
    msg = refused(spec(diffusion=diffusion, **extra))
    assert re.search(r"diffusion\.(v|w|matrix\[\d\]\[\d\]) is not finite", msg) and where in msg and "(at v=" in msg


def test_drift_not_finite_over_the_input_range():
    msg = refused(spec(drift={"v": "-v/I", "w": "-w"}, inputs=["I"], input_range={"I": [0.0, 1.0]}))
    assert "drift.v is not finite" in msg


def test_non_finite_diffusion_names_the_entry():
    msg = refused(spec(diffusion={"v": "1", "w": "1/v"}))
    assert "diffusion.w" in msg


@pytest.mark.parametrize("value, shown", [("x", "'x'"), (True, "True"), (float("nan"), "nan"), ([1.0], "[1.0]")])
def test_non_number_parameter(value, shown):
    msg = refused(spec(drift={"v": "-a*v", "w": "-w"}, parameters={"a": value}))
    assert "parameters.a" in msg and "finite number" in msg and shown in msg


def test_non_number_parameter_in_toml(tmp_path):
    path = write(tmp_path, FHN.replace("eps = 0.08", 'eps = "small"'))
    with pytest.raises(SpecError, match=r"parameters\.eps must be a finite number, got 'small'"):
        load_spec(path)


def test_input_without_input_range():
    msg = refused(spec(drift={"v": "-v + I", "w": "-w"}, inputs=["I"]))
    assert "[input_range]" in msg and "['I']" in msg


@pytest.mark.parametrize("rng, shown", [([1.0], "[1.0]"), ([1.0, 0.0], "[1.0, 0.0]"), (["a", "b"], "['a', 'b']")])
def test_bad_input_range(rng, shown):
    msg = refused(spec(drift={"v": "-v + I", "w": "-w"}, inputs=["I"], input_range={"I": rng}))
    assert "input_range.I" in msg and "low < high" in msg and shown in msg


def test_input_range_for_an_unknown_input():
    msg = refused(spec(inputs=["I"], input_range={"I": [0.0, 1.0], "J": [0.0, 1.0]}))
    assert "[input_range]" in msg and "'J'" in msg


def test_caret_is_refused_with_a_hint():
    msg = refused(spec(drift={"v": "v^3", "w": "-w"}))
    assert "drift.v" in msg and "'^'" in msg and "'**'" in msg


def test_syntax_error_names_the_key():
    msg = refused(spec(drift={"v": "-v +", "w": "-w"}))
    assert "drift.v" in msg and "syntax error" in msg


@pytest.mark.parametrize("value, problem", [([1], "expected an expression string, got list"),
                                            (True, "got bool"), ("  ", "empty expression")])
def test_non_expression_values(value, problem):
    msg = refused(spec(drift={"v": value, "w": "-w"}))
    assert "drift.v" in msg and problem in msg


def test_unknown_top_level_key():
    msg = refused(spec(diffusoin={"v": "1"}))
    assert "unknown key" in msg and "'diffusoin'" in msg


def test_variable_names_checked():
    assert "duplicate" in refused(spec(variables=("v", "v"), drift={"v": "-v"}, diffusion={"v": "1"}))
    assert "'exp'" in refused(spec(variables=("exp",), drift={"exp": "1"}, diffusion={"exp": "1"}))
    assert "missing key 'variables'" in refused({"drift": {"v": "-v"}, "diffusion": {"v": "1"}})


def test_malformed_toml_names_the_file(tmp_path):
    path = write(tmp_path, 'variables = ["v"\n[drift]\nv = "-v"\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value) and "not valid TOML" in str(info.value)


def test_missing_drift_in_toml(tmp_path):
    path = write(tmp_path, 'variables = ["v"]\n[diffusion]\nv = "1"\n')
    with pytest.raises(SpecError, match=r"missing \[drift\]"):
        load_spec(path)


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- security
PAYLOADS = [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w')",
    "(lambda: open('{marker}', 'w'))()",
    "v.__class__",
    "exp.__globals__",
    "v.__class__.__mro__[1].__subclasses__()",
    "[open('{marker}', 'w') for x in (1,)]",
    "'{marker}'",
    "eval(\"open('{marker}', 'w')\")",
    "getattr(v, '__class__')",
    "(v := 1)",
    "v if v else 1",
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("where", ["drift", "diffusion", "matrix"])
def test_code_in_expressions_is_refused_and_never_runs(tmp_path, payload, where):
    marker = tmp_path / "X"
    expr = payload.format(marker=marker)
    if where == "drift":
        s, key = spec(drift={"v": expr, "w": "-w"}), "drift.v"
    elif where == "diffusion":
        s, key = spec(diffusion={"v": "1", "w": expr}), "diffusion.w"
    else:
        s, key = spec(diffusion={"matrix": [["1", "0"], [expr, "1"]]}), "diffusion.matrix[1][0]"
    msg = refused(s)
    assert msg.startswith(key + ":")
    assert "not allowed" in msg or "unknown function" in msg or "only numbers" in msg or "syntax" in msg
    assert not marker.exists()


def test_code_in_a_toml_file_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "X"
    text = FHN.replace('"eps*(v + a - b*w)"', f"\"__import__('os').system('touch {marker}')\"")
    with pytest.raises(SpecError, match=r"drift\.w: unknown function"):
        load_spec(write(tmp_path, text))
    assert not marker.exists()


def test_parse_accepts_numbers_and_refuses_other_literals():
    assert parse(2, {}, "x") == 2 and parse(0.5, {}, "x") == 0.5
    with pytest.raises(SpecError, match="only numbers"):
        parse("b'abc'", {}, "x")
    with pytest.raises(SpecError, match="only numbers"):
        parse("1j", {}, "x")


def test_huge_constant_power_does_not_hang():
    code = ("from ddm_neuro.sde.expressions import parse\n"
            "try:\n    parse('9**9**9', {}, 'drift.v')\nexcept Exception:\n    pass\n")
    try:
        subprocess.run([sys.executable, "-c", code], timeout=4, check=False, capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail("parsing '9**9**9' did not finish within 4 s")


def test_example_specs_load_and_the_toggle_switch_is_bistable():
    from scipy.optimize import fsolve

    root = Path(__file__).parent.parent / "examples"
    specs = sorted(root.glob("*.toml"))
    assert {p.name for p in specs} >= {"fitzhugh_nagumo.toml", "toggle_switch.toml"}
    for p in specs:
        sde = load_spec(p)
        z = np.array([[np.mean(sde.domain[v]) for v in sde.variables]])
        u = np.zeros((1, sde.n_inputs)) if sde.n_inputs else None
        assert np.isfinite(sde.drift(z, u)).all() and np.isfinite(sde.diffusion_cov(z)).all(), p.name
    sde = load_spec(root / "toggle_switch.toml")
    f = lambda z: sde.drift(np.atleast_2d(z))[0]  # noqa: E731
    stable = []
    for guess in ([3.0, 0.3], [0.3, 3.0], [1.2, 1.2]):
        z = fsolve(f, guess)
        assert np.allclose(f(z), 0, atol=1e-9)
        stable.append(np.all(np.linalg.eigvals(sde.jacobian(z[None])[0]).real < 0))
    assert stable == [True, True, False]  # two stable states, a saddle between them
