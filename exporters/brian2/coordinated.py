r"""The spike-coordinated network (``ddm_neuro.spiking.coordinated``) as Brian2 objects, for ``cpp_standalone``.

The same network and step as the torch back end's compiled loop (``ddm_neuro/run/step_loops.cpp``,
``ddm_coordinated``), per trial and step of ``dt`` seconds (``h = dt / T`` SDE units)::

    every hold steps (the basis, M rate units, and what it commands, held until the next):
        r = tanh(A^T (xh + c) + x0 + Bx^T u),  s2 = na (1 + r) / 2 + nc
        g = Kt r - ct (xh + c) + cst + DB u,   C = Ks diag(s2) Ks^T + LL,   L = chol(C h)
    every step:
        e  += g h + L xi + (1 - a) xh - lk e,   xh *= a      (a = exp(-dt / tau), lk = 1 - a; Ito)
        V_j = D_j . e - thr_j;  the neuron with the largest positive V_j spikes: e -= D_j, xh += D_j

Groups: ``{name}_basis`` (M per trial, on the hold clock), ``{name}_held`` (one row per trial on the
hold clock: ``Kt r`` and ``C`` as summed variables over the basis, the command ``g`` and the Cholesky
factor ``L``), ``{name}_trial`` (one row per trial, every step: ``xh``, ``e``, the step's best margin
and neuron, the spike count) and ``{name}_neurons`` (N per trial; ``V`` reads ``e`` through linked
variables). The fast rank-d inhibition is the synapse from each neuron to its trial's row (``e -=
D_j``, ``xh += D_j``), delivered in the step of the spike, before the next step's membranes are read.
A summed variable is computed on its target's clock in Brian2, hence the held group: summed into the
per-step row, the basis's sums would run every step.

One spike per step, the largest first: Brian2's threshold is evaluated neuron by neuron, so the
population's choice is made by a C++ function (``ddm_coord_track`` keeps each trial's largest
``V`` while the membranes are computed, ``ddm_coord_winner`` lets only that neuron cross), the
analogue of a global winner-take-all inhibition. It exists only in ``cpp_standalone`` (single
thread: the tracking reads the neurons in order); Brian2's runtime devices and Brian2CUDA do not run it.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

def _functions(row):
    """The winner-take-all's two C++ functions (standalone only). Each trial's largest positive membrane of the step
    and its neuron are the trial row's ``best_v`` and ``best_i``, read through Brian2's global arrays (named for the
    row group ``row``), which every generated code file sees."""
    import brian2 as b2

    def standalone_only(*args):
        raise RuntimeError("the coordinated network's winner-take-all runs only in cpp_standalone")

    @b2.implementation("cpp", f"""
    double ddm_coord_track(const int trial, const int i, const double v)
    {{
        if (v > brian::_array_{row}_best_v[trial]) {{
            brian::_array_{row}_best_v[trial] = v;
            brian::_array_{row}_best_i[trial] = i;
        }}
        return 0.0;
    }}
    """)
    @b2.declare_types(trial="integer", i="integer", v="float", result="float")
    @b2.check_units(trial=1, i=1, v=1, result=1)
    def ddm_coord_track(trial, i, v):
        standalone_only()

    @b2.implementation("cpp", f"""
    double ddm_coord_winner(const int trial, const int i)
    {{
        return brian::_array_{row}_best_i[trial] == i ? 1.0 : 0.0;
    }}
    """)
    @b2.declare_types(trial="integer", i="integer", result="float")
    @b2.check_units(trial=1, i=1, result=1)
    def ddm_coord_winner(trial, i):
        standalone_only()

    return {"ddm_coord_track": ddm_coord_track, "ddm_coord_winner": ddm_coord_winner}


def _cholesky_code(d):
    """Abstract code: ``L = chol(C h)`` (lower; a pivot that is not positive gives a zero column), unrolled."""
    lines = []
    for p in range(d):
        for q in range(p + 1):
            s = f"C_{p}_{q}*h_sde" + "".join(f" - L_{p}_{l}*L_{q}_{l}" for l in range(q))
            if p == q:
                lines.append(f"L_{p}_{p} = sqrt(clip({s}, 0, inf))")
            else:
                lines.append(f"L_{p}_{q} = int(L_{q}_{q} > 0)*({s})/(L_{q}_{q} + int(L_{q}_{q} <= 0))")
    return "\n".join(lines)


def build_coordinated_network(model, *, trials, record_dt, xh0, noise=True, record_spikes=False, u_values=None,
                               name="ddm"):
    """Brian2 objects of ``trials`` copies of the coordinated model ``model``.

    Parameters
    ----------
    model : LatentRNN
        A coordinated model (``meta["coordinated"]``; ``ddm_neuro.spiking.coordinated.make_coordinated``).
    trials : int
        Independent copies, side by side.
    record_dt : float
        Recording interval (SDE time units).
    xh0 : array (trials, d)
        Start read-outs, centred SDE coordinates (``z0 - center``).
    noise : bool
        Inject the basis's noise.
    record_spikes : bool
        Keep spike times and indices (else only the counts).
    u_values : array (n_rec, k), optional
        A model with inputs: the input of each recording interval (held over it, as the torch loop does).

    Returns
    -------
    dict
        ``network`` (a ``brian2.Network``), ``monitor`` (``xh_q`` of the trial group at the samples),
        ``spikes`` (a SpikeMonitor, or None without ``record_spikes``), ``step_s``, ``hold``, ``sub``.
    """
    import brian2 as b2

    from ddm_neuro.spiking.coordinated import basis_arrays, coordinated, decoders, step_grid

    cfg = coordinated(model)
    d, N, M, T, k = model.dim, int(cfg["n_neurons"]), model.n_neurons, int(trials), model.n_inputs
    sub, dt_s = step_grid(model, record_dt)
    hold = max(1, int(round(cfg.get("hold_s", 2e-5) / dt_s)))
    arr = basis_arrays(model)
    D = decoders(model)
    thr = 0.5 * (1.0 + cfg["cost"]) * np.sum(D * D, axis=0)
    a = math.exp(-dt_s / model.tau)
    ns = {"h_sde": dt_s / model.time_scale, "a_leak": a, "lk": 1.0 - a, "ct": arr["ct"], **_functions(f"{name}_trial")}
    clock = b2.Clock(dt=dt_s * b2.second, name=f"{name}_clock")
    hold_clock = b2.Clock(dt=hold * dt_s * b2.second, name=f"{name}_hold_clock")
    rec_clock = b2.Clock(dt=sub * dt_s * b2.second, name=f"{name}_record_clock")
    pairs = [(p, q) for p in range(d) for q in range(p + 1)]
    u_basis = ""
    if k:
        u_values = np.asarray(u_values, dtype=np.float64)
        if u_values.ndim != 2 or u_values.shape[1] != k:
            raise ValueError(f"this model has {k} inputs: u_values needs shape (n_rec, {k}), got {u_values.shape}")
        ns[f"{name}_u"] = b2.TimedArray(u_values, dt=sub * dt_s * b2.second, name=f"{name}_u")
        for q in range(d):
            ns.update({f"DB_{q}_{c}": float(arr["DB"][q, c]) for c in range(k)})
        u_basis = "".join(f" + Bx_{c}*{name}_u(t, {c})" for c in range(k))

    # per trial, on the hold clock: the basis's command and noise covariance (summed over its units), Cholesky factor
    held = b2.NeuronGroup(T, "\n".join([f"f_{q} : 1\ng_{q} : 1\nlxh_{q} : 1 (linked)" for q in range(d)]
                                       + [f"C_{p}_{q} : 1\nL_{p}_{q} : 1" for p, q in pairs]),
                          clock=hold_clock, order=-3, name=f"{name}_held", namespace=ns)
    held_code = []
    for q in range(d):   # the command, held with the basis (the torch loop's): Kt r - ct z + cst + DB u, z = xh + c
        u_row = "".join(f" + DB_{q}_{c}*{name}_u(t, {c})" for c in range(k))
        held_code.append(f"g_{q} = f_{q} - ct*lxh_{q} + cst_{q}{u_row}")
    held.run_regularly("\n".join(held_code + ([_cholesky_code(d)] if noise else [])), when="groups", order=-3,
                       name=f"{name}_held_step")
    # per trial, every step: read-out, error, the winner-take-all's best margin and neuron
    eqs = "\n".join([f"xh_{q} : 1\ne_{q} : 1\nnz_{q} : 1\nlg_{q} : 1 (linked)" for q in range(d)]
                    + [f"lL_{p}_{q} : 1 (linked)" for p, q in pairs]
                    + ["best_v : 1", "best_i : integer", "n_spikes : 1"])
    row = b2.NeuronGroup(T, eqs, clock=clock, order=0, name=f"{name}_trial", namespace=ns)
    for q in range(d):
        setattr(row, f"lg_{q}", b2.linked_var(held, f"g_{q}"))
        setattr(held, f"lxh_{q}", b2.linked_var(row, f"xh_{q}"))
    for p, q in pairs:
        setattr(row, f"lL_{p}_{q}", b2.linked_var(held, f"L_{p}_{q}"))
    code = [f"nz_{q} = randn()" for q in range(d)] if noise else []
    for p in range(d):
        nz = "".join(f" + lL_{p}_{q}*nz_{q}" for q in range(p + 1)) if noise else ""
        code.append(f"e_{p} += lg_{p}*h_sde{nz} + lk*xh_{p} - lk*e_{p}")
        code.append(f"xh_{p} = a_leak*xh_{p}")
    code.append("best_v = 0\nbest_i = -1")
    row.run_regularly("\n".join(code), when="groups", order=0, name=f"{name}_trial_step")
    # g_q above: Kt r (f_q, summed) - ct z + cst with z = xh + c, i.e. - ct xh + (cst - ct c)
    for q in range(d):
        ns[f"cst_{q}"] = float(arr["cst"][q] - arr["ct"] * model.center[q])

    # the basis: M rate units per trial, evaluated on the hold clock at the trial's read-out
    beqs = ["r : 1", "s2 : 1", "x0 : 1 (constant)", "na : 1 (constant)", "nc : 1 (constant)"]
    beqs += [f"A_{q} : 1 (constant)\nlxh_{q} : 1 (linked)" for q in range(d)]
    beqs += [f"Bx_{c} : 1 (constant)" for c in range(k)]
    basis = b2.NeuronGroup(M * T, "\n".join(beqs), clock=hold_clock, order=-5, name=f"{name}_basis", namespace=ns)
    basis.x0 = np.tile(arr["x0"] + arr["A"].T @ model.center, T)
    basis.na, basis.nc = np.tile(arr["na"], T), np.tile(arr["nc"], T)
    b_trial = np.repeat(np.arange(T), M)
    for c in range(k):
        setattr(basis, f"Bx_{c}", np.tile(arr["Bx"][c], T))
    for q in range(d):
        setattr(basis, f"A_{q}", np.tile(arr["A"][q], T))
        setattr(basis, f"lxh_{q}", b2.linked_var(row, f"xh_{q}", index=b_trial))
    xin = " + ".join(f"A_{q}*lxh_{q}" for q in range(d))
    basis.run_regularly(f"r = tanh(x0 + {xin}{u_basis})" + ("\ns2 = na*0.5*(1 + r) + nc" if noise else ""),
                        when="start", order=0,
                        name=f"{name}_basis_step")
    seqs = [f"Kt_{q} : 1 (constant)\nf_{q}_post = Kt_{q}*r_pre : 1 (summed)" for q in range(d)]
    if noise:
        seqs += [f"Ks_{q} : 1 (constant)" for q in range(d)]
        seqs += [f"C_{p}_{q}_post = Ks_{p}*Ks_{q}*s2_pre + LL_{p}_{q}/{M} : 1 (summed)" for p, q in pairs]
        for p, q in pairs:
            ns[f"LL_{p}_{q}"] = float(arr["LL"][p, q])
    to_row = b2.Synapses(basis, held, "\n".join(seqs), clock=hold_clock, name=f"{name}_basis_sum", namespace=ns)
    to_row.connect(i=np.arange(M * T), j=b_trial)
    for q in range(d):
        setattr(to_row, f"Kt_{q}", np.tile(arr["Kt"][q], T))
        if noise:
            setattr(to_row, f"Ks_{q}", np.tile(arr["Ks"][q], T))

    # the spiking neurons: membranes along their decoders, the largest positive one fires
    n_trial = np.repeat(np.arange(T), N)
    neqs = [f"D_{q} : 1 (constant)\nle_{q} : 1 (linked)" for q in range(d)]
    neqs += ["thr : 1 (constant)", "trial : integer (constant)", "dummy : 1",
             "V = " + " + ".join(f"D_{q}*le_{q}" for q in range(d)) + " - thr : 1"]
    neurons = b2.NeuronGroup(N * T, "\n".join(neqs), threshold="ddm_coord_winner(trial, i) > 0.5", reset="",
                             clock=clock, order=5, name=f"{name}_neurons", namespace=ns)
    neurons.trial = n_trial
    neurons.thr = np.tile(thr, T)
    for q in range(d):
        setattr(neurons, f"D_{q}", np.tile(D[q], T))
        setattr(neurons, f"le_{q}", b2.linked_var(row, f"e_{q}", index=n_trial))
    neurons.run_regularly("dummy = ddm_coord_track(trial, i, V)", when="groups", order=5,
                          name=f"{name}_neurons_track")
    kick = b2.Synapses(neurons, row, "\n".join(f"Dk_{q} : 1 (constant)" for q in range(d)),
                       on_pre="\n".join(f"e_{q}_post -= Dk_{q}\nxh_{q}_post += Dk_{q}" for q in range(d))
                       + "\nn_spikes_post += 1",
                       clock=clock, name=f"{name}_inhibition", namespace=ns)
    kick.connect(i=np.arange(N * T), j=n_trial)
    for q in range(d):
        setattr(kick, f"Dk_{q}", np.tile(D[q], T))

    xh0 = np.asarray(xh0, dtype=np.float64).reshape(T, d)
    for q in range(d):
        setattr(row, f"xh_{q}", xh0[:, q])
    # at the start of each recording step: the read-out and the spikes so far (the run's last step is not counted)
    monitor = b2.StateMonitor(row, [f"xh_{q}" for q in range(d)] + ["n_spikes"], record=True, clock=rec_clock,
                              when="start", order=-20,
                              name=f"{name}_monitor")
    spikes = b2.SpikeMonitor(neurons, name=f"{name}_spikes") if record_spikes else None
    net = b2.Network(held, row, basis, to_row, neurons, kick, monitor, *([spikes] if spikes is not None else []))
    return {"network": net, "monitor": monitor, "spikes": spikes, "step_s": dt_s, "hold": hold, "sub": sub}


def run(plan):
    """Run a spiking-mode plan of a coordinated model as Brian2 ``cpp_standalone``; return the Trajectory.

    Each run generates and compiles its own project (about 20 s here) in a temporary folder under the
    build cache, with the plan's seed, start states, inputs and duration built in, and removes it afterwards:
    coordinated runs are long (microsecond steps), so the compile is a small part of them. Noise-free
    runs follow the torch back end's compiled loop (``ddm_neuro.run.step_loops``) step for step from the
    same start states; noisy runs draw Brian2's own normal numbers (the same law, other draws).
    Options: ``record_spikes``. One thread (more are refused). Inputs are held over each recording
    interval, as in the torch loop.
    """
    import brian2 as b2

    from ddm_neuro.errors import DDMError
    from ddm_neuro.fileio import cache_dir
    from ddm_neuro.progress import ticking
    from ddm_neuro.spiking.coordinated import coordinated as coordinated_settings

    from .code_patches import relative_clock_epsilon
    from .network import OPENMP_PREF, CompileError, compile_project, openmp_threads
    from .processes import run_group, terminate_as_interrupt

    model = plan.model
    if int(getattr(plan, "threads", 1) or 1) > 1:
        raise DDMError("brian2-cpp runs a spike-coordinated network on one thread (its winner-take-all reads the "
                       "neurons in order): leave --threads at 1")
    if shutil.which("make") is None:
        raise DDMError("backend 'brian2-cpp' needs 'make' and a C++ compiler (g++ or clang++) on PATH")
    rng = np.random.default_rng(plan.seed)
    z_start = plan.start_states(rng)
    bin_seed = int(rng.integers(2 ** 31))
    noisy = plan.noise not in (False, "none", None)
    record_spikes = bool(plan.options.get("record_spikes"))
    root = Path(cache_dir("brian2_cpp"))
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".coordinated-", dir=root))
    saved = b2.prefs[OPENMP_PREF]
    t0 = time.perf_counter()
    try:
        with terminate_as_interrupt():
            opts = {"directory": str(tmp), "build_on_run": False}
            b2.set_device("cpp_standalone", **opts)
            b2.prefs[OPENMP_PREF] = openmp_threads(1)
            b2.device.reinit()
            b2.device.activate(**opts)
            b2.seed(bin_seed)
            parts = build_coordinated_network(model, trials=plan.trials, record_dt=plan.record_dt,
                                              xh0=z_start - model.center, noise=noisy, record_spikes=record_spikes,
                                              u_values=_inputs(plan))
            span = (plan.n_rec - 1) * parts["sub"] * parts["step_s"]
            parts["network"].run((span + 0.5 * parts["step_s"]) * b2.second)
            b2.device.build(directory=str(tmp), compile=False, run=False)
            relative_clock_epsilon(tmp)
            mon, spk = parts["monitor"], parts["spikes"]
            names = {q: b2.device.get_array_filename(mon.variables[f"xh_{q}"]) for q in range(model.dim)}
            spike_files = (b2.device.get_array_filename(spk.variables["t"]),
                           b2.device.get_array_filename(spk.variables["i"])) if record_spikes else None
            count_file = b2.device.get_array_filename(mon.variables["n_spikes"])
            b2.device.reinit()
            b2.set_device("runtime")
            with ticking("brian2-cpp: generating and compiling the coordinated network", plan.progress):
                try:
                    compile_s = compile_project(tmp)
                except CompileError as exc:
                    raise DDMError(f"brian2-cpp: {exc}") from None
            t1 = time.perf_counter()
            with ticking(f"brian2-cpp: running {plan.trials} x {plan.duration:g} time units (coordinated)",
                         plan.progress):
                code, out, err = run_group([str(tmp / "main")], cwd=str(tmp))
            if code != 0:
                tail = "\n".join((out + err).strip().splitlines()[-20:])
                raise DDMError(f"brian2-cpp: the compiled coordinated network failed (exit {code}):\n{tail}")
            res = tmp / "results"
            d, T = model.dim, plan.trials
            xh = np.stack([np.fromfile(res / names[q], dtype=np.float64).reshape(-1, T) for q in range(d)], axis=-1)
            if len(xh) < plan.n_rec:
                raise DDMError(f"brian2-cpp: the coordinated network recorded {len(xh)} samples, expected "
                               f"{plan.n_rec}")
            z = xh[:plan.n_rec].transpose(1, 0, 2) + model.center
            counts = np.fromfile(res / count_file, dtype=np.float64).reshape(-1, T)[plan.n_rec - 1]
            sp_t = sp_i = None
            if record_spikes:
                # Brian2 stamps a spike with its step's start; the torch loop with its end (the state it changes)
                sp_t = (np.fromfile(res / spike_files[0], dtype=np.float64) + parts["step_s"]) / model.time_scale
                sp_i = np.fromfile(res / spike_files[1], dtype=np.int32).astype(np.int64)
                keep = sp_t <= (plan.n_rec - 1) * plan.record_dt + 1e-12
                sp_t, sp_i = sp_t[keep], sp_i[keep]
            run_s = time.perf_counter() - t1
    finally:
        try:
            b2.device.reinit()
        finally:
            b2.set_device("runtime")
            b2.prefs[OPENMP_PREF] = saved
            shutil.rmtree(tmp, ignore_errors=True)
    if plan.progress:
        print(f"brian2-cpp: ran {plan.trials} x {plan.duration:g} time units in {run_s:.1f} s (coordinated network, "
              f"compiled in {compile_s:.1f} s)", flush=True)
    cfg = coordinated_settings(model)
    N = int(cfg["n_neurons"])
    seconds = span
    rates = (counts / (N * seconds)).tolist() if seconds else []
    return plan.trajectory(
        z, backend="brian2-cpp", spikes_t=sp_t, spikes_i=sp_i, network="coordinated",
        noise="model" if noisy else "none", mean_rate_hz=float(np.mean(rates)) if rates else 0.0,
        trial_rates_hz=rates, n_neurons=N, n_basis=int(model.n_neurons), delta=float(cfg["delta"]),
        integration_dt=parts["step_s"] / model.time_scale, neuron={"name": "coordinated", "cost": cfg["cost"]},
        tau_syn=model.tau, time_scale=model.time_scale, device="cpp_standalone", threads=1,
        compile_seconds=compile_s, run_seconds=run_s, total_seconds=time.perf_counter() - t0)


def _inputs(plan):
    """The plan's input per recording interval ``(n_rec, k)`` (zeros without a signal), or None for a model without
    inputs: the torch loop's grid (an interval's input is the signal at its start)."""
    k = plan.model.n_inputs
    if not k:
        return None
    if plan.input is None:
        return np.zeros((plan.n_rec, k))
    return np.asarray(plan.input.at(np.arange(plan.n_rec) * plan.record_dt), dtype=np.float64).reshape(plan.n_rec, k)
