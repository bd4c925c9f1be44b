r"""The spike-coordinated network (``ddm_neuro.spiking.coordinated``) as Brian2 objects, for ``cpp_standalone``;
needs only brian2 and numpy (copied verbatim into exported projects as ``coordinated_network.py``).

The same network and step as the torch back end's compiled loop (``ddm_neuro/run/step_loops.cpp``,
``ddm_coordinated``), per trial and step of ``dt`` seconds (``h = dt / T`` SDE units)::

    every hold steps (the basis, M rate units, and what it commands, held until the next):
        r = tanh(A^T (xh + c) + x0 + Bx^T u),  s2 = na (1 + r) / 2 + nc
        g = Kt r - ct (xh + c) + cst + DB u,   C = Ks diag(s2) Ks^T + LL,   L = chol(C h)
    every step:
        e  += g h + L xi + (1 - a) xh - lke e,   xh *= a     (a = exp(-dt / tau), Ito; lke = 0, or 1 - a where
                                                            info["error_leak"] is true or absent: older specs)
        V_j = D_j . e - thr_j;  the neuron with the largest positive V_j spikes: e -= D_j, xh += D_j
    with noise spikes (``info["noise_spikes"]``), instead of L xi: e -= m, and neuron j also fires at random with
    probability lam_j (held with the basis: lam_j = D_j^T B D_j, B = Pinv (C h), m = sum_j lam_j D_j), moving
    xh alone by D_j; at most one noise spike a step (a run where lam sums above 1 is refused)

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

The network is built from a plain spec (:func:`build_coordinated_network`): arrays ``A`` (d, M), ``x0`` (M,)
(the centre folded in), ``Kt``, ``Ks`` (d, M), ``na``, ``nc`` (M,), ``LL`` (d, d), ``cst`` (d,) (the
centre folded in), ``Bx`` (k, M), ``DB`` (d, k), decoders ``D`` (d, N), thresholds ``thr`` (N,) and the noise
spikes' map ``Pinv`` (``ddm_neuro.spiking.coordinated.noise_spike_map``), and ``info`` with ``ct``, ``tau`` and
``time_scale`` (seconds), ``step_max_s``, ``hold_s``, ``noise_spikes`` and ``error_leak``. A built project
(:func:`build_coordinated_project`) is compiled once and run many times: start read-outs, inputs, the stop
time and the seed are arguments of the binary (``runner.py``).
"""
from __future__ import annotations

import json
import logging
import math
import os

import numpy as np

try:  # inside the package
    from .network import FORMAT, MAX_STEPS, OPENMP_PREF, SEED_FROM_ARGS, VERSION, compile_project, openmp_threads, \
        stop_function
    from .code_patches import relative_clock_epsilon
except ImportError:  # an exported project: these files lie beside this one
    from code_patches import relative_clock_epsilon
    from network import FORMAT, MAX_STEPS, OPENMP_PREF, SEED_FROM_ARGS, VERSION, compile_project, openmp_threads, \
        stop_function

#: Arrays of a coordinated spec (``coordinated.npz`` of an exported project).
ARRAYS = ("A", "x0", "Kt", "Ks", "na", "nc", "LL", "cst", "Bx", "DB", "D", "thr", "Pinv")


def save_coordinated(path, arrays, info):
    """Write a coordinated spec as one ``.npz`` (arrays plus ``info`` as JSON; no pickle)."""
    np.savez(path, **{k: np.asarray(arrays[k], dtype=np.float64) for k in ARRAYS}, info=np.array(json.dumps(info)))


def load_coordinated(path):
    """Read a spec written by :func:`save_coordinated`: ``(arrays, info)``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: np.array(data[k]) for k in ARRAYS}
        info = json.loads(str(data["info"]))
    return arrays, info


def step_grid(info, record_dt):
    """``(steps per recording interval, step in seconds)``: the longest step within ``info["step_max_s"]``
    that divides the recording interval (as ``ddm_neuro.spiking.coordinated.step_grid``)."""
    span = float(record_dt) * float(info["time_scale"])
    sub = max(1, math.ceil(span / float(info["step_max_s"]) - 1e-9))
    return sub, span / sub


#: glibc's vector tanh (libmvec, glibc >= 2.35 on x86-64), declared at file scope: Brian2's flags include
#: ``-fno-finite-math-only``, under which glibc's headers do not declare it, and Brian2 puts a function's code
#: inside an anonymous namespace, where the declaration would not reach the call (hence the braces: they close
#: that namespace and open it again). Elsewhere the loop calls the scalar ``tanh`` (the same results to ~1 ulp).
_VECTOR_TANH = """}
#if defined(__x86_64__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
extern "C" { __attribute__((__simd__("notinbranch"))) double tanh(double) throw(); }
#endif
namespace {"""


def _kernel(name, code, args, return_type, int_args=1):
    """A C++ function of ``cpp_standalone`` (not stateless: it reads and writes Brian2's global arrays); its first
    ``int_args`` arguments are integers, the others floats."""
    import brian2 as b2

    def standalone_only(*values):
        raise RuntimeError("the coordinated network's per-trial kernels run only in cpp_standalone")

    f = b2.Function(standalone_only, arg_units=[1] * len(args), arg_names=list(args), return_unit=1,
                    arg_types=["integer"] * int_args + ["float"] * (len(args) - int_args), return_type=return_type,
                    stateless=False)
    f.implementations.add_implementation("cpp", code, name=name)
    return f


def _basis_kernel(name, d, k, M, LL, spikes=None):
    """``ddm_coord_basis(trial, x_0.., u_0..)``: the trial's M basis units at its read-out ``x`` (centred) and
    input ``u``, ``r = tanh(x0 + A^T x + Bx^T u)``, written to the basis group's ``r`` (and ``s2``), and their
    sums ``f_q = Kt_q . r`` and ``C_pq = LL_pq + sum_m Ks_p Ks_q s2`` written to the held group's row. One
    dense loop per trial over the basis group's own constants (Brian2's summed variables would make one pass
    over their index arrays per sum: nine for d = 3). ``LL`` (d x d) is the constant part of ``C``; None: no
    noise (no ``C``, no ``s2``). ``spikes`` ``(N, Pinv, h)``: noise spikes, whose probabilities per step
    ``lambda_j = D_j^T B D_j`` (``B = Pinv (C h)``, clipped at 0) go to the neurons' ``lam``, their sum to the
    held row's ``ptot`` and their mean move ``sum_j lambda_j D_j`` to its ``m_q``."""
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
    if noise and spikes is not None:
        N, pinv, hs = spikes
        nd = f"brian::_array_{name}_neurons_"
        out += [f"    const double c_{r} = (C_{p}_{q} + LL_{p}_{q})*{float(hs)!r};" for r, (p, q) in enumerate(pairs)]
        out += [f"    const double b_{r} = " + " + ".join(f"{float(pinv[r][c])!r}*c_{c}" for c in range(len(pairs)))
                + ";" for r in range(len(pairs))]
        out += [f"    const double * __restrict D_{q} = {nd}D_{q} + trial*{N};" for q in range(d)]
        out += [f"    double * __restrict lam = {nd}lam + trial*{N};", "    double ptot = 0.0;"]
        out += [f"    double m_{q} = 0.0;" for q in range(d)]
        lam = " + ".join(f"{2.0 if p != q else 1.0!r}*b_{r}*D_{p}[j]*D_{q}[j]" for r, (p, q) in enumerate(pairs))
        out += [f"    for (int j = 0; j < {N}; j++) {{", f"        const double l = {lam};",
                "        lam[j] = l > 0.0 ? l : 0.0;", "        ptot += lam[j];"]
        out += [f"        m_{q} += lam[j]*D_{q}[j];" for q in range(d)] + ["    }", f"    {h}ptot[trial] = ptot;"]
        out += [f"    {h}m_{q}[trial] = m_{q};" for q in range(d)]
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


def _noise_kernels(name, d, N):
    """``ddm_coord_noise(trial, u01, ptot)``: the trial's noise spike this step (neuron j with probability
    ``lam_j``: the first whose cumulative ``lam`` exceeds the uniform ``u01``), or -1; at most one a step.
    ``ddm_coord_dec(trial, j, q)``: decoder ``D_qj`` of the trial's neuron j (0 for j < 0)."""
    g = f"brian::_array_{name}_neurons_"
    noise = "\n".join([
        "int32_t ddm_coord_noise(const int trial, const double u01, const double ptot)", "{",
        "    if (!(u01 < ptot)) return -1;", f"    const double * const lam = {g}lam + trial*{N};",
        "    double x = u01;", "    int32_t j = 0;", f"    for (; j < {N - 1}; j++) {{ x -= lam[j]; if (x < 0.0) break; }}",
        "    return j;", "}"])
    dec = "\n".join(["double ddm_coord_dec(const int trial, const int j, const int q)", "{",
                     "    if (j < 0) return 0.0;",
                     *[f"    if (q == {q}) return {g}D_{q}[trial*{N} + j];" for q in range(d)], "    return 0.0;", "}"])
    return {"ddm_coord_noise": _kernel("ddm_coord_noise", noise, ["trial", "u01", "ptot"], "integer"),
            "ddm_coord_dec": _kernel("ddm_coord_dec", dec, ["trial", "j", "q"], "float", int_args=3)}


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



def build_coordinated_network(arrays, info, *, trials, record_dt, noise=True, record_spikes=False, input_steps=1,
                              u_values=None, xh0=None, stoppable=False, name="ddm"):
    """Brian2 objects of ``trials`` copies of a coordinated network (the spec of the module docstring).

    Parameters
    ----------
    arrays, info : dict
        The coordinated spec.
    trials : int
        Independent copies, side by side.
    record_dt : float
        Recording interval (SDE time units).
    noise : bool
        Inject the basis's noise.
    record_spikes : bool
        Keep spike times and indices (else only the counts).
    input_steps : int
        A network with inputs: rows of the input TimedArray (one per recording interval, held over it, as
        the torch loop holds them); its values are a run argument (``{name}_u.values``).
    u_values : array (input_steps, k), optional
        The input's values built in (default zeros).
    xh0 : array (trials, d), optional
        Start read-outs, centred SDE coordinates (default zeros; a run argument of the trial row's ``xh_q``).
    stoppable : bool
        Add ``{name}_control`` whose ``t_stop`` (a run argument) ends a standalone run.

    Returns
    -------
    dict
        ``network`` (a ``brian2.Network``), ``monitor`` (``xh_q`` and ``n_spikes`` of the trial row at the
        samples), ``spikes`` (a SpikeMonitor, or None), ``row``, ``control`` (or None), ``inputs`` (the
        TimedArray, or None), ``step_s``, ``hold``, ``sub``.
    """
    import brian2 as b2

    D, thr = np.asarray(arrays["D"], dtype=np.float64), np.asarray(arrays["thr"], dtype=np.float64)
    (d, N), M, T = D.shape, arrays["A"].shape[1], int(trials)
    k = arrays["Bx"].shape[0]
    sub, dt_s = step_grid(info, record_dt)
    hold = max(1, int(round(float(info["hold_s"]) / dt_s)))
    a = math.exp(-dt_s / float(info["tau"]))
    pairs = [(p, q) for p in range(d) for q in range(p + 1)]
    spikes_noise = bool(noise and info.get("noise_spikes"))   # the noise as random spikes (else tracked)
    h_sde = dt_s / float(info["time_scale"])
    basis_code, basis_args = _basis_kernel(name, d, k, M, arrays["LL"] if noise else None,
                                           (N, np.asarray(arrays["Pinv"]), h_sde) if spikes_noise else None)
    pick_code, pick_args = _pick_kernel(name, d, N)
    # the error's leak: none, unless the spec says so (models made before 2026-12-08; it biased the drift)
    ns = {"h_sde": h_sde, "a_leak": a, "lk": 1.0 - a, "ct": float(info["ct"]),
          "lke": (1.0 - a) if info.get("error_leak", True) else 0.0,
          "ddm_coord_basis": _kernel("ddm_coord_basis", basis_code, basis_args, "float"),
          "ddm_coord_pick": _kernel("ddm_coord_pick", pick_code, pick_args, "integer"),
          **(_noise_kernels(name, d, N) if spikes_noise else {})}
    # g_q below: Kt r (f_q) - ct xh + cst_q (cst with the centre folded in: cst - ct c)
    ns.update({f"cst_{q}": float(arrays["cst"][q]) for q in range(d)})
    clock = b2.Clock(dt=dt_s * b2.second, name=f"{name}_clock")
    hold_clock = b2.Clock(dt=hold * dt_s * b2.second, name=f"{name}_hold_clock")
    rec_clock = b2.Clock(dt=sub * dt_s * b2.second, name=f"{name}_record_clock")
    u_args, inputs = "", None
    if k:
        u_values = np.zeros((max(1, int(input_steps)), k)) if u_values is None else \
            np.asarray(u_values, dtype=np.float64)
        if u_values.ndim != 2 or u_values.shape[1] != k or len(u_values) < 1:
            raise ValueError(f"this network has {k} inputs: u_values needs shape (steps >= 1, {k}), "
                             f"got {u_values.shape}")
        inputs = b2.TimedArray(u_values, dt=sub * dt_s * b2.second, name=f"{name}_u")
        ns[f"{name}_u"] = inputs
        for q in range(d):
            ns.update({f"DB_{q}_{c}": float(arrays["DB"][q, c]) for c in range(k)})
        u_args = "".join(f", {name}_u(t, {c})" for c in range(k))

    # the basis: M rate units per trial, their constants and last values (r, s2); computed by ddm_coord_basis
    beqs = ["r : 1", "x0 : 1 (constant)"] + (["s2 : 1", "na : 1 (constant)", "nc : 1 (constant)"] if noise else [])
    beqs += [f"A_{q} : 1 (constant)\nKt_{q} : 1 (constant)" for q in range(d)]
    beqs += [f"Ks_{q} : 1 (constant)" for q in range(d)] if noise else []
    beqs += [f"Bx_{c} : 1 (constant)" for c in range(k)]
    basis = b2.NeuronGroup(M * T, "\n".join(beqs), clock=hold_clock, name=f"{name}_basis", namespace=ns)
    basis.x0 = np.tile(arrays["x0"], T)
    for q in range(d):
        setattr(basis, f"A_{q}", np.tile(arrays["A"][q], T))
        setattr(basis, f"Kt_{q}", np.tile(arrays["Kt"][q], T))
        if noise:
            setattr(basis, f"Ks_{q}", np.tile(arrays["Ks"][q], T))
    for c in range(k):
        setattr(basis, f"Bx_{c}", np.tile(arrays["Bx"][c], T))
    if noise:
        basis.na, basis.nc = np.tile(arrays["na"], T), np.tile(arrays["nc"], T)

    # per trial, on the hold clock: the basis's sums (f = Kt r, C), the command g and the Cholesky factor L
    held = b2.NeuronGroup(T, "\n".join(["dummy : 1"] + [f"f_{q} : 1\ng_{q} : 1\nlxh_{q} : 1 (linked)" for q in range(d)]
                                       + [f"C_{p}_{q} : 1\nL_{p}_{q} : 1" for p, q in pairs]
                                       + (["ptot : 1"] + [f"m_{q} : 1" for q in range(d)] if spikes_noise else [])),
                          clock=hold_clock, order=-3, name=f"{name}_held", namespace=ns)
    xs = "".join(f", lxh_{q}" for q in range(d))
    held.run_regularly(f"dummy = ddm_coord_basis(i{xs}{u_args})", when="groups", order=-4,
                       name=f"{name}_basis_step")
    held_code = []
    for q in range(d):   # the command, held with the basis (the torch loop's): Kt r - ct z + cst + DB u, z = xh + c
        u_row = "".join(f" + DB_{q}_{c}*{name}_u(t, {c})" for c in range(k))
        held_code.append(f"g_{q} = f_{q} - ct*lxh_{q} + cst_{q}{u_row}")
    held.run_regularly("\n".join(held_code + ([_cholesky_code(d)] if noise and not spikes_noise else [])),
                       when="groups", order=-3,
                       name=f"{name}_held_step")
    # per trial, every step: read-out, error (Ito), and the neuron that spikes (best_i, -1: none)
    eqs = "\n".join([f"xh_{q} : 1\ne_{q} : 1\nnz_{q} : 1\nlg_{q} : 1 (linked)" for q in range(d)]
                    + [f"lL_{p}_{q} : 1 (linked)" for p, q in pairs]
                    + ["best_i : integer", "n_spikes : 1"]
                    + (["nsj : integer", "n_over : 1", "lptot : 1 (linked)"] + [f"lm_{q} : 1 (linked)" for q in range(d)]
                       if spikes_noise else []))
    row = b2.NeuronGroup(T, eqs, clock=clock, order=0, name=f"{name}_trial", namespace=ns)
    for q in range(d):
        setattr(row, f"lg_{q}", b2.linked_var(held, f"g_{q}"))
        setattr(held, f"lxh_{q}", b2.linked_var(row, f"xh_{q}"))
    for p, q in pairs:
        setattr(row, f"lL_{p}_{q}", b2.linked_var(held, f"L_{p}_{q}"))
    if spikes_noise:
        row.lptot = b2.linked_var(held, "ptot")
        for q in range(d):
            setattr(row, f"lm_{q}", b2.linked_var(held, f"m_{q}"))
    code = [f"nz_{q} = randn()" for q in range(d)] if noise and not spikes_noise else []
    for p in range(d):
        nz = f" - lm_{p}" if spikes_noise else "".join(f" + lL_{p}_{q}*nz_{q}" for q in range(p + 1)) if noise else ""
        code.append(f"e_{p} += lg_{p}*h_sde{nz} + lk*xh_{p} - lke*e_{p}")
        code.append(f"xh_{p} = a_leak*xh_{p}")
    code.append("best_i = ddm_coord_pick(i" + "".join(f", e_{q}" for q in range(d)) + ")")
    if spikes_noise:
        # the noise spike (nsj, -1: none): its kick (e -= D, xh += D) is to move xh alone, so D is added to e
        # first; chosen by the tracking rule too, the neuron spikes once, and its second move is made here
        code += ["nsj = ddm_coord_noise(i, rand(), lptot)", "n_over += int(lptot > 1)",
                 "same = int(nsj == best_i and nsj >= 0)"]
        code += [f"e_{q} += ddm_coord_dec(i, nsj, {q})*(1 - same)\nxh_{q} += ddm_coord_dec(i, nsj, {q})*same"
                 for q in range(d)]
    row.run_regularly("\n".join(code), when="groups", order=0, name=f"{name}_trial_step")

    # the spiking neurons: membranes along their decoders; the trial's chosen one crosses threshold
    n_trial = np.repeat(np.arange(T), N)
    neqs = [f"D_{q} : 1 (constant)\nle_{q} : 1 (linked)" for q in range(d)]
    neqs += ["thr : 1 (constant)", "trial : integer (constant)", "j : integer (constant)", "lbest : integer (linked)",
             "V = " + " + ".join(f"D_{q}*le_{q}" for q in range(d)) + " - thr : 1"]
    neqs += ["lam : 1", "lnoise : integer (linked)"] if spikes_noise else []
    quiet = logging.getLogger("brian2.groups.neurongroup.only_threshold")   # no reset, on purpose (no resetter)
    quiet.disabled = True
    try:
        neurons = b2.NeuronGroup(N * T, "\n".join(neqs), clock=clock, order=5,
                                 threshold="j == lbest or j == lnoise" if spikes_noise else "j == lbest",
                                 name=f"{name}_neurons", namespace=ns)
    finally:
        quiet.disabled = False
    neurons.trial = n_trial
    neurons.j = np.tile(np.arange(N), T)
    neurons.thr = np.tile(thr, T)
    neurons.lbest = b2.linked_var(row, "best_i", index=n_trial)
    if spikes_noise:
        neurons.lnoise = b2.linked_var(row, "nsj", index=n_trial)
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

    xh0 = np.zeros((T, d)) if xh0 is None else np.asarray(xh0, dtype=np.float64).reshape(T, d)
    for q in range(d):
        setattr(row, f"xh_{q}", xh0[:, q])
    # at the start of each recording step: the read-out and the spikes so far (the run's last step is not counted)
    monitor = b2.StateMonitor(row, [f"xh_{q}" for q in range(d)] + ["n_spikes"] + (["n_over"] if spikes_noise else []),
                              record=True, clock=rec_clock,
                              when="start", order=-20,
                              name=f"{name}_monitor")
    spikes = b2.SpikeMonitor(neurons, name=f"{name}_spikes") if record_spikes else None
    objects = [held, row, basis, neurons, kick, monitor] + ([spikes] if spikes is not None else [])
    control = None
    if stoppable:   # checked at the start of every step, after the monitor: the step at t_stop is not taken
        ns["ddm_stop_at"] = stop_function()
        control = b2.NeuronGroup(1, "t_stop : second (shared)\nstopped : 1", clock=clock, order=-20,
                                 name=f"{name}_control", namespace=ns)
        control.t_stop = 0 * b2.second
        control.run_regularly("stopped = ddm_stop_at(t, t_stop)", when="start", order=-10, name=f"{name}_stop")
        objects.append(control)
    return {"network": b2.Network(*objects), "monitor": monitor, "spikes": spikes, "row": row, "control": control,
            "inputs": inputs, "step_s": dt_s, "hold": hold, "sub": sub, "dim": d, "n_neurons": N}


def build_coordinated_project(arrays, info, directory, *, trials, record_dt, noise=True, record_spikes=False,
                              input_steps=1, threads=1, compile=True):
    """Generate (and compile) a re-runnable ``cpp_standalone`` project of the coordinated network.

    The binary is compiled for :data:`MAX_STEPS` steps and stops at ``{name}_control.t_stop``; the start
    read-outs (``ddm_trial.xh_q``), the inputs (``ddm_u.values``, one row per recording interval) and the seed
    (``--seed=S``) are command-line arguments too (``runner.py``). ``threads`` K > 1: K OpenMP threads over
    the per-trial rows. Writes and returns the manifest (``build.json``).
    """
    import brian2 as b2

    directory = os.path.abspath(directory)
    opts = {"directory": directory, "build_on_run": False}
    saved = b2.prefs[OPENMP_PREF]
    b2.set_device("cpp_standalone", **opts)
    try:
        b2.prefs[OPENMP_PREF] = openmp_threads(threads)
        b2.device.reinit()
        b2.device.activate(**opts)
        parts = build_coordinated_network(arrays, info, trials=trials, record_dt=record_dt, noise=noise,
                                          record_spikes=record_spikes, input_steps=input_steps, stoppable=True)
        b2.device.insert_code("main", SEED_FROM_ARGS)
        # the input's grid (recording intervals) need not align with the basis's hold clock: Brian2 warns, and its
        # lookup gives each hold step its interval's input, as the torch loop does (tests/test_brian2_coordinated.py)
        quiet = logging.getLogger("brian2.input.timedarray")
        quiet.disabled = True
        try:
            parts["network"].run(MAX_STEPS * parts["step_s"] * b2.second)
        finally:
            quiet.disabled = False
        b2.device.build(directory=directory, compile=False, run=False)
        relative_clock_epsilon(directory)
        mon, d = parts["monitor"], parts["dim"]
        results = {f"xh_{q}": b2.device.get_array_filename(mon.variables[f"xh_{q}"]) for q in range(d)}
        results["n_spikes"] = b2.device.get_array_filename(mon.variables["n_spikes"])
        if "n_over" in mon.record_variables:
            results["n_over"] = b2.device.get_array_filename(mon.variables["n_over"])
        if parts["spikes"] is not None:
            results.update(spikes_t=b2.device.get_array_filename(parts["spikes"].variables["t"]),
                           spikes_i=b2.device.get_array_filename(parts["spikes"].variables["i"]))
        row = parts["row"].name
        manifest = {
            "format": FORMAT, "version": VERSION, "device": "cpp_standalone", "brian2_version": b2.__version__,
            "mode": "spiking", "network": "coordinated", "coupling": "coordinated", "trials": int(trials),
            "noise_spikes": bool(noise and info.get("noise_spikes")),
            "dt": parts["step_s"] / float(info["time_scale"]), "step_s": parts["step_s"], "sub": parts["sub"],
            "hold": parts["hold"], "time_scale": float(info["time_scale"]), "record_dt": float(record_dt),
            "noise": "model" if noise else "none", "input_steps": int(input_steps) if parts["inputs"] else 0,
            "n_neurons": parts["n_neurons"], "n_basis": int(arrays["A"].shape[1]), "dim": d,
            "n_inputs": int(arrays["Bx"].shape[0]), "results": results,
            "args": {**{f"xh_{q}": f"{row}.xh_{q}" for q in range(d)},
                     "t_stop": f"{parts['control'].name}.t_stop",
                     "u": None if parts["inputs"] is None else f"{parts['inputs'].name}.values"},
            "seed": None, "duration": None, "threads": int(threads)}
        with open(os.path.join(directory, "build.json"), "w") as fh:
            json.dump(manifest, fh, indent=1)
    finally:
        b2.device.reinit()
        b2.set_device("runtime")
        b2.prefs[OPENMP_PREF] = saved
    if compile:
        manifest["compile_seconds"] = compile_project(directory)
    return manifest
