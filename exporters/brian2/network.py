r"""A trained ddm_neuro rate network as a Brian2 network; needs only brian2 and numpy.

This file is the Brian2 script of an exported project (it is copied there
verbatim as ``network.py``), and the same code builds the networks of the
``brian2`` and ``brian2-cpp`` back ends, so what is exported is what was tested.

The model is a plain *spec*: arrays (``encoders`` E (N, d), ``decoders`` K (d, N),
``readout`` D (d, N), ``bias`` b, ``noise_const``, ``noise_act`` (N,) in
seconds, ``noise_latent`` L (d, d), ``input_weights`` B (N, k), ``center`` c
and ``scale`` S (d,), ``init_states``) and a JSON-able ``info`` dict (``tau``
in seconds, ``time_scale`` T = seconds of network time per SDE time unit,
``neuron`` = ``{"name": "tanh" | "lif", **params}``, names, defaults).

Equations (``x`` dimensionless, ``t`` in seconds, Itô)::

    dx/dt = (-x + rec + bias + drive) / tau
    r     = phi(x) + sqrt(sigma^2(x) / dt) * randn()      once per neuron per step
    rec   = sum_k E_ik (v_k + top_k),  v_k = sum_j K_kj r_j           (factored, N -> d -> N)
            (v: summed-variable synapses N -> d; E (v + top): each neuron reads its d latent
             units through linked variables, no synapses)
    rec   = sum_j W_ij r_j,            W = E K                         (dense)

``phi`` is evaluated once per neuron and step (a ``run_regularly`` at the start
of the step), never inside a synapse. The private noise sits at the neurons'
outputs, ``sigma^2(x) = noise_const + noise_act * act(x)`` (seconds), and is
drawn as ``randn()`` scaled by ``1/sqrt(dt)``: the Euler step of ``x`` then
carries ``W diag(sigma) sqrt(dt) xi / tau`` -- Brian2's ``xi`` scaling
(units ``second**-0.5``), written out. The amplitude is taken at the start of
the step (Itô), and the noise enters additively within the step, so no
Itô-to-Stratonovich correction arises with the ``euler`` method used here.
The shared latent top-up ``L dW'`` enters as ``top_k = tau (L g)_k / sqrt(dt)``
with ``g ~ N(0, 1)``. Inputs ``u(t)`` come from a TimedArray ``<name>_u``
(step grid, k columns); a change of ``u`` moves ``x`` by ``B du`` at once (the
model's feed-forward path). The latent read-out ``y = D x`` is a summed
variable, recorded every ``record_dt``.

For standalone devices the network can be re-run without recompiling: the
initial ``x`` and ``drive``, the input TimedArray's values, the stop time
(``<name>_control.t_stop``; the network is built for a long duration and stops
there) and the random seed (``--seed=S``) are command-line arguments of the
compiled binary (see ``runner.py``).
"""
from __future__ import annotations

import json
import os

import numpy as np

#: Arrays of a spec, in the file ``model.npz`` of an exported project.
ARRAYS = ("encoders", "decoders", "readout", "bias", "noise_const", "noise_act", "noise_latent",
          "input_weights", "center", "scale", "init_states")
#: Network time (in units of the run's own length) a standalone build is compiled for;
#: runs stop earlier at ``t_stop`` (a command-line argument).
MAX_STEPS = 2 ** 40
FORMAT = "ddm_neuro-brian2-project"
VERSION = 1


class NetworkError(ValueError):
    """A model feature or setting this Brian2 network cannot express."""


class CompileError(RuntimeError):
    """The generated C++ did not compile; carries the compiler's own output."""


def save_spec(path, arrays, info):
    """Write a spec as one ``.npz`` (arrays plus ``info`` as a JSON string; no pickle)."""
    np.savez(path, **{k: np.asarray(arrays[k], dtype=np.float64) for k in ARRAYS},
             info=np.array(json.dumps(info)))


def load_spec(path):
    """Read a spec written by :func:`save_spec`: ``(arrays, info)``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: np.array(data[k]) for k in ARRAYS}
        info = json.loads(str(data["info"]))
    return arrays, info


def neuron_code(neuron):
    """Brian2 expressions ``(phi(x), act(x))`` for the neuron model (plain numbers)."""
    name = neuron["name"]
    if name == "tanh":
        return "tanh(x)", "0.5*(1 + tanh(x))"
    if name == "lif":
        tm, tr = float(neuron["tau_m"]), float(neuron["tau_ref"])
        rate = f"int(x > 1) / ({tr!r} + {tm!r}*log(1 + 1/clip(x - 1, 1e-12, 1e12)))"
        return rate, f"({rate})*{tr!r}"
    raise NetworkError(f"brian2 export: neuron model {name!r} is not supported (tanh, lif)")


def initial_state(arrays, z0, u0=None):
    """Neuron inputs ``x0`` and input drive ``B u0`` for latent starts ``z0`` (trials, d).

    ``x0 = E (z0 - c) / S + P (b + B u0)`` with ``P = I - E D``: the latent at
    ``z0`` and everything off the latent subspace at rest. Returns flat arrays
    (trials * N,) in the network's neuron order (trial-major).
    """
    E, D = arrays["encoders"], arrays["readout"]
    z0 = np.atleast_2d(np.asarray(z0, dtype=np.float64))
    drive = np.zeros(E.shape[0])
    if u0 is not None and arrays["input_weights"].shape[1]:
        drive = arrays["input_weights"] @ np.asarray(u0, dtype=np.float64)
    rest = arrays["bias"] + drive
    rest = rest - E @ (D @ rest)
    x0 = ((z0 - arrays["center"]) / arrays["scale"]) @ E.T + rest
    return x0.reshape(-1), np.tile(drive, len(z0))


def _stop_function():
    """``ddm_stop_at(t, t_stop)``: ends a standalone run once ``t >= t_stop`` (C++ only)."""
    import brian2 as b2

    @b2.implementation("cpp", """
    double ddm_stop_at(const double t, const double t_stop)
    {
        if (t >= t_stop) { Network::_globally_stopped = true; return 1.0; }
        return 0.0;
    }
    """)
    @b2.check_units(t=b2.second, t_stop=b2.second, result=1)
    def ddm_stop_at(t, t_stop):
        raise NetworkError("ddm_stop_at runs only in standalone devices")

    return ddm_stop_at


def build_network(arrays, info, *, trials, dt, record_dt, coupling="factored", noise=True, input_steps=0,
                  u_values=None, x0=None, drive0=None, stoppable=False, name="ddm"):
    """Build the Brian2 objects of ``trials`` independent copies of the network.

    Parameters
    ----------
    arrays, info : dict
        The model spec (see the module docstring).
    trials : int
        Independent copies, simulated side by side (one group of ``trials * N`` neurons).
    dt, record_dt : float
        Integration step and recording interval in SDE time units
        (the network runs at ``dt * time_scale`` seconds).
    coupling : {"factored", "dense", "none"}
        Recurrent coupling through the rank-d structure (O(N d) synapses) or the
        explicit N x N matrix W (summed-variable synapses); "none" leaves the
        neurons uncoupled (the speed floor in benchmarks, not a model).
    noise : bool
        Private output noise and shared top-up on or off.
    input_steps : int
        Rows of the input TimedArray (step grid); 0 for models without inputs.
    u_values : array (input_steps, k), optional
        Its values (default zeros; standalone runs set them on the command line).
    x0, drive0 : array (trials * N,), optional
        Initial neuron inputs and input drive (see :func:`initial_state`).
    stoppable : bool
        Add the control group whose ``t_stop`` ends a standalone run (C++ devices).
    name : str
        Prefix of every Brian2 object name (names are unique per network).

    Returns
    -------
    dict
        ``network`` (brian2.Network), ``monitor`` (StateMonitor of ``y``, d per
        trial), ``neurons``, ``inputs`` (the TimedArray or None), ``control``
        (or None) and ``namespace`` (for ``Network.run``).
    """
    import brian2 as b2

    if coupling not in ("factored", "dense", "none"):
        raise NetworkError(f"coupling must be 'factored' or 'dense' ('none': benchmarks only), got {coupling!r}")
    trials = int(trials)
    if trials < 1:
        raise NetworkError(f"trials must be >= 1, got {trials}")
    phi, act = neuron_code(info["neuron"])
    E, K, D = arrays["encoders"], arrays["decoders"], arrays["readout"]
    N, d = E.shape
    k = arrays["input_weights"].shape[1]
    L = arrays["noise_latent"]
    shared_noise = bool(noise and np.any(L))
    if coupling == "dense" and shared_noise:
        raise NetworkError("dense coupling cannot carry this model's shared latent noise (noise_latent != 0); "
                           "use the factored coupling")
    T, tau = float(info["time_scale"]), float(info["tau"])
    h = float(dt) * T
    clock = b2.Clock(dt=h * b2.second, name=f"{name}_clock")
    ns = {"tau_n": tau * b2.second}

    b_terms = "".join(f"\nB_{m} : 1 (constant)" for m in range(k))
    if coupling == "factored":  # rec = E (v + top), read from the latent group through linked variables
        rec = " + ".join(f"E_{q}*(lv_{q}" + (f" + lt_{q})" if shared_noise else ")") for q in range(d))
        rec_eqs = f"rec = {rec} : 1" + "".join(f"\nE_{q} : 1 (constant)\nlv_{q} : 1 (linked)" for q in range(d))
        rec_eqs += "".join(f"\nlt_{q} : 1 (linked)" for q in range(d)) if shared_noise else ""
    else:  # dense: a summed variable; none: zero
        rec_eqs = "rec : 1"
    neurons = b2.NeuronGroup(N * trials, """
        dx/dt = (-x + rec + bias + drive) / tau_n : 1
        """ + rec_eqs + """
        bias : 1 (constant)
        drive : 1
        r : 1
        noise_const : second (constant)
        noise_act : second (constant)""" + b_terms,
                             method="euler", clock=clock, order=10, name=f"{name}_neurons", namespace=ns)
    if x0 is None:
        x0, drive0 = initial_state(arrays, arrays["init_states"][np.arange(trials) % len(arrays["init_states"])],
                                   np.zeros(k) if k else None)
    neurons.x = x0
    neurons.drive = np.zeros(N * trials) if drive0 is None else drive0
    neurons.bias = np.tile(arrays["bias"], trials)
    # sigma^2 carries seconds: eta dt = sigma dW with dimensionless outputs
    neurons.noise_const = np.tile(arrays["noise_const"], trials) * b2.second
    neurons.noise_act = np.tile(arrays["noise_act"], trials) * b2.second
    eta = f" + sqrt((noise_const + noise_act*{act}) / dt) * randn()" if noise else ""
    neurons.run_regularly(f"r = {phi}{eta}", when="start", order=0, name=f"{name}_outputs")
    objects = [neurons]

    inputs = None
    if k:
        u_values = np.zeros((int(input_steps), k)) if u_values is None else np.asarray(u_values, dtype=np.float64)
        if u_values.ndim != 2 or u_values.shape[1] != k or len(u_values) < 1:
            raise NetworkError(f"this model has {k} inputs: the input TimedArray needs shape (steps >= 1, {k}), "
                               f"got {u_values.shape}")
        for m in range(k):
            setattr(neurons, f"B_{m}", np.tile(arrays["input_weights"][:, m], trials))
        inputs = b2.TimedArray(u_values, dt=h * b2.second, name=f"{name}_u")
        ns[f"{name}_u"] = inputs
        Bu = " + ".join(f"B_{m}*{name}_u(t, {m})" for m in range(k))
        neurons.run_regularly(f"x += ({Bu}) - drive\ndrive = {Bu}", when="start", order=-1,
                              name=f"{name}_feedforward")

    pre = np.arange(N * trials)
    trial_of = np.repeat(np.arange(trials), N)
    i_n = np.repeat(pre, d)                                       # neuron j <-> latent unit k, same trial
    j_u = np.repeat(trial_of * d, d) + np.tile(np.arange(d), N * trials)

    # the read-out is needed only when it is recorded: its summed variable runs on the recording clock
    rec_clock = b2.Clock(dt=float(record_dt) * T * b2.second, name=f"{name}_record_clock")
    readout = b2.NeuronGroup(d * trials, "y : 1", clock=rec_clock, order=5, name=f"{name}_readout")
    rd = b2.Synapses(neurons, readout, "D : 1\ny_post = D * x_pre : 1 (summed)", clock=rec_clock,
                     name=f"{name}_readout_syn")
    rd.connect(i=i_n, j=j_u)
    rd.D = np.tile(D.T.reshape(-1), trials)
    objects += [readout, rd]

    if coupling == "factored":
        latent = b2.NeuronGroup(d * trials, "v : 1\ntop : 1\ng : 1", clock=clock, order=2, name=f"{name}_latent")
        dec = b2.Synapses(neurons, latent, "K : 1\nv_post = K * r_pre : 1 (summed)", clock=clock,
                          name=f"{name}_decode")
        dec.connect(i=i_n, j=j_u)
        dec.K = np.tile(K.T.reshape(-1), trials)
        # encoding without synapses: each neuron reads its trial's d latent units (linked variables)
        for q in range(d):
            setattr(neurons, f"E_{q}", np.tile(E[:, q], trials))
            setattr(neurons, f"lv_{q}", b2.linked_var(latent, "v", index=trial_of * d + q))
            if shared_noise:
                setattr(neurons, f"lt_{q}", b2.linked_var(latent, "top", index=trial_of * d + q))
        objects += [latent, dec]
        if shared_noise:
            latent.run_regularly("g = randn()", when="start", order=0, name=f"{name}_shared_draw")
            mix = b2.Synapses(latent, latent, "Lw : 1\ntop_post = Lw * g_pre : 1 (summed)", clock=clock,
                              name=f"{name}_shared_mix")
            src = np.concatenate([t * d + np.tile(np.arange(d), d) for t in range(trials)])
            dst = np.concatenate([t * d + np.repeat(np.arange(d), d) for t in range(trials)])
            mix.connect(i=src, j=dst)
            mix.Lw = np.tile((tau * L / np.sqrt(h)).reshape(-1), trials)
            objects.append(mix)
    elif coupling == "dense":
        dense = b2.Synapses(neurons, neurons, "w : 1\nrec_post = w * r_pre : 1 (summed)", clock=clock,
                            name=f"{name}_dense")
        src = np.concatenate([t * N + np.repeat(np.arange(N), N) for t in range(trials)])
        dst = np.concatenate([t * N + np.tile(np.arange(N), N) for t in range(trials)])
        dense.connect(i=src, j=dst)
        dense.w = np.tile((E @ K).T.reshape(-1), trials)
        objects.append(dense)

    control = None
    if stoppable:
        ns["ddm_stop_at"] = _stop_function()
        control = b2.NeuronGroup(1, "t_stop : second (shared)\nstopped : 1", clock=clock, order=-20,
                                 name=f"{name}_control", namespace=ns)
        control.t_stop = 0 * b2.second
        control.run_regularly("stopped = ddm_stop_at(t, t_stop)", when="start", order=-20,
                              name=f"{name}_stop")
        objects.append(control)

    monitor = b2.StateMonitor(readout, "y", record=True, clock=rec_clock, when="groups", order=7,
                              name=f"{name}_monitor")
    objects.append(monitor)
    return {"network": b2.Network(*objects), "monitor": monitor, "neurons": neurons, "inputs": inputs,
            "control": control, "namespace": ns}


def build_project(arrays, info, directory, *, trials, dt, record_dt, coupling="factored", noise=True,
                  input_steps=0, device="cpp_standalone", compile=True, seed=None, duration=None, prefs=None):
    """Generate (and for C++ compile) a standalone project in ``directory``; returns its manifest.

    ``cpp_standalone`` builds a re-runnable binary: it is compiled for
    :data:`MAX_STEPS` steps and stops at ``t_stop`` given on its command line,
    and seed, initial state and inputs are command-line arguments too.
    ``cuda_standalone`` (Brian2CUDA) generates code for a fixed ``duration``
    (SDE units) and ``seed``; it is compiled and run on a machine with a GPU.
    ``prefs`` are Brian2 preferences set for this build only. The manifest
    (``build.json`` in ``directory``) names the result files.
    """
    import brian2 as b2

    directory = os.path.abspath(directory)
    cuda = device == "cuda_standalone"
    if cuda:
        import brian2cuda  # noqa: F401  (registers the device)
    opts = {"directory": directory, "build_on_run": False}
    saved = {k: b2.prefs[k] for k in (prefs or {})}
    b2.set_device(device, **opts)
    try:
        for k, v in (prefs or {}).items():
            b2.prefs[k] = v
        b2.device.reinit()
        b2.device.activate(**opts)
        if seed is not None:
            b2.seed(int(seed))
        parts = build_network(arrays, info, trials=trials, dt=dt, record_dt=record_dt, coupling=coupling,
                              noise=noise, input_steps=input_steps, stoppable=not cuda)
        h = float(dt) * float(info["time_scale"])
        if not cuda:
            b2.device.insert_code("main", _SEED_FROM_ARGS)
            steps = MAX_STEPS
        else:
            steps = int(round(float(duration) / float(dt))) + 1
        parts["network"].run(steps * h * b2.second, namespace=parts["namespace"])
        b2.device.build(directory=directory, compile=False, run=False)
        mon, neurons = parts["monitor"], parts["neurons"]
        manifest = {
            "format": FORMAT, "version": VERSION, "device": device, "brian2_version": b2.__version__,
            "trials": int(trials), "dt": float(dt), "time_scale": float(info["time_scale"]), "record_dt": float(record_dt), "coupling": coupling,
            "noise": bool(noise), "input_steps": int(input_steps), "n_neurons": int(arrays["encoders"].shape[0]),
            "dim": int(arrays["encoders"].shape[1]), "n_inputs": int(arrays["input_weights"].shape[1]),
            "results": {"y": b2.device.get_array_filename(mon.variables["y"]),
                        "t": b2.device.get_array_filename(mon.variables["t"])},
            "args": {"x": f"{neurons.name}.x", "drive": f"{neurons.name}.drive",
                     "t_stop": None if cuda else f"{parts['control'].name}.t_stop",
                     "u": None if parts["inputs"] is None else f"{parts['inputs'].name}.values"},
            "seed": None if seed is None else int(seed), "duration": None if duration is None else float(duration),
        }
        with open(os.path.join(directory, "build.json"), "w") as fh:
            json.dump(manifest, fh, indent=1)
    finally:
        b2.device.reinit()
        b2.set_device("runtime")
        for k, v in saved.items():
            b2.prefs[k] = v
    if compile:
        manifest["compile_seconds"] = compile_project(directory)
    return manifest


def compile_project(directory, jobs=None):
    """Run ``make`` in a generated project; returns the seconds it took.

    Raises :class:`CompileError` with the compiler's own messages (the last
    lines of its output) when the build fails; the directory is left as it is.
    """
    import subprocess
    import time

    t0 = time.perf_counter()
    proc = subprocess.run(["make", f"-j{jobs or os.cpu_count() or 1}"], cwd=directory, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        errors = [ln for ln in lines if "error" in ln.lower()] or lines
        raise CompileError(f"compiling {directory} failed (make exit {proc.returncode}); compiler output:\n"
                           + "\n".join(errors[-15:]))
    return time.perf_counter() - t0


#: C++ inserted at the top of ``main``: ``--seed=S`` seeds Brian2's generators (and is removed
#: from the arguments before Brian2 reads variable assignments from them).
_SEED_FROM_ARGS = """
for (size_t _k = 0; _k < args.size(); _k++) {
    if (args[_k].rfind("--seed=", 0) == 0) {
        const unsigned long _s = std::stoul(args[_k].substr(7));
        for (size_t _g = 0; _g < brian::_random_generators.size(); _g++)
            brian::_random_generators[_g].seed(_s + _g);
        args.erase(args.begin() + _k);
        break;
    }
}
"""


def main(argv=None):
    """``python network.py [--device cuda_standalone]``: regenerate ``code/`` from ``model.npz``."""
    import argparse

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "export.json")) as fh:
        export = json.load(fh)
    ap = argparse.ArgumentParser(description="Regenerate (and compile) this project's Brian2 standalone code.")
    ap.add_argument("--device", default=export["device"], choices=["cpp_standalone", "cuda_standalone"])
    ap.add_argument("--no-compile", action="store_true", help="generate the code only")
    ap.add_argument("--detect-gpu", action="store_true",
                    help="cuda_standalone: let Brian2CUDA detect the GPU and nvcc instead of export.json's settings")
    args = ap.parse_args(argv)
    prefs = dict(export.get("device_prefs") or {}) if args.device == export["device"] else {}
    if args.detect_gpu:
        prefs = {k: v for k, v in prefs.items() if ".cuda_backend." not in k or k.endswith("extra_compile_args_nvcc")}
    arrays, info = load_spec(os.path.join(here, "model.npz"))
    b = export["build"]
    manifest = build_project(arrays, info, os.path.join(here, "code"), trials=b["trials"], dt=b["dt"],
                             record_dt=b["record_dt"], coupling=b["coupling"], noise=b["noise"],
                             input_steps=b["input_steps"], device=args.device, compile=not args.no_compile,
                             seed=b.get("seed"), duration=b.get("duration"), prefs=prefs)
    print(f"built {manifest['device']} project in {os.path.join(here, 'code')}")


if __name__ == "__main__":
    main()
