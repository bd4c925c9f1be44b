r"""The spike-coordinated network (``ddm_neuro.spiking.coordinated``) as Brian2 objects, for ``cpp_standalone``.

The same network and step as the torch back end's compiled loop (``ddm_neuro/run/step_loops.cpp``,
``ddm_coordinated``), per trial and step of ``dt`` seconds (``h = dt / T`` SDE units)::

    every hold steps (the basis, M rate units, and what it commands, held until the next):
        r = tanh(A^T (xh + c) + x0 + Bx^T u),  s2 = na (1 + r) / 2 + nc
        g = Kt r - ct (xh + c) + cst + DB u,   C = Ks diag(s2) Ks^T + LL,   L = chol(C h)
    every step:
        e  += g h + L xi + (1 - a) xh - lk e,   xh *= a      (a = exp(-dt / tau), lk = 1 - a; Ito)
        V_j = D_j . e - thr_j;  the neuron with the largest positive V_j spikes: e -= D_j, xh += D_j

Groups: ``{name}_basis`` (M per trial: the basis's constants and its last ``r``, ``s2``), ``{name}_held``
(one row per trial on the hold clock: the basis's sums ``Kt r`` and ``C``, the command ``g`` and the Cholesky
factor ``L``), ``{name}_trial`` (one row per trial, every step: ``xh``, ``e``, the neuron that spikes, the
spike count) and ``{name}_neurons`` (N per trial; ``V`` reads ``e`` through linked variables; the trial's
chosen neuron crosses threshold). The fast rank-d inhibition is the synapse from each neuron to its trial's
row (``e -= D_j``, ``xh += D_j``), delivered in the step of the spike, before the next step's membranes are read.

Two per-trial C++ functions do the dense work, reading the groups' own arrays (Brian2's global arrays, which
every generated file sees): ``ddm_coord_basis`` evaluates the trial's basis and its sums in vectorised
loops, and ``ddm_coord_pick`` chooses the step's spike: the neuron with the largest positive ``V``, the
first of equals (one spike per step, the largest first: the analogue of a global winner-take-all
inhibition). In Brian2's own objects each of the basis's sums would be a summed variable making its own
pass over index arrays (nine for d = 3; 60 % of a run, measured), and the choice a second pass over the
neurons. These functions exist only in ``cpp_standalone``; Brian2's runtime devices and Brian2CUDA do not
run this network. Each touches only its own trial's entries, so OpenMP threads over the per-trial rows
need no locks.
"""
from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

#: glibc's vector tanh (libmvec, glibc >= 2.35 on x86-64), declared at file scope: Brian2's flags include
#: ``-fno-finite-math-only``, under which glibc's headers do not declare it, and Brian2 puts a function's code
#: inside an anonymous namespace, where the declaration would not reach the call (hence the braces: they close
#: that namespace and open it again). Elsewhere the loop calls the scalar ``tanh`` (the same results to ~1 ulp).
_VECTOR_TANH = """}
#if defined(__x86_64__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
extern "C" { __attribute__((__simd__("notinbranch"))) double tanh(double) throw(); }
#endif
namespace {"""


def _kernel(name, code, args, return_type):
    """A C++ function of ``cpp_standalone`` (not stateless: it reads and writes Brian2's global arrays)."""
    import brian2 as b2

    def standalone_only(*values):
        raise RuntimeError("the coordinated network's per-trial kernels run only in cpp_standalone")

    f = b2.Function(standalone_only, arg_units=[1] * len(args), arg_names=list(args), return_unit=1,
                    arg_types=["integer"] + ["float"] * (len(args) - 1), return_type=return_type, stateless=False)
    f.implementations.add_implementation("cpp", code, name=name)
    return f


def _basis_kernel(name, d, k, M, LL):
    """``ddm_coord_basis(trial, x_0.., u_0..)``: the trial's M basis units at its read-out ``x`` (centred) and
    input ``u``, ``r = tanh(x0 + A^T x + Bx^T u)``, written to the basis group's ``r`` (and ``s2``), and their
    sums ``f_q = Kt_q . r`` and ``C_pq = LL_pq + sum_m Ks_p Ks_q s2`` written to the held group's row. One
    dense loop per trial over the basis group's own constants (Brian2's summed variables would make one pass
    over their index arrays per sum: nine for d = 3). ``LL`` (d x d) is the constant part of ``C``; None: no
    noise (no ``C``, no ``s2``)."""
    noise = LL is not None
    pairs = [(p, q) for p in range(d) for q in range(p + 1)]
    g = f"brian::_array_{name}_basis_"
    h = f"brian::_array_{name}_held_"
    arrays = ["x0", "r"] + [f"A_{q}" for q in range(d)] + [f"Bx_{c}" for c in range(k)] + \
        [f"Kt_{q}" for q in range(d)] + (["na", "nc", "s2"] + [f"Ks_{q}" for q in range(d)] if noise else [])
    lines = [f"    double * __restrict {a} = {g}{a} + o;" for a in arrays]
    lines += [f"    double f_{q} = 0.0;" for q in range(d)]
    lines += [f"    double C_{p}_{q} = 0.0;" for p, q in pairs] if noise else []
    arg = " + ".join(["x0[m]"] + [f"A_{q}[m]*x_{q}" for q in range(d)] + [f"Bx_{c}[m]*u_{c}" for c in range(k)])
    loop = f"    for (int m = 0; m < {M}; m++)"
    # separate loops, so that each vectorises (tanh through glibc's vector maths under -ffast-math)
    body = [f"{loop} r[m] = {arg};", f"{loop} r[m] = ::tanh(r[m]);", f"{loop} {{"]
    body += [f"        f_{q} += Kt_{q}[m]*r[m];" for q in range(d)] + ["    }"]
    if noise:
        body += [f"{loop} {{", "        const double s = na[m]*0.5*(1.0 + r[m]) + nc[m];", "        s2[m] = s;"]
        body += [f"        C_{p}_{q} += Ks_{p}[m]*Ks_{q}[m]*s;" for p, q in pairs] + ["    }"]
    out = [f"    {h}f_{q}[trial] = f_{q};" for q in range(d)]
    out += [f"    {h}C_{p}_{q}[trial] = C_{p}_{q} + LL_{p}_{q};" for p, q in pairs] if noise else []
    consts = [f"    const double LL_{p}_{q} = {float(LL[p][q])!r};" for p, q in pairs] if noise else []
    params = ", ".join(["const int trial"] + [f"const double x_{q}" for q in range(d)]
                       + [f"const double u_{c}" for c in range(k)])
    code = "\n".join([_VECTOR_TANH, f"double ddm_coord_basis({params})", "{", f"    const int o = trial*{M};", *lines,
                      *consts, *body, *out, "    return 0.0;", "}"])
    args = ["trial"] + [f"x_{q}" for q in range(d)] + [f"u_{c}" for c in range(k)]
    return code, args


def _pick_kernel(name, d, N):
    """``ddm_coord_pick(trial, e_0..)``: the trial's neuron with the largest positive margin ``V_j = D_j . e -
    thr_j`` (the first of equals), or -1: the one that spikes this step."""
    g = f"brian::_array_{name}_neurons_"
    lines = [f"    const double * const D_{q} = {g}D_{q} + o;" for q in range(d)]
    lines.append(f"    const double * const thr = {g}thr + o;")
    v = " + ".join(f"D_{q}[j]*e_{q}" for q in range(d))
    params = ", ".join(["const int trial"] + [f"const double e_{q}" for q in range(d)])
    # the margins and their maximum in one vectorised pass; then the first neuron at the maximum (as a strict
    # ">" scan would choose)
    code = "\n".join([f"int32_t ddm_coord_pick({params})", "{", f"    static thread_local double V[{N}];",
                      f"    const int o = trial*{N};", *lines, "    double vmax = 0.0;",
                      f"    for (int j = 0; j < {N}; j++) {{", f"        V[j] = {v} - thr[j];",
                      "        vmax = V[j] > vmax ? V[j] : vmax;", "    }",
                      "    if (!(vmax > 0.0)) return -1;",
                      f"    for (int j = 0; j < {N}; j++) if (V[j] == vmax) return j;", "    return -1;", "}"])
    return code, ["trial"] + [f"e_{q}" for q in range(d)]


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
    pairs = [(p, q) for p in range(d) for q in range(p + 1)]
    basis_code, basis_args = _basis_kernel(name, d, k, M, arr["LL"] if noise else None)
    pick_code, pick_args = _pick_kernel(name, d, N)
    ns = {"h_sde": dt_s / model.time_scale, "a_leak": a, "lk": 1.0 - a, "ct": arr["ct"],
          "ddm_coord_basis": _kernel("ddm_coord_basis", basis_code, basis_args, "float"),
          "ddm_coord_pick": _kernel("ddm_coord_pick", pick_code, pick_args, "integer")}
    # g_q below: Kt r (f_q) - ct z + cst with z = xh + c, i.e. - ct xh + (cst - ct c)
    ns.update({f"cst_{q}": float(arr["cst"][q] - arr["ct"] * model.center[q]) for q in range(d)})
    clock = b2.Clock(dt=dt_s * b2.second, name=f"{name}_clock")
    hold_clock = b2.Clock(dt=hold * dt_s * b2.second, name=f"{name}_hold_clock")
    rec_clock = b2.Clock(dt=sub * dt_s * b2.second, name=f"{name}_record_clock")
    u_args = ""
    if k:
        u_values = np.asarray(u_values, dtype=np.float64)
        if u_values.ndim != 2 or u_values.shape[1] != k:
            raise ValueError(f"this model has {k} inputs: u_values needs shape (n_rec, {k}), got {u_values.shape}")
        ns[f"{name}_u"] = b2.TimedArray(u_values, dt=sub * dt_s * b2.second, name=f"{name}_u")
        for q in range(d):
            ns.update({f"DB_{q}_{c}": float(arr["DB"][q, c]) for c in range(k)})
        u_args = "".join(f", {name}_u(t, {c})" for c in range(k))

    # the basis: M rate units per trial, their constants and last values (r, s2); computed by ddm_coord_basis
    beqs = ["r : 1", "x0 : 1 (constant)"] + (["s2 : 1", "na : 1 (constant)", "nc : 1 (constant)"] if noise else [])
    beqs += [f"A_{q} : 1 (constant)\nKt_{q} : 1 (constant)" for q in range(d)]
    beqs += [f"Ks_{q} : 1 (constant)" for q in range(d)] if noise else []
    beqs += [f"Bx_{c} : 1 (constant)" for c in range(k)]
    basis = b2.NeuronGroup(M * T, "\n".join(beqs), clock=hold_clock, name=f"{name}_basis", namespace=ns)
    basis.x0 = np.tile(arr["x0"] + arr["A"].T @ model.center, T)
    for q in range(d):
        setattr(basis, f"A_{q}", np.tile(arr["A"][q], T))
        setattr(basis, f"Kt_{q}", np.tile(arr["Kt"][q], T))
        if noise:
            setattr(basis, f"Ks_{q}", np.tile(arr["Ks"][q], T))
    for c in range(k):
        setattr(basis, f"Bx_{c}", np.tile(arr["Bx"][c], T))
    if noise:
        basis.na, basis.nc = np.tile(arr["na"], T), np.tile(arr["nc"], T)

    # per trial, on the hold clock: the basis's sums (f = Kt r, C), the command g and the Cholesky factor L
    held = b2.NeuronGroup(T, "\n".join(["dummy : 1"] + [f"f_{q} : 1\ng_{q} : 1\nlxh_{q} : 1 (linked)" for q in range(d)]
                                       + [f"C_{p}_{q} : 1\nL_{p}_{q} : 1" for p, q in pairs]),
                          clock=hold_clock, order=-3, name=f"{name}_held", namespace=ns)
    xs = "".join(f", lxh_{q}" for q in range(d))
    held.run_regularly(f"dummy = ddm_coord_basis(i{xs}{u_args})", when="groups", order=-4,
                       name=f"{name}_basis_step")
    held_code = []
    for q in range(d):   # the command, held with the basis (the torch loop's): Kt r - ct z + cst + DB u, z = xh + c
        u_row = "".join(f" + DB_{q}_{c}*{name}_u(t, {c})" for c in range(k))
        held_code.append(f"g_{q} = f_{q} - ct*lxh_{q} + cst_{q}{u_row}")
    held.run_regularly("\n".join(held_code + ([_cholesky_code(d)] if noise else [])), when="groups", order=-3,
                       name=f"{name}_held_step")
    # per trial, every step: read-out, error (Ito), and the neuron that spikes (best_i, -1: none)
    eqs = "\n".join([f"xh_{q} : 1\ne_{q} : 1\nnz_{q} : 1\nlg_{q} : 1 (linked)" for q in range(d)]
                    + [f"lL_{p}_{q} : 1 (linked)" for p, q in pairs]
                    + ["best_i : integer", "n_spikes : 1"])
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
    code.append("best_i = ddm_coord_pick(i" + "".join(f", e_{q}" for q in range(d)) + ")")
    row.run_regularly("\n".join(code), when="groups", order=0, name=f"{name}_trial_step")

    # the spiking neurons: membranes along their decoders; the trial's chosen one crosses threshold
    n_trial = np.repeat(np.arange(T), N)
    neqs = [f"D_{q} : 1 (constant)\nle_{q} : 1 (linked)" for q in range(d)]
    neqs += ["thr : 1 (constant)", "trial : integer (constant)", "j : integer (constant)", "lbest : integer (linked)",
             "V = " + " + ".join(f"D_{q}*le_{q}" for q in range(d)) + " - thr : 1"]
    quiet = logging.getLogger("brian2.groups.neurongroup.only_threshold")   # no reset, on purpose (no resetter)
    quiet.disabled = True
    try:
        neurons = b2.NeuronGroup(N * T, "\n".join(neqs), threshold="j == lbest", clock=clock, order=5,
                                 name=f"{name}_neurons", namespace=ns)
    finally:
        quiet.disabled = False
    neurons.trial = n_trial
    neurons.j = np.tile(np.arange(N), T)
    neurons.thr = np.tile(thr, T)
    neurons.lbest = b2.linked_var(row, "best_i", index=n_trial)
    for q in range(d):
        setattr(neurons, f"D_{q}", np.tile(D[q], T))
        setattr(neurons, f"le_{q}", b2.linked_var(row, f"e_{q}", index=n_trial))
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
    net = b2.Network(held, row, basis, neurons, kick, monitor, *([spikes] if spikes is not None else []))
    return {"network": net, "monitor": monitor, "spikes": spikes, "step_s": dt_s, "hold": hold, "sub": sub}


def run(plan):
    """Run a spiking-mode plan of a coordinated model as Brian2 ``cpp_standalone``; return the Trajectory.

    Each run generates and compiles its own project (about 10 s here) in a temporary folder under the
    build cache, with the plan's seed, start states, inputs and duration built in, and removes it afterwards:
    coordinated runs are long (microsecond steps), so the compile is a small part of them. Noise-free
    runs follow the torch back end's compiled loop (``ddm_neuro.run.step_loops``) step for step from the
    same start states; noisy runs draw Brian2's own normal numbers (the same law, other draws).
    Options: ``record_spikes``. With ``plan.threads`` K > 1 the build runs K OpenMP threads, each over whole
    trials (the per-trial functions touch only their trial's arrays); noisy runs then draw other numbers
    (one generator per thread) than a 1-thread build from the same seed. Inputs are held over each recording
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
    threads = int(getattr(plan, "threads", 1) or 1)
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
            b2.prefs[OPENMP_PREF] = openmp_threads(threads)
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
        tau_syn=model.tau, time_scale=model.time_scale, device="cpp_standalone", threads=threads,
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
