r"""Hardware limits on the recurrent weights, by constrained (quantisation-aware) refitting.

On a chip the synapses are the dense N x N matrix ``W`` (``= E K`` for a
fitted model). :func:`constrain` makes it obey:

* **k-bit weights on one shared scale** ``s``: ``W_q = s n`` with integers
  ``n`` in ``[-q, q]``, ``q = 2^(k-1) - 1`` (at most ``2^k - 1`` levels,
  symmetric, zero included);
* a **fan-in cap** M: at most M nonzero weights per row (inputs per neuron);
* **sparsity** p: at most ``ceil(p N^2)`` nonzero weights in all;
* **Dale's law**: each neuron's outgoing weights (a column of ``W``) one sign.

**What the latent obeys with a general W.** A constrained ``W_q`` is no
longer ``E K``. With ``D E = I`` and ``P = I - E D`` write::

    W_q = E K' + W_perp,      K' = D W_q,      W_perp = P W_q      (D W_perp = 0)

and ``x = E y + x_perp`` (``x_perp = P x``). The network
``tau dx = (-x + W_q (phi(x) + eta) + b + B u) dt`` splits into::

    tau dy      = ( -y      + K'     (phi(x) + eta) + D (b + B u) ) dt
    tau dx_perp = ( -x_perp + W_perp (phi(x) + eta) + P (b + B u) ) dt

The latent keeps the fitted form with ``K'`` for ``K``, but ``x_perp`` no
longer rests at ``P (b + B u)``: it relaxes (time constant tau) to the fixed
point ``x_perp*(y) = P (b + B u) + W_perp phi(E y + x_perp*)``, which moves
with ``y`` and feeds back into the latent through ``phi``. When the latent is
slow against tau (the fit's time-scale ratio) the latent drift is::

    f_net(z) = T S ( -y + K' phi(E y + x_perp*(y)) + D (b + B u) ) / tau

which :meth:`LatentRNN.latent_drift` evaluates (:meth:`LatentRNN.settle`
finds ``x_perp*``) and which the refit matches. The noise ``W_perp eta`` also
makes ``x_perp`` fluctuate about ``x_perp*`` with correlation time ~tau; that
reaches the latent only through ``phi``, at second order in ``W_perp``, and is
not in :meth:`LatentRNN.latent_cov` (``T S (K' Sigma^2 K'^T / tau^2 + L L^T) S``)
— verification of simulated runs is what judges it. The private noise
intensities and the shared top-up ``L`` are refitted for ``K'``
(:func:`ddm_neuro.fit.diffusion.refit_noise`), so the diffusion follows the
quantised decoders.

**Methods.** *Rounding only*: ``W_q = s round(clip(W/s, -q, q))`` after the
masks and the Dale projection, with ``s`` the best (lowest drift error on
validation states) of a few fractions of ``max|W| / q`` (clipping the largest
weights can pay at low bit widths). The refit has two stages.
*1. Compensated rounding* (closed form): every neuron's recurrent input
``W phi(x)`` on the training states is kept as well as the grid allows,
``min ||(W_q - W) Phi||``, column by column with the optimal-brain-surgeon
error update (the scheme of GPTQ, Frantar et al. 2023): a column's rounding
(or pruning, or Dale) error is spread over the columns not yet fixed, through
the inverse Gram matrix of the rates ``H = Phi Phi^T / M`` (damped by 1 % of
its mean diagonal). Keeping the full input keeps both ``K' phi`` and the
``x_perp`` feedback; plain rounding's feedback error dominates its drift
error. Each trial scale is tried. *2. Quantisation-aware refit*: Adam on real
weights ``W_r`` (starting from the best of stage 1) and the biases ``b``; the
forward pass uses ``W_q = Q(W_r)`` with ``s`` fixed, the backward pass the
straight-through estimator (``dQ/dW_r = 1`` inside the clip range); the
loss is the fit's relative drift error
``mean ||f_net - f||^2 / mean ||f||^2`` on training states of the target
(visited, jittered and box states, as in :mod:`ddm_neuro.fit.states`), with
``x_perp`` at its fixed point (a few fixed-point iterations inside the
graph). Masks stay fixed (fan-in, sparsity: the largest ``|W_ij|`` are kept);
Dale's law is kept by projection after every step (weights of the wrong sign
set to zero; each column's sign is that of ``sum_i W_ij |W_ij|``). The
snapshot with the lowest validation error (``x_perp`` settled to convergence)
is kept; ``meta["hardware"]["method"]`` says which stage won (``"round"``,
``"compensated"`` or ``"refit"``). Biases and input weights stay real numbers.

A scale search cannot make every weight round to zero (the largest weight
maps to at least level 1), so a too-small bit width shows as a large drift
error instead: the result is refused when the held-out drift error exceeds
``max_drift_error`` (default 50 %), or when ``x_perp`` has no stable fixed
point (the constrained network is unstable off the latent subspace).
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DDMError
from ..network import settle_perp
from .diffusion import refit_noise
from ..presets import get_preset
from .states import held_out_states, training_states, visited_states

#: Fractions of ``max|W| / q`` tried as the shared scale.
SCALE_FRACTIONS = (1.0, 0.85, 0.7, 0.55, 0.4, 0.3)


def levels(bits):
    """Largest integer level ``q = 2^(bits-1) - 1`` of a signed k-bit weight."""
    return 2 ** (int(bits) - 1) - 1


def preset_limits(name, n_neurons):
    """``(bits, fan_in)`` of hardware preset ``name`` for a network of ``n_neurons``.

    Raises
    ------
    DDMError
        Unknown preset, or one whose chip holds fewer neurons than the network.
    """
    p = get_preset(name)
    if p.get("max_neurons") is not None and n_neurons > p["max_neurons"]:
        raise DDMError(f"preset {name!r} ({p['description']}) holds at most {p['max_neurons']} neurons, "
                       f"the model has N = {n_neurons}; refit with -n {p['max_neurons']} or fewer")
    fan_in = p.get("fan_in")
    return p.get("bits"), (None if fan_in is None else min(int(fan_in), n_neurons))


def integer_weights(model):
    """The integer levels and the shared scale of a quantised model: ``W = scale * levels``.

    Returns
    -------
    levels : ndarray (N, N) of int64
    scale : float

    Raises
    ------
    DDMError
        The model was not quantised by :func:`constrain`.
    """
    hw = model.meta.get("hardware") or {}
    if not hw.get("bits"):
        raise DDMError("this model has no quantised weights (run 'ddm-neuro constrain --bits K' first)")
    s = float(hw["scale"])
    n = np.rint(model.weights() / s)
    return n.astype(np.int64), s


def _check_args(model, bits, fan_in, sparsity, dale, max_drift_error):
    N = model.n_neurons
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 32):
        raise DDMError(f"bits must be an integer from 2 to 32 (got {bits!r}); 8 is typical of chips")
    if fan_in is not None and (isinstance(fan_in, bool) or not isinstance(fan_in, (int, np.integer))
                               or not 1 <= fan_in <= N):
        raise DDMError(f"fan_in must be an integer from 1 to N = {N} (got {fan_in!r})")
    if sparsity is not None and (isinstance(sparsity, bool) or not isinstance(sparsity, (int, float))
                                 or not 0 < sparsity <= 1):
        raise DDMError(f"sparsity (fraction of weights kept) must be in (0, 1] (got {sparsity!r})")
    if not (isinstance(max_drift_error, (int, float)) and max_drift_error > 0):
        raise DDMError(f"max_drift_error must be > 0 (got {max_drift_error!r})")
    if bits is None and fan_in is None and sparsity is None and not dale:
        raise DDMError("nothing to constrain: give bits, fan_in, sparsity or dale (or a preset)")


def _mask(W, fan_in, sparsity):
    keep = np.ones(W.shape, bool)
    a = np.abs(W)
    if fan_in is not None and fan_in < W.shape[1]:
        order = np.argsort(-a, axis=1, kind="stable")[:, :fan_in]
        keep = np.zeros(W.shape, bool)
        np.put_along_axis(keep, order, True, axis=1)
    if sparsity is not None and sparsity < 1:
        n_keep = int(math.ceil(sparsity * W.size))
        flat = np.argsort(-(a * keep).ravel(), kind="stable")[:n_keep]
        glob = np.zeros(W.size, bool)
        glob[flat] = True
        keep &= glob.reshape(W.shape)
    return keep


def _column(w, j, keep, col_sign, dale, s, q):
    """Column ``j`` of the constrained matrix: masked, Dale-projected, rounded to the grid (numpy)."""
    w = w * keep[:, j]
    if dale:
        w = np.where(w * col_sign[j] < 0, 0.0, w)
    return w if q is None else s * np.clip(np.rint(w / s), -q, q)


def _compensated(W, H, column):
    """Constrain ``W`` column by column, spreading each column's error over the later ones.

    Minimises ``||(W_q - W) Phi||`` for rates ``Phi`` with Gram matrix ``H``
    greedily (the optimal-brain-surgeon update, as in GPTQ): after column j
    is fixed, its error ``e`` moves the remaining columns by
    ``-e U[j, j+1:] / U[j, j]`` with ``U`` the upper Cholesky factor of ``H^-1``.
    """
    W = np.array(W, dtype=np.float64)
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    out = np.empty_like(W)
    for j in range(W.shape[1]):
        out[:, j] = column(W[:, j], j)
        err = (W[:, j] - out[:, j]) / U[j, j]
        W[:, j + 1:] -= np.outer(err, U[j, j + 1:])
    return out


class _Problem:
    """Training states and the torch drift of the full constrained network (x_perp at its fixed point)."""

    def __init__(self, model, sde, sample, n_fp):
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)  # noqa: E731
        self.E, self.D, self.B = t(model.encoders), t(model.readout), t(model.input_weights)
        self.Y = t(model.to_latent(sample.z))
        u = sample.u if model.n_inputs else None
        self.U = t(sample.u) if model.n_inputs else None
        self.F = t(sde.drift(sample.z, u))
        self.out = t(model.time_scale * model.scale / model.tau)
        self.f_norm = float((self.F ** 2).sum(1).mean())
        self.neuron, self.n_fp = model.neuron, n_fp
        self.smooth = model.neuron.name == "lif"

    def residual(self, Wq, b, rows=slice(None), smooth=False):
        """``f_net - f`` in SDE drift units at ``rows`` (x_perp after ``n_fp`` fixed-point steps)."""
        drive = b if self.U is None else b + self.U[rows] @ self.B.T
        perp = drive - (drive @ self.D.T) @ self.E.T
        base = self.Y[rows] @ self.E.T + perp
        Kq = self.D @ Wq
        Wp = Wq - self.E @ Kq
        phi = lambda x: self.neuron.phi(x, torch, smooth=smooth)  # noqa: E731
        if self.n_fp is None:  # to convergence, as LatentRNN.settle (no gradient)
            x, ok = settle_perp(base.detach().numpy(), Wp.detach().numpy(), self.neuron.phi)
            if not ok:
                return torch.full_like(self.F[rows], math.inf)
            v = torch.as_tensor(x) - base
        else:
            v = 0.0
            for _ in range(self.n_fp):
                v = phi(base + v) @ Wp.T
        dy = -self.Y[rows] + phi(base + v) @ Kq.T + drive @ self.D.T
        return dy * self.out - self.F[rows]

    def loss(self, Wq, b, rows=slice(None), smooth=False):
        """Relative squared drift error ``mean ||f_net - f||^2 / mean ||f||^2``."""
        return (self.residual(Wq, b, rows, smooth) ** 2).sum(1).mean() / self.f_norm


def _quantise(Wr, s, q):
    """``s round(clip(W_r/s, -q, q))`` with the straight-through gradient inside the clip range."""
    c = torch.clamp(Wr / s, -q, q)
    return s * (c + (torch.round(c) - c).detach())


def constrain(model, sde=None, *, bits=None, fan_in=None, sparsity=None, dale=False, refit=True, seed=0,
              steps=300, lr=0.05, batch=1024, n_train=12000, n_val=2000, n_test=5000, n_fp=8,
              records=1000, max_drift_error=0.5, progress=False):
    """Make the recurrent weights obey hardware limits; refit so the latent SDE survives.

    See the module docstring for the equations and methods.

    Parameters
    ----------
    model : LatentRNN
        A fitted model (not modified).
    sde : SDE, optional
        The target (default: rebuilt from the model's stored spec).
    bits : int, optional
        Weight bits k (2..32): integer levels in ``[-(2^(k-1)-1), 2^(k-1)-1]`` on one shared scale.
    fan_in : int, optional
        Most nonzero incoming weights per neuron (1..N).
    sparsity : float, optional
        Fraction of the N^2 weights kept, in (0, 1].
    dale : bool
        One sign per presynaptic neuron (column of W).
    refit : bool
        True: quantisation-aware refit; False: rounding (and masking) only.
    seed : int
        Seeds the target simulations, state sampling and minibatches.
    steps, lr, batch : int, float, int
        Adam steps, learning rate and minibatch size of the refit. The
        learning rate is in units of the weight step ``s`` (times
        ``2^((k-8)/2)`` below 8 bits), or of the rms weight without quantisation.
    n_train, n_val, n_test : int
        Training, validation (snapshot selection) and held-out (reported) states.
    n_fp : int
        Fixed-point iterations for ``x_perp`` inside the refit's loss.
    records : int
        Samples per trial of the two target simulations (16 trials each) behind
        the training and the held-out states.
    max_drift_error : float
        Refuse a result whose held-out relative drift error is larger.
    progress : bool

    Returns
    -------
    LatentRNN
        A new model with ``decoders = D W_q``, ``w_perp = (I - E D) W_q``, refitted
        biases and noise; ``meta["hardware"]`` records the limits, the scale, the
        levels used, the method and the held-out errors before and after.

    Raises
    ------
    DDMError
        Bad limits; a result beyond ``max_drift_error`` or unstable off the latent subspace
        (the message names the limit and suggests a looser one).
    """
    from .matching import model_errors

    _check_args(model, bits, fan_in, sparsity, dale, max_drift_error)
    for name, v, low in (("steps", steps, 0), ("batch", batch, 1), ("n_train", n_train, 100), ("n_val", n_val, 10),
                         ("n_test", n_test, 10), ("n_fp", n_fp, 0), ("records", records, 10)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise DDMError(f"{name} must be an integer >= {low} (got {v!r})")
    if sde is None:
        sde = model.sde()
    if sde.dim != model.dim or sde.n_inputs != model.n_inputs:
        raise DDMError(f"the SDE has d={sde.dim}, k={sde.n_inputs}; the model d={model.dim}, k={model.n_inputs}")
    t_start = time.perf_counter()
    seeds = np.random.SeedSequence(int(seed)).spawn(4)
    rng_train, rng_test, rng_samp = (np.random.default_rng(s) for s in seeds[:3])
    gen = torch.Generator().manual_seed(int(seeds[3].generate_state(1)[0]))

    # states: training (+ validation) and held-out, from independent runs of the target
    z_vis, u_vis, _ = visited_states(sde, rng_train, trials=16, records=records, batches=2)
    z_out, u_out, _ = visited_states(sde, rng_test, trials=16, records=records, batches=2)
    both = training_states(z_vis, u_vis, sde, model.center, model.scale, n_train + n_val, rng_samp)
    train = _Problem(model, sde, both.take(np.arange(n_train)), n_fp)
    val_rows = np.arange(n_train, n_train + n_val)
    val = _Problem(model, sde, both.take(val_rows[both.on_attractor[val_rows]]), None)
    test = held_out_states(z_out, u_out, n_test, rng_samp)
    before = model_errors(model, sde, test.z, test.u)

    # masks, Dale signs, scale
    W0 = model.weights()
    keep = _mask(W0, fan_in, sparsity)
    col_sign = np.where(np.sum(W0 * np.abs(W0) * keep, axis=0) >= 0, 1.0, -1.0)
    Wm = W0 * keep
    if dale:
        Wm = np.where(Wm * col_sign[None, :] < 0, 0.0, Wm)
    tt = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    keep_t, sign_t = tt(keep.astype(float)), tt(col_sign)
    b0 = tt(model.bias)
    q = levels(bits) if bits else None
    wmax = float(np.abs(Wm).max())
    if wmax == 0.0:
        raise DDMError(f"every weight is zero after the limits (fan_in={fan_in}, sparsity={sparsity}, "
                       f"dale={dale}); loosen them")

    def project(Wr):
        Wr = Wr * keep_t
        return torch.where(Wr * sign_t < 0, torch.zeros_like(Wr), Wr) if dale else Wr

    def quant(Wr, s):
        return project(Wr) if q is None else _quantise(project(Wr), s, q)

    def candidates(Wr):
        """``(validation loss, W_q, scale)`` of rounding ``Wr`` at each trial scale (one if unquantised)."""
        with torch.no_grad():
            scales = [None] if q is None else [frac * wmax / q for frac in SCALE_FRACTIONS]
            return [(float(val.loss(quant(Wr, s_), b0)), quant(Wr, s_), s_) for s_ in scales]

    val_round, Wq_round, s = min(candidates(tt(Wm)), key=lambda c: c[0])
    best = (val_round, Wq_round, b0, "round")

    if refit:
        # 1. compensated rounding: every neuron's recurrent input W phi kept on the training states
        with torch.no_grad():
            x = train.Y @ train.E.T + (b0 - (b0 @ train.D.T) @ train.E.T)
            if train.U is not None:
                drive = train.U @ train.B.T
                x = x + drive - (drive @ train.D.T) @ train.E.T
            phi = model.neuron.phi(x, torch).numpy()
        H = phi.T @ phi / len(phi)
        H += 0.01 * np.mean(np.diag(H)) * np.eye(len(H))
        trials = []
        for s_ in ([None] if q is None else [frac * wmax / q for frac in SCALE_FRACTIONS]):
            Wc = tt(_compensated(Wm, H, lambda w, j, s_=s_: _column(w, j, keep, col_sign, dale, s_, q)))
            with torch.no_grad():
                trials.append((float(val.loss(Wc, b0)), Wc, s_))
        v_c, Wc, s_c = min(trials, key=lambda c: c[0])
        if v_c < best[0]:
            best, s = (v_c, Wc, b0, "compensated"), s_c
    if refit and steps > 0:
        # 2. quantisation-aware refit (straight-through estimator), from the best start
        Wr = torch.nn.Parameter(best[1].clone())
        b = torch.nn.Parameter(b0.clone())
        nz = Wm[Wm != 0]
        # Adam's step in weight units: lr x the grid step, shrunk by sqrt(2) per bit below 8 (coarse grids
        # want fewer flips per step; chosen on Lorenz N = 512 with benchmarks/quantization.py)
        unit = s * min(1.0, 2.0 ** ((bits - 8) / 2)) if s is not None else float(np.sqrt(np.mean(nz ** 2)))
        opt = torch.optim.Adam([{"params": [Wr], "lr": lr * unit},
                                {"params": [b], "lr": lr * 0.02 * float(np.sqrt(np.mean(model.bias ** 2)) + 1e-3)}])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.0)
        M = len(train.Y)
        bar = tqdm(total=steps, desc=f"constrain {sde.name} N={model.n_neurons}", disable=not progress)
        for step in range(steps):
            rows = torch.randint(0, M, (min(batch, M),), generator=gen)
            loss = train.loss(quant(Wr, s), b, rows, smooth=train.smooth)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                Wr.copy_(project(Wr))
            bar.update()
            if (step + 1) % 25 == 0 or step == steps - 1:
                with torch.no_grad():
                    Wq = quant(Wr, s).detach()
                    v = float(val.loss(Wq, b.detach()))
                if v < best[0]:
                    best = (v, Wq.clone(), b.detach().clone(), "refit")
                bar.set_postfix(val_err=f"{math.sqrt(v):.2e}", round_err=f"{math.sqrt(val_round):.2e}")
        bar.close()

    _, Wq, b_new, method = best
    out = _build(model, sde, Wq.numpy(), b_new.numpy(), both.z[:300], both.u[:300])
    u_chk = test.u[:500] if model.n_inputs else None
    converged = out.settle(out.to_latent(test.z[:500]) @ out.encoders.T + out.rest_inputs(u_chk))[1]
    after = model_errors(out, sde, test.z, test.u)
    limits = ", ".join(f"{k}={v}" for k, v in (("bits", bits), ("fan_in", fan_in), ("sparsity", sparsity),
                                                ("dale", dale or None)) if v is not None)
    hint = lambda: _hint(bits, fan_in, sparsity, dale, after[0], max_drift_error)  # noqa: E731
    if not converged or not np.isfinite(after[0]):
        raise DDMError(f"unrepresentable under {limits}: the constrained network has no stable state off the "
                       f"latent subspace (x_perp does not settle); {hint()}")
    if after[0] > max_drift_error:
        raise DDMError(f"unrepresentable under {limits}: held-out drift error {100 * after[0]:.0f} % after "
                       f"{'quantisation-aware refit' if refit else 'rounding only'} (limit "
                       f"{100 * max_drift_error:.0f} %); {hint()}")
    Wfin = Wq.numpy()  # the chip's matrix (out.weights() reassembles it to rounding)
    hw = {"bits": bits, "scale": s, "max_level": q, "fan_in": fan_in, "sparsity": sparsity, "dale": bool(dale),
          "method": method, "refit_requested": bool(refit), "steps": int(steps) if refit else 0, "seed": int(seed),
          "drift_error_before": before[0], "diffusion_error_before": before[1],
          "drift_error": after[0], "diffusion_error": after[1],
          "validation_drift_error_round": math.sqrt(val_round),
          "nonzero_weights": int(np.count_nonzero(np.rint(Wfin / s) if s else Wfin)),
          "max_fan_in": int(np.max(np.count_nonzero(np.rint(Wfin / s) if s else Wfin, axis=1))),
          "wall_time_s": time.perf_counter() - t_start}
    if s:
        lv = np.unique(np.rint(Wfin / s))
        hw["levels_used"] = int(len(lv))
        hw["level_range"] = [int(lv.min()), int(lv.max())]
    out.meta["hardware"] = hw
    return out


def _build(model, sde, Wq, b, z_noise, u_noise):
    """The constrained LatentRNN: ``K' = D W_q``, ``W_perp = W_q - E K'``, noise refitted for ``K'``."""
    out = copy.deepcopy(model)
    K = model.readout @ Wq
    out.decoders, out.w_perp, out.bias = K, Wq - model.encoders @ K, np.asarray(b, dtype=np.float64)
    out.meta.pop("model_id", None)
    refit_noise(out, sde, z_noise, u_noise)
    return out


def _hint(bits, fan_in, sparsity, dale, err, limit):
    """What to loosen: the next bit width estimated from the error halving per bit, or the other limits."""
    parts = []
    if bits and math.isfinite(err) and math.isfinite(limit) and err > limit:
        extra = max(1, math.ceil(math.log2(err / limit)))
        parts.append(f"use >= {min(32, bits + extra)} bits (estimate: the error about halves per extra bit)")
    elif bits:
        parts.append(f"use more than {bits} bits")
    if fan_in is not None:
        parts.append("a larger fan-in")
    if sparsity is not None:
        parts.append("a larger sparsity fraction")
    if dale:
        parts.append("no Dale's law")
    return "loosen: " + ", ".join(parts)


def constrain_summary(model_before, model_after, bits, fan_in, sparsity, dale, path=None):
    """What :func:`constrain` did, as printed lines: the limits, the weights, the errors before and after.

    Parameters
    ----------
    model_before : LatentRNN
        The model as given.
    model_after : LatentRNN
        :func:`constrain`'s result (``meta["hardware"]``).
    bits, fan_in, sparsity, dale
        The limits applied (after a preset's values are filled in).
    path : str or Path, optional
        Where the result was written (said on the last line).

    Returns
    -------
    str
    """
    h = model_after.meta["hardware"]
    limits = ", ".join(f"{k}={v}" for k, v in (("bits", bits), ("fan-in", fan_in), ("sparsity", sparsity),
                                                ("dale", dale or None)) if v is not None)
    lines = [f"constrained {model_before.meta.get('sde_name')} N={model_before.n_neurons}: {limits} "
             f"({'quantisation-aware refit' if h['method'] == 'refit' else 'rounding only'})"]
    if h["bits"]:
        lines.append(f"  weights: {h['levels_used']} integer levels in [{h['level_range'][0]}, {h['level_range'][1]}] "
                     f"x scale {h['scale']:.4g}; {h['nonzero_weights']} nonzero, fan-in <= {h['max_fan_in']}")
    else:
        lines.append(f"  weights: {h['nonzero_weights']} nonzero, fan-in <= {h['max_fan_in']}")
    lines.append(f"  held-out drift error     {100 * h['drift_error_before']:.3f} % -> {100 * h['drift_error']:.3f} %")
    lines.append(f"  held-out diffusion error {100 * h['diffusion_error_before']:.3f} % -> "
                 f"{100 * h['diffusion_error']:.3f} %")
    lines.append(f"  wall time {h['wall_time_s']:.1f} s" + (f"; wrote {path}" if path else ""))
    return "\n".join(lines)
