r"""Pass multiples: a metric passes when ``value <= multiple x baseline``.

The multiples were chosen by measurement (``benchmarks/verify_calibration.py``,
results in ``benchmarks/RESULTS_verify.md``): over many target-vs-target pairs
the ratio ``value / baseline`` of each metric was recorded and the multiple set
near its 99th percentile, so that with up to seven metrics the whole report
raises a false alarm in about 5 % of correct trajectories or fewer; the same
script measures the detection rate on deliberately wrong models.

Three kinds of baseline are used:

* *exact null* (drift and diffusion, :mod:`.increments`): the squared metric of a
  trajectory of the target is a scaled :math:`\chi^2_\nu` whose scale is known
  from the propagated target increments themselves, so the baseline is its exact
  null RMS and the multiple the square root of :math:`\chi^2_\nu`'s ``1 - LEVEL``
  quantile over :math:`\nu` (:func:`chi2_multiple`). Nothing in it depends on the
  verifier's seed beyond the propagations' own (small) noise. The reference runs
  check it (:func:`null_consistent`); where they contradict it (a read-out whose
  increments are not those of a Markov process, for instance), the baseline is the
  references' RMS with the :func:`f_multiple` as below;
* *pair* metrics (stationary distance, autocorrelation): the
  baseline is the RMS of the metric over independent target runs, so its
  sampling noise is that of a sum of many squared terms;
* *scalar* statistics (rotation, entropy production, switching rate): the
  value is the distance to the mean of the reference runs and the baseline
  the expected RMS difference between two independent target runs,
  :math:`\sqrt{2 s^2}`, with the one-run variance :math:`s^2` pooled from
  block (trial or chunk) variances of all reference runs and their spread
  (:mod:`.extras`); the single pair difference is reported as
  ``baseline_pair``. The Lyapunov exponent keeps two reference sets of starts
  and a plain multiple.
"""
import numpy as np

#: Per-metric false-alarm level the multiples aim at.
LEVEL = 0.01

#: multiple of the baseline per metric (drift and diffusion: see :func:`f_multiple`).
MULTIPLES = {
    "stationary": 3.0,
    "autocorrelation": 2.5,
    "lyapunov": 3.5,
}


#: Scalar statistics: pass within this many null standard deviations of the value.
SCALAR_Z = 3.5


def scalar_multiple(name, n_ref, z=SCALAR_Z):
    r"""Multiple of the baseline :math:`\sqrt{2}s` for a scalar statistic compared with the
    mean of ``n_ref`` reference runs, whose null RMS is :math:`s\sqrt{1 + 1/n_{ref}}`:
    ``z sqrt((1 + 1/n_ref) / 2)``."""
    return float(z * np.sqrt((1.0 + 1.0 / n_ref) / 2.0))


def chi2_multiple(dof, level=LEVEL):
    r"""Multiple for a metric whose square is, under the null, exactly a scaled :math:`\chi^2_\nu`
    with known scale (the baseline is its null RMS): :math:`\sqrt{\chi^2_{\nu, 1-\alpha}/\nu}`."""
    from scipy.stats import chi2

    dof = max(int(dof), 1)
    return float(np.sqrt(chi2.ppf(1.0 - level, dof) / dof))


#: Level at which the reference runs are taken to contradict an exact null (:func:`null_consistent`).
CHECK_LEVEL = 0.001


def null_consistent(ratios, dof, level=CHECK_LEVEL):
    r"""Do the reference runs agree with an exact null?

    ``ratios``: for each reference run, its squared metric over its null
    expectation; under the null each is :math:`\chi^2_\nu/\nu`, so their mean
    is :math:`\chi^2_{R\nu}/(R\nu)`. True unless the mean exceeds that law's
    ``1 - level`` quantile.
    """
    from scipy.stats import chi2

    ratios = np.asarray(ratios, dtype=np.float64)
    n = max(int(dof), 1) * len(ratios)
    return bool(np.all(np.isfinite(ratios)) and ratios.mean() <= chi2.ppf(1.0 - level, n) / n)


def chi2_value_se(value, baseline, dof):
    r"""Standard error of a metric whose square is a scaled non-central :math:`\chi^2_\nu(\lambda)`.

    With :math:`X = \nu\,(\text{value}/\text{baseline})^2` and
    :math:`\hat\lambda = \max(X - \nu, 0)`, :math:`\operatorname{Var} X = 2(\nu + 2\hat\lambda)`
    and the delta method gives :math:`\text{se} = \text{baseline}\,\sqrt{2(\nu + 2\hat\lambda)}
    / (2\sqrt{\nu\max(X, 1)})`: the spread of the value over runs of the same length.
    """
    if not (np.isfinite(value) and baseline > 0):
        return float("nan")
    dof = max(int(dof), 1)
    X = dof * (value / baseline) ** 2
    lam = max(X - dof, 0.0)
    return float(baseline * np.sqrt(2.0 * (dof + 2.0 * lam)) / (2.0 * np.sqrt(dof * max(X, 1.0))))


def f_multiple(dof, n_ref, level=LEVEL):
    r"""Multiple for a chi-square-like metric with ``dof`` degrees of freedom.

    The squared drift (diffusion) error is, under the null, a scaled
    :math:`\chi^2_\nu` with :math:`\nu` = cells x d (cells x d(d+1)/2), and the
    squared baseline the mean of ``n_ref`` independent copies, so
    ``(value / baseline)^2`` follows :math:`F(\nu, n_{ref}\nu)`; the multiple is
    the square root of its ``1 - level`` quantile.
    """
    from scipy.stats import f

    dof = max(int(dof), 1)
    return float(np.sqrt(f.ppf(1.0 - level, dof, n_ref * dof)))
