r"""The verification report: metrics beside their baselines, a table, ``report.json``.

Every metric carries ``value`` (trajectory vs target), ``baseline`` (the RMS
size of the same metric between independent simulations of the target SDE with
the trajectory's length, trials and sampling), ``threshold`` (``multiple x
baseline``, see :mod:`.thresholds`) and ``passed`` (``value <= threshold``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DDMError
from ..fileio import atomic_write, check_output


def _clean(x):
    """JSON-safe copy: numpy to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
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

    def add(self, name, value, baseline, multiple, description, floor=0.0, **extra):
        """Add a metric judged by ``value <= max(multiple * baseline, floor)``."""
        threshold = max(multiple * baseline, floor)
        ok = bool(np.isfinite(value) and value <= threshold)
        self.metrics[name] = {"value": float(value), "baseline": float(baseline), "threshold": float(threshold),
                              "passed": ok, "multiple": float(multiple), "description": description, **extra}

    def to_dict(self):
        """The JSON content (DESIGN §4)."""
        return _clean({"passed": self.passed, "metrics": self.metrics, "info": self.info})

    def table(self):
        """A readable table, one metric per line, and the verdict."""
        rows = [("metric", "value", "baseline", "threshold", "result")]
        for name, m in self.metrics.items():
            rows.append((name, f"{m['value']:.4g}", f"{m['baseline']:.4g}", f"{m['threshold']:.4g}",
                         "pass" if m["passed"] else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        i = self.info
        head = (f"verify {i.get('system', '?')}: {i.get('trials')} trial(s) x {i.get('duration', 0):.4g} time units, "
                f"dt = {i.get('dt', 0):.4g}, lag = {i.get('delta', 0):.4g}, "
                f"baseline = {i.get('n_reference')} target runs")
        notes = [f"note: {n}" for n in i.get("notes", [])]
        verdict = "PASSED" if self.passed else \
            "FAILED: " + ", ".join(n for n, m in self.metrics.items() if not m["passed"])
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
