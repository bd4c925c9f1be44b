"""A complete simulator back end in one module: the rate network in plain numpy.

It is the example of docs/writing-a-backend.md: one function that takes a
:class:`~ddm_neuro.run.plan.RunPlan` and returns ``plan.trajectory(...)``,
plus one registration line. Import this module (or declare it through an
entry point) and ``--backend numpy`` works everywhere a back end is named::

    python -c "import numpy_backend; from ddm_neuro.cli import main; main(['simulate', 'm.ddm', '--backend', 'numpy', '-o', 't.npz'])"

The scheme is the torch simulator's (Euler-Maruyama, Ito, factored coupling,
private output noise), in numpy's random stream instead of torch's.
"""
import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.plugins import Option, simulator


@simulator("numpy", modes=("rate",), options={"chunk": Option(1, "unused; shows a declared option")})
def run_numpy(plan):
    """The rate network in numpy: Euler-Maruyama (Ito), factored coupling E (K r)."""
    m, rng = plan.model, np.random.default_rng(plan.seed)
    if m.w_perp is not None:
        raise DDMError("backend 'numpy' has no off-subspace weights (W_perp): use --backend torch")
    h = plan.dt * m.time_scale                        # the step in network seconds
    z0 = plan.start_states(rng)                       # given, or drawn from the model's stored states
    u = plan.input_on_steps()                         # (n_steps + 2, k) or None
    x = m.neuron_inputs(z0, plan.u0)
    drive = m.bias if u is None else m.bias + u[0] @ m.input_weights.T
    shared = m.encoders @ m.noise_latent
    out = np.empty((plan.trials, plan.n_rec, m.dim))
    out[:, 0] = x @ m.readout.T * m.scale + m.center
    step = 0
    for k in range(1, plan.n_rec):
        for _ in range(plan.n_sub):
            if u is not None and step and np.any(u[step] != u[step - 1]):   # the input's feed-forward jump
                x = x + (u[step] - u[step - 1]) @ m.input_weights.T
                drive = m.bias + u[step] @ m.input_weights.T
            r = m.neuron.phi(x, np)
            if plan.noise:
                r = r + np.sqrt((m.noise_const + m.noise_act * m.neuron.activity(x, np)) / h) \
                    * rng.standard_normal(x.shape)
            x = x + h / m.tau * (-x + (r @ m.decoders.T) @ m.encoders.T + drive)
            if plan.noise:
                x = x + np.sqrt(h) * rng.standard_normal((plan.trials, m.dim)) @ shared.T
            step += 1
        out[:, k] = x @ m.readout.T * m.scale + m.center
    return plan.trajectory(out, backend="numpy", coupling="factored")
