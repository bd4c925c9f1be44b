r"""A LatentRNN as a Brian2 rate network (runtime device): the torch simulator's equations.

Per neuron (``x`` dimensionless, time in seconds)::

    dx/dt = (-x + rec + b + drive) / tau,      drive = (B u(t))_i

with ``rec = sum_k E_ik (v_k + top_k)`` and latent units ``v_k = sum_j K_kj r_j``
(two sets of summed-variable synapses, N -> d -> N: the factored coupling,
O(N d) synapses) or one dense set ``rec = sum_j W_ij r_j``. Each neuron's
output is ``r_j = phi(x_j) + eta_j``: the model's private output noise,
``eta_j = sqrt(sigma_j^2(x) / dt) randn()`` drawn once per step (a
``run_regularly`` operation at the start of the step), so the Euler step of
``x`` carries ``W diag(sigma) sqrt(dt) xi / tau`` as in :mod:`ddm_neuro.simulate`
(Itô; the noise is additive within a step, so no Stratonovich correction
arises). The shared top-up ``E L dW'`` enters through ``top_k = tau (L xi')_k / sqrt(dt)``.
A step of the input moves ``x`` by ``B du`` (the feed-forward path of
:mod:`ddm_neuro.network`). The latent read-out ``y = D x`` is a third summed
variable, monitored at the recording interval.

Schedule within a step (Brian2 runs summed-variable updates in the ``groups``
slot just before their target group): draw outputs and noise (``start``) ->
``v``, ``top`` -> ``y`` (recorded) -> ``rec`` -> Euler update of ``x``. This is
the same order as the torch loop, so both integrate the same scheme.
"""
from __future__ import annotations

import numpy as np

from ddm_neuro.errors import DDMError
from ddm_neuro.sdeint import recording_grid
from ddm_neuro.simulate import input_signal, network_steps
from ddm_neuro.trajectory import Trajectory


def _neuron_code(neuron):
    """Brian2 expressions for phi(x) and act(x) (plain numbers, as in the model)."""
    if neuron.name == "tanh":
        return "tanh(x)", "0.5*(1 + tanh(x))"
    if neuron.name == "lif":
        tm, tr = neuron.params["tau_m"], neuron.params["tau_ref"]
        rate = f"int(x > 1) / ({tr!r} + {tm!r}*log(1 + 1/clip(x - 1, 1e-12, 1e12)))"
        return rate, f"({rate})*{tr!r}"
    raise DDMError(f"brian2 export: neuron model {neuron.name!r} is not supported")


def build_rate_network(model, dt, record_dt, n_steps, *, trials=1, z0=None, u=None, noise=True,
                       coupling="factored", seed=None, name="ddm"):
    """Build a Brian2 ``Network`` of ``trials`` independent copies of the model.

    Parameters
    ----------
    model : LatentRNN
    dt, record_dt : float
        Integration step and recording interval in SDE units (network time is ``T`` times).
    n_steps : int
        Steps to be simulated (sizes the input ``TimedArray``).
    trials, z0, u, noise, coupling, seed
        As in :func:`ddm_neuro.simulate.simulate_network`.

    Returns
    -------
    net : brian2.Network
    monitor : brian2.StateMonitor
        Records ``y`` of the read-out group (d per trial) at ``record_dt``.
    """
    import brian2 as b2

    if coupling not in ("factored", "dense"):
        raise DDMError(f"coupling must be 'factored' or 'dense', got {coupling!r}")
    if model.w_perp is not None:
        raise DDMError("brian2 export: models with W_perp are not supported")
    phi, act = _neuron_code(model.neuron)
    N, d, k = model.n_neurons, model.dim, model.n_inputs
    h = dt * model.time_scale
    rng = np.random.default_rng(seed)
    b2.seed(int(rng.integers(2 ** 31)))
    clock = b2.Clock(dt=h * b2.second, name=f"{name}_clock")
    signal = input_signal(model, u)
    if z0 is None:
        z0 = model.init_states[rng.integers(0, len(model.init_states), trials)]
    z0 = np.broadcast_to(np.asarray(z0, dtype=np.float64), (trials, d))
    u0 = None if signal is None else signal.values[0]
    x0 = model.neuron_inputs(z0, u0).reshape(-1)
    ns = {"tau_n": model.tau * b2.second}

    neurons = b2.NeuronGroup(N * trials, """
        dx/dt = (-x + rec + bias + drive) / tau_n : 1
        rec : 1
        bias : 1 (constant)
        drive : 1
        r : 1
        noise_const : second (constant)
        noise_act : second (constant)
        """, method="euler", clock=clock, order=10, name=f"{name}_neurons", namespace=ns)
    neurons.x = x0
    neurons.bias = np.tile(model.bias, trials)
    # output-noise intensities sigma^2 carry seconds (eta dt = sigma dW with dimensionless outputs)
    neurons.noise_const = np.tile(model.noise_const, trials) * b2.second
    neurons.noise_act = np.tile(model.noise_act, trials) * b2.second
    eta = f" + sqrt((noise_const + noise_act*{act}) / dt) * randn()" if noise else ""
    neurons.run_regularly(f"r = {phi}{eta}", when="start", order=0, name=f"{name}_outputs")
    objects = [neurons]

    if k:  # inputs: (B u)_i on the step grid; a step moves x by B du (feed-forward path)
        Bu = signal.at(np.arange(n_steps + 2) * dt) @ model.input_weights.T
        ns[f"{name}_Bu"] = b2.TimedArray(np.tile(Bu, (1, trials)), dt=h * b2.second)
        neurons.drive = np.tile(Bu[0], trials)
        neurons.run_regularly(f"x += {name}_Bu(t, i) - drive\ndrive = {name}_Bu(t, i)",
                              when="start", order=-1, name=f"{name}_feedforward")

    pre = np.arange(N * trials)
    trial_of = np.repeat(np.arange(trials), N)
    unit = np.tile(np.arange(d), N * trials)

    readout = b2.NeuronGroup(d * trials, "y : 1", clock=clock, order=5, name=f"{name}_readout")
    rd = b2.Synapses(neurons, readout, "D : 1\ny_post = D * x_pre : 1 (summed)", clock=clock,
                     name=f"{name}_readout_syn")
    i_n, j_u = np.repeat(pre, d), np.repeat(trial_of * d, d) + unit  # neuron j <-> latent unit k, same trial
    rd.connect(i=i_n, j=j_u)
    rd.D = np.tile(model.readout.T.reshape(-1), trials)
    objects += [readout, rd]

    if coupling == "factored":
        latent = b2.NeuronGroup(d * trials, "v : 1\ntop : 1\ng : 1", clock=clock, order=2,
                                name=f"{name}_latent")
        dec = b2.Synapses(neurons, latent, "K : 1\nv_post = K * r_pre : 1 (summed)", clock=clock,
                          name=f"{name}_decode")
        dec.connect(i=i_n, j=j_u)
        dec.K = np.tile(model.decoders.T.reshape(-1), trials)
        enc = b2.Synapses(latent, neurons, "E : 1\nrec_post = E * (v_pre + top_pre) : 1 (summed)",
                          clock=clock, name=f"{name}_encode")
        enc.connect(i=j_u, j=i_n)
        enc.E = np.tile(model.encoders.reshape(-1), trials)
        objects += [latent, dec, enc]
        if noise and np.any(model.noise_latent):
            latent.run_regularly("g = randn()", when="start", order=0, name=f"{name}_shared_draw")
            mix = b2.Synapses(latent, latent, "Lw : 1\ntop_post = Lw * g_pre : 1 (summed)", clock=clock,
                              name=f"{name}_shared_mix")
            src = np.concatenate([t * d + np.tile(np.arange(d), d) for t in range(trials)])
            dst = np.concatenate([t * d + np.repeat(np.arange(d), d) for t in range(trials)])
            mix.connect(i=src, j=dst)
            mix.Lw = np.tile((model.tau * model.noise_latent / np.sqrt(h)).reshape(-1), trials)
            objects.append(mix)
    else:
        if noise and np.any(model.noise_latent):
            raise DDMError("brian2 dense coupling: the shared latent noise needs the factored coupling")
        dense = b2.Synapses(neurons, neurons, "w : 1\nrec_post = w * r_pre : 1 (summed)", clock=clock,
                            name=f"{name}_dense")
        src = np.concatenate([t * N + np.repeat(np.arange(N), N) for t in range(trials)])
        dst = np.concatenate([t * N + np.tile(np.arange(N), N) for t in range(trials)])
        dense.connect(i=src, j=dst)
        dense.w = np.tile(model.weights().T.reshape(-1), trials)
        objects.append(dense)

    monitor = b2.StateMonitor(readout, "y", record=True, dt=record_dt * model.time_scale * b2.second,
                              when="groups", order=7, name=f"{name}_monitor")
    objects.append(monitor)
    return b2.Network(*objects), monitor


def simulate(model, duration, *, trials=1, seed=None, u=None, mode="rate", progress=False, dt=None,
             record_dt=None, noise=True, coupling="factored", z0=None):
    """Run the model in Brian2's runtime device and return the latent Trajectory (SDE units)."""
    import brian2 as b2

    if mode != "rate":
        raise DDMError(f"backend 'brian2' does not support mode {mode!r} (supports: rate)")
    d0, r0 = network_steps(model)
    n_rec, record_dt, n_sub, dt = recording_grid(duration, dt or d0, record_dt or max(r0, dt or d0))
    n_steps = (n_rec - 1) * n_sub
    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    net, monitor = build_rate_network(model, dt, record_dt, n_steps + 1, trials=trials, z0=z0, u=u, noise=noise,
                                      coupling=coupling, seed=seed)
    net.run((n_steps + 1) * dt * model.time_scale * b2.second, namespace={},
            report="text" if progress else None)
    y = np.asarray(monitor.y)[:, :n_rec]                        # (d * trials, n_rec)
    y = y.reshape(trials, model.dim, n_rec).transpose(0, 2, 1)
    z = y * model.scale + model.center
    signal = input_signal(model, u)
    meta = {"backend": "brian2", "mode": "rate", "device": "runtime", "coupling": coupling,
            "model_id": model.meta.get("model_id"), "system": model.meta.get("sde_name"),
            "variables": list(model.variables), "seed": seed, "duration": float(duration), "trials": int(trials),
            "integration_dt": dt, "noise": bool(noise), "n_neurons": model.n_neurons,
            "input": None if signal is None else signal.to_dict()}
    return Trajectory(t=np.arange(n_rec) * record_dt, z=z, dt=record_dt, meta=meta)
