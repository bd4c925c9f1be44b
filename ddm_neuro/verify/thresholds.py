r"""Pass multiples: a metric passes when ``value <= multiple x baseline``.

The multiples were chosen by measurement (``benchmarks/verify_calibration.py``,
results in ``benchmarks/RESULTS_verify.md``): over many target-vs-target pairs
the ratio ``value / baseline`` of each metric was recorded and the multiple set
near its 99th percentile, so that with up to seven metrics the whole report
raises a false alarm in about 5 % of correct trajectories or fewer; the same
script measures the detection rate on deliberately wrong models.

Two kinds of baseline are used:

* *pair* metrics (drift, diffusion, stationary distance, autocorrelation): the
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
