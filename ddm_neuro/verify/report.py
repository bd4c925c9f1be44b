r"""The verification report: metrics beside their baselines, a table, ``report.json``.

Every metric carries ``value`` (trajectory vs target), ``baseline`` (the RMS
size of the same metric between independent simulations of the target SDE with
the trajectory's length, trials and sampling: measured on reference runs, or its
exact null expectation where the metric has one, :mod:`.thresholds`),
``threshold`` (``multiple x baseline``) and ``passed`` (``value <= threshold``).

A metric also carries ``value_se`` (the standard error of the value: how much it
would move in another run of the same length) and ``threshold_se`` (how much the
threshold moves with the verifier's own seed, 0 where it is exact). It is
*marginal* when

.. math:: |\text{value} - \text{threshold}| < \sqrt{\text{value\_se}^2 + \text{threshold\_se}^2}:

its verdict is within its own noise of the threshold, so another run (or another
verifier seed) may give the other verdict; the report says to run longer or
repeat. A marginal metric is still passed or failed by ``value <= threshold``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DDMError
from ..fileio import atomic_write, check_output


def clean(x):
    """JSON-safe copy of ``x``: numpy to Python, non-finite floats to None (dicts and sequences recursively).

    Parameters
    ----------
    x : object

    Returns
    -------
    object
    """
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


@dataclass
class Report:
    """Result of :func:`ddm_neuro.verify.verify`.

    Attributes
    ----------
    metrics : dict
        ``{name: {"value", "baseline", "threshold", "passed", "multiple", "description", ...}}``.
    info : dict
        System, lag, lengths, seed, timings, notes about skipped statistics.
    data : dict
        Arrays for the figures (not written to ``report.json``).
    """

    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    @property
    def passed(self):
        """True when every metric passes."""
        return all(m["passed"] for m in self.metrics.values())

    @property
    def marginal(self):
        """Names of the metrics whose verdict is within their own noise of the threshold (module docstring)."""
        return [n for n, m in self.metrics.items() if m.get("marginal")]

    def add(self, name, value, baseline, multiple, description, floor=0.0, value_se=None, threshold_se=0.0,
            **extra):
        """Add a metric judged by ``value <= max(multiple * baseline, floor)``.

        ``value_se`` and ``threshold_se`` (standard errors of the value and of the
        threshold) decide whether the verdict is marginal (module docstring); without
        ``value_se`` it is not.
        """
        threshold = max(multiple * baseline, floor)
        ok = bool(np.isfinite(value) and value <= threshold)
        m = {"value": float(value), "baseline": float(baseline), "threshold": float(threshold),
             "passed": ok, "multiple": float(multiple), "description": description}
        if value_se is not None:
            noise = math.hypot(float(value_se), float(threshold_se or 0.0))
            m.update(value_se=float(value_se), threshold_se=float(threshold_se or 0.0),
                     marginal=bool(np.isfinite(value) and np.isfinite(noise) and abs(value - threshold) < noise))
        m.update(extra)
        self.metrics[name] = m

    def marginal_notes(self):
        """One line per marginal metric: where it stands and what to do."""
        out = []
        for n in self.marginal:
            m = self.metrics[n]
            out.append(f"{n} is within its own noise of the threshold ({m['value']:.4g} ± {m['value_se']:.2g} "
                       f"against {m['threshold']:.4g}" + (f" ± {m['threshold_se']:.2g}" if m["threshold_se"] else "")
                       + f"; {'passed' if m['passed'] else 'failed'} by {abs(m['value'] - m['threshold']):.2g}): "
                       "run longer (--duration) or more trials and verify again")
        return out

    def to_dict(self):
        """The JSON content (DESIGN §4)."""
        return clean({"passed": self.passed, "marginal": self.marginal, "metrics": self.metrics,
                       "info": {**self.info, "marginal_notes": self.marginal_notes()}})

    def table(self):
        """A readable table, one metric per line, and the verdict."""
        rows = [("metric", "value", "baseline", "threshold", "result")]
        for name, m in self.metrics.items():
            rows.append((name, f"{m['value']:.4g}", f"{m['baseline']:.4g}", f"{m['threshold']:.4g}",
                         ("pass" if m["passed"] else "FAIL") + (" (marginal)" if m.get("marginal") else "")))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        i = self.info
        head = (f"verify {i.get('system', '?')}: {i.get('trials')} trial(s) x {i.get('duration', 0):.4g} time units, "
                f"dt = {i.get('dt', 0):.4g}, lag = {i.get('delta', 0):.4g}, "
                f"baseline = {i.get('n_reference')} target runs")
        notes = [f"note: {n}" for n in i.get("notes", [])] + [f"marginal: {n}" for n in self.marginal_notes()]
        verdict = "PASSED" if self.passed else \
            "FAILED: " + ", ".join(n for n, m in self.metrics.items() if not m["passed"])
        if self.marginal:
            verdict += f" (marginal: {', '.join(self.marginal)})"
        return "\n".join([head, *lines, *notes, verdict])

    def save(self, report_dir, traj=None, force=False):
        """Write ``report.json`` and PNG figures into ``report_dir`` (created if needed).

        Returns
        -------
        list of Path
            The files written.
        """
        report_dir = Path(report_dir)
        if report_dir.exists() and not report_dir.is_dir():
            raise DDMError(f"{report_dir}: exists and is not a folder")
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DDMError(f"{report_dir}: cannot create report folder: {exc.strerror}") from None
        check_output(report_dir / "report.json", force)
        from .figures import write_figures

        written = write_figures(self, report_dir, traj=traj, force=force)
        with atomic_write(report_dir / "report.json", force=force, mode="w") as fh:
            json.dump(self.to_dict(), fh, indent=2)
        return [report_dir / "report.json", *written]
