"""Built-in systems and SDEs from Python callables."""
import math
import tomllib

import numpy as np
import pytest
import torch

from ddm_neuro.errors import SpecError
from ddm_neuro.sde.equation import SDE
from ddm_neuro.sde.spec import sde_from_spec, to_toml
from ddm_neuro.sde.systems import SPECS, builtin_spec, get_system, list_systems

NAMES = ["ou", "ou_rot", "double_well", "van_der_pol", "stuart_landau", "lorenz", "switch", "ring"]


def points(sde, n=6, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, sde.dim)) * 1.3
    u = rng.uniform(-1, 1, size=(n, sde.n_inputs)) if sde.n_inputs else None
    return z, u


# --------------------------------------------------------------------------- built-ins
def test_the_documented_built_ins_are_all_listed():
    assert list(SPECS) == NAMES
    listed = list_systems()
    assert list(listed) == NAMES and all(isinstance(d, str) and d for d in listed.values())


@pytest.mark.parametrize("name", NAMES)
def test_built_in_builds_and_evaluates_finitely(name):
    sde = get_system(name)
    assert sde.name == name and sde.spec["kind"] == "spec"
    z, u = points(sde)
    f, g = sde.drift(z, u), sde.diffusion(z)
    assert f.shape == (6, sde.dim) and g.shape == (6, sde.dim, sde.noise_dim)
    assert np.isfinite(f).all() and np.isfinite(g).all()
    zt = torch.tensor(z)
    ut = None if u is None else torch.tensor(u)
    np.testing.assert_allclose(sde.drift_torch(zt, ut).numpy(), f, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sde.diffusion_torch(zt).numpy(), g, rtol=1e-12, atol=1e-12)


def test_lorenz_drift_by_hand():
    sde = get_system("lorenz")
    x, y, z = 1.5, -2.0, 20.0
    s, r, b = 10.0, 28.0, 8.0 / 3.0
    np.testing.assert_allclose(sde.drift(np.array([[x, y, z]])),
                               [[s * (y - x), x * (r - z) - y, x * y - b * z]], rtol=1e-12)
    np.testing.assert_array_equal(sde.diffusion(np.zeros((1, 3)))[0], np.eye(3))
    assert set(sde.tags) == {"chaotic", "nonequilibrium"}


def test_lorenz_parameter_override():
    sde = get_system("lorenz", rho=10.0, noise=0.5)
    np.testing.assert_allclose(sde.drift(np.array([[1.0, 0.0, 2.0]])), [[-10.0, 8.0, -16.0 / 3.0]], rtol=1e-12)
    np.testing.assert_allclose(sde.diffusion(np.zeros((1, 3)))[0], 0.5 * np.eye(3))


@pytest.mark.parametrize("k, w", [(1.0, 2.0), (0.5, -3.0)])
def test_rotational_ou_drift_is_minus_A_z(k, w):
    sde = get_system("ou_rot", k=k, w=w)
    J = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90° rotation
    A = k * np.eye(2) - w * J
    z, _ = points(sde)
    np.testing.assert_allclose(sde.drift(z), -z @ A.T, rtol=1e-12)


def test_ou_double_well_van_der_pol_stuart_landau_by_hand():
    np.testing.assert_allclose(get_system("ou").drift(np.array([[2.0, -1.0]])), [[-2.0, 1.0]])
    dw = get_system("double_well")
    np.testing.assert_allclose(dw.drift(np.array([[1.5]])), [[1.5 - 1.5 ** 3]])
    np.testing.assert_allclose(dw.diffusion(np.array([[1.5]])), [[[0.5]]])
    dw2 = get_system("double_well", c=1.0)
    assert not dw2.additive
    np.testing.assert_allclose(dw2.diffusion(np.array([[1.5]])), [[[0.5 * math.sqrt(1 + 2.25)]]])
    vdp = get_system("van_der_pol", mu=2.0)
    np.testing.assert_allclose(vdp.drift(np.array([[0.5, 1.0]])), [[1.0, 2.0 * 0.75 * 1.0 - 0.5]])
    sl = get_system("stuart_landau")
    x, y = 0.3, -0.4
    r2 = x * x + y * y
    np.testing.assert_allclose(sl.drift(np.array([[x, y]])), [[x - 2 * y - r2 * x, y + 2 * x - r2 * y]],
                               rtol=1e-12)


def test_switch_takes_its_input():
    sde = get_system("switch")
    assert sde.inputs == ("u",) and sde.input_range == {"u": (-1.0, 1.0)}
    np.testing.assert_allclose(sde.drift(np.array([[0.5]]), np.array([[0.25]])), [[0.5 - 0.125 + 0.25]])


def test_ring_drift_by_hand():
    sde = get_system("ring")
    x, y = 0.6, 0.5
    th = math.atan2(y, x)
    rad = 2.0 * (1 - x * x - y * y)
    rot = 1.5 - 2.0 * math.sin(3 * th)
    np.testing.assert_allclose(sde.drift(np.array([[x, y]])), [[rad * x - rot * y, rad * y + rot * x]], rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_builtin_spec_round_trips_through_toml(name):
    original = get_system(name)
    text = to_toml(builtin_spec(name))
    parsed = tomllib.loads(text)
    assert parsed["name"] == name
    again = sde_from_spec(parsed)
    z, u = points(original, seed=1)
    np.testing.assert_array_equal(again.drift(z, u), original.drift(z, u))
    np.testing.assert_array_equal(again.diffusion(z), original.diffusion(z))
    assert again.parameters == original.parameters and again.domain == original.domain
    assert again.tags == original.tags and again.input_range == original.input_range


def test_builtin_spec_is_a_copy():
    spec = builtin_spec("ou")
    spec["parameters"]["k"] = 99.0
    assert get_system("ou").parameters["k"] == 1.0


def test_unknown_system_lists_the_built_ins():
    with pytest.raises(SpecError) as info:
        get_system("lorentz")
    msg = str(info.value)
    assert "unknown system 'lorentz'" in msg and all(n in msg for n in NAMES) and ".toml" in msg


def test_unknown_parameter_override_on_a_built_in():
    with pytest.raises(SpecError, match=r"lorenz: unknown parameter 'rh0' \(known: beta, noise, rho, sigma\)"):
        get_system("lorenz", rh0=1.0)


# --------------------------------------------------------------------------- SDE.from_callables
def drift(z):
    return -z


def test_callables_with_diagonal_diffusion():
    sde = SDE.from_callables(drift, lambda z: 0.1 + z ** 2, ["x", "y"])
    assert sde.noise_dim == 2 and not sde.additive and sde.spec is None
    z = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    g = sde.diffusion(z)
    assert g.shape == (3, 2, 2)
    np.testing.assert_allclose(g[:, 0, 0], 0.1 + z[:, 0] ** 2)
    np.testing.assert_allclose(g[:, 1, 1], 0.1 + z[:, 1] ** 2)
    assert np.all(g[:, 0, 1] == 0) and np.all(g[:, 1, 0] == 0)
    np.testing.assert_allclose(sde.drift(z), -z)
    np.testing.assert_allclose(sde.diffusion_torch(torch.tensor(z)).numpy(), g)


def test_callables_with_full_diffusion():
    def g(z):
        out = np.zeros(z.shape[:-1] + (2, 3))
        out[..., 0, 0] = 1.0
        out[..., 0, 2] = z[..., 1]
        out[..., 1, 1] = 0.5
        return out

    sde = SDE.from_callables(drift, g, ["x", "y"])
    assert sde.noise_dim == 3
    z = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(sde.diffusion(z), g(z))
    np.testing.assert_allclose(sde.diffusion_cov(z)[:, 0, 0], 1.0 + z[:, 1] ** 2)


@pytest.mark.parametrize("const, expected", [
    ([0.3, 0.2], np.diag([0.3, 0.2])),
    ([[0.3, 0.0, 0.1], [0.0, 0.2, 0.0]], np.array([[0.3, 0.0, 0.1], [0.0, 0.2, 0.0]])),
])
def test_callables_with_constant_diffusion(const, expected):
    sde = SDE.from_callables(drift, const, ["x", "y"])
    assert sde.additive and sde.noise_dim == expected.shape[1]
    np.testing.assert_allclose(sde.diffusion(np.zeros((5, 2))), np.broadcast_to(expected, (5,) + expected.shape))


def test_callables_with_scalar_constant_diffusion():
    sde = SDE.from_callables(drift, 0.3, ["x", "y"])
    np.testing.assert_allclose(sde.diffusion(np.zeros((5, 2))), np.broadcast_to(0.3 * np.eye(2), (5, 2, 2)))


def test_callables_with_inputs():
    sde = SDE.from_callables(lambda z, u: -z + u, [0.1], ["x"], inputs=["u"], input_range={"u": (0.0, 1.0)})
    assert sde.inputs == ("u",)
    np.testing.assert_allclose(sde.drift(np.array([[1.0], [2.0]]), np.array([[0.5], [0.25]])), [[-0.5], [-1.75]])
    np.testing.assert_allclose(sde.drift_torch(torch.ones(2, 1), torch.tensor([[0.25], [0.5]])).numpy(),
                               [[-0.75], [-0.5]])


@pytest.mark.parametrize("diffusion, expected", [
    (lambda z: np.ones(z.shape[:-1] + (3,)),
     "mine: diffusion returned shape (3, 3) for 3 states, expected (3,) (isotropic), (3, 2) (diagonal) or (3, 2, m)"),
    ([0.1, 0.2, 0.3], "mine: constant diffusion has shape (3,), expected a scalar, (2,) or (2, m)"),
    (np.ones((3, 3)), "mine: constant diffusion has shape (3, 3), expected a scalar, (2,) or (2, m)"),
])
def test_diffusion_of_the_wrong_shape_reports_the_expected_shape(diffusion, expected):
    with pytest.raises(SpecError) as info:
        SDE.from_callables(drift, diffusion, ["x", "y"], name="mine")
    assert str(info.value) == expected


def test_drift_of_the_wrong_shape_reports_the_expected_shape():
    with pytest.raises(SpecError) as info:
        SDE.from_callables(lambda z: z[..., :1], [0.1, 0.1], ["x", "y"], name="mine")
    assert str(info.value) == "mine: drift returned shape (3, 1), expected (3, 2)"


def test_noise_dim_mismatch_and_no_variables():
    with pytest.raises(SpecError, match="noise_dim=3 but diffusion has 2 columns"):
        SDE.from_callables(drift, [0.1, 0.1], ["x", "y"], noise_dim=3)
    with pytest.raises(SpecError, match="at least one variable"):
        SDE.from_callables(drift, [0.1], [])


def test_failing_or_non_finite_callables_are_reported():
    with pytest.raises(SpecError, match="evaluating drift/diffusion failed: division by zero"):
        SDE.from_callables(lambda z: 1 / 0, [0.1, 0.1], ["x", "y"])
    with pytest.raises(SpecError, match=r"drift is not finite over the probe states \(at x=0, y=0\)"):
        with np.errstate(invalid="ignore", divide="ignore"):
            SDE.from_callables(lambda z: -z / z[..., :1], [0.1, 0.1], ["x", "y"])
    with pytest.raises(SpecError, match="diffusion is not finite"):
        with np.errstate(invalid="ignore"):
            SDE.from_callables(drift, lambda z: np.sqrt(z - 0.15), ["x", "y"])


def test_check_reports_wrong_state_width():
    sde = get_system("ou")
    with pytest.raises(SpecError, match="states have 3 columns, the SDE has 2 variables"):
        sde.check(np.zeros((4, 3)))
