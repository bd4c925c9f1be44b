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
* *scalar* statistics (Lyapunov exponent, rotation, entropy production,
  switching rate): the baseline is the expected RMS difference between two
  independent target runs, :math:`\sqrt{\mathrm{SE}_1^2 + \mathrm{SE}_2^2}`,
  from block (trial) standard errors, because a single difference of two
  scalars is too noisy a yardstick; the single pair difference is reported as
  ``baseline_pair``.
"""

#: multiple of the baseline per metric.
MULTIPLES = {
    "drift": 1.5,
    "diffusion": 1.5,
    "stationary": 3.0,
    "autocorrelation": 2.5,
    "lyapunov": 3.0,
    "switching_rate": 3.0,
    "rotation": 3.0,
    "entropy_production": 3.0,
}
