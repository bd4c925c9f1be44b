"""Output of ``analyze``: a readable table, the JSON document, and a report folder."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DDMError
from ..fileio import atomic_write
from ..verify.report import clean  # numpy -> JSON-safe Python (non-finite floats -> null)


def to_json(analysis):
    """The JSON document of an :class:`~.core.Analysis` (a string)."""
    return json.dumps(clean(analysis.results), indent=2)


def _fmt(x, se=None):
    if x is None:
        return "-"
    return f"{x:.4g}" if se is None else f"{x:.4g} ± {se:.2g}"


def table(analysis):
    """A readable summary, one quantity per line."""
    r = analysis.results
    s, m = r["settings"], r["model"]
    lines = [f"analyze {r['system']}: N={m['n_neurons']} {m['neuron']} neurons"
             + (f" ({m['constraint']} W)" if m.get("constraint") else "")
             + f"; runs of {s['trials']} trial(s) x {s['duration']:g} time units, dt = {s['dt']:.3g}"]
    lines.append("")
    lines.append("connectivity W = W_s + W_a (W_s = (W + W^T)/2, W_a = (W - W^T)/2)")
    lines.append(f"  {'':<15}{'||W_a||/||W||':>14}{'leak':>16}{'symmetric':>16}{'antisymmetric':>16}")
    lines.append(f"  {'':<15}{'':>14}{'latent drift share (projection / rms ratio)':>48}")
    for name, c in r["connectivity"].items():
        sh = c["drift_shares"]
        cells = [f"{sh[p]['projection_share']:.3f} / {sh[p]['rms_ratio']:.3f}" for p in ("leak", "symmetric",
                                                                                       "antisymmetric")]
        lines.append(f"  {name:<15}{c['asymmetry']:>14.3g}" + "".join(f"{x:>16}" for x in cells))
    planes = [f"{a}/{b}" for i, a in enumerate(r["variables"]) for b in r["variables"][i + 1:]]
    if planes:
        lines.append(f"  latent vorticity (d_i f_j - d_j f_i)/2, mean over visited states, "
                     f"per plane {', '.join(planes)}:")
        for name, c in r["connectivity"].items():
            v = c["vorticity"]
            cells = ", ".join(f"{p} {v[p][0]:.3g}" if len(planes) == 1 else f"{p} {[round(x, 3) for x in v[p]]}"
                              for p in ("total", "symmetric", "antisymmetric"))
            lines.append(f"    {name:<15}{cells}")
    if "symmetric_fit" in r:
        f = r["symmetric_fit"]
        lines.append(f"  symmetric fit: held-out drift error {100 * f['drift_error']:.2f} % "
                     f"(network: {100 * (m['drift_error'] or float('nan')):.2f} %), max |W - W^T| = "
                     f"{f['max_asymmetry']:.2g}")
    if "entropy_production_rate" in r:
        e = r["entropy_production_rate"]
        lines.append("")
        lines.append("entropy production rate (per SDE time unit; ± block standard error)")
        if e.get("undefined"):
            lines.append("  undefined (see the note below: the diffusion is singular)")
        elif e.get("closed_form") is not None:
            lines.append(f"  {'closed form':<28}{_fmt(e['closed_form'])}")
        if not e.get("undefined"):
            lines.append(f"  {'target':<28}{_fmt(e['target'], e['target_stderr'])}   (runs "
                         f"{e['target_runs'][0]:.4g}, {e['target_runs'][1]:.4g})")
            lines.append(f"  {'target vs target |A - B|':<28}{_fmt(e['baseline'])}   (expected spread "
                         f"{e['baseline_spread']:.2g}: what 'no difference' looks like)")
            lines.append(f"  {'network':<28}{_fmt(e['network'], e['network_stderr'])}")
        if "symmetric_fit" in e and not e.get("undefined"):
            lines.append(f"  {'network, symmetric W':<28}{_fmt(e['symmetric_fit'], e['symmetric_fit_stderr'])}")
        ro = r["rotation"]
        lines.append("mean rotation rate per plane (Stratonovich)")
        for i, plane in enumerate(ro["planes"]):
            row = f"  {'/'.join(plane):<8} target {_fmt(ro['target'][i], ro['target_stderr'][i])}, " \
                  f"network {_fmt(ro['network'][i], ro['network_stderr'][i])}"
            if "symmetric_fit" in ro:
                row += f", symmetric {_fmt(ro['symmetric_fit'][i], ro['symmetric_fit_stderr'][i])}"
            lines.append(row)
        lines.append("drift = reversible (D grad log p / 2 + div D / 2) + irreversible (current / p), "
                     "on visited states")
        lines.append(f"  {'':<15}{'reversible':>12}{'irreversible':>14}{'EPR from field':>16}")
        for name, dcm in r["decomposition"].items():
            lines.append(f"  {name:<15}{dcm['reversible_share']:>12.3f}{dcm['irreversible_share']:>14.3f}"
                         f"{_fmt(dcm['entropy_production_field']):>16}")
    if "switching" in r:
        sw = r["switching"]
        p = sw["protocol"]
        lines.append("")
        lines.append(f"cue pulses ({p['n_pulses']} x {p['width']:g} at |u| = {p['amplitude']:g}, gap {p['gap']:g}): "
                     "state in the cued well afterwards")
        for name in ("target", "network"):
            x = sw[name]
            lines.append(f"  {name:<8} {x['rate']:.3f} ± {x['se']:.2g} of {x['n']} pulses; "
                         f"switches {x['switch_rate']:.3f} ± {x['switch_se']:.2g} of {x['n_moved']}")
    lines += [f"note: {n}" for n in r["notes"]]
    return "\n".join(lines)


def check_report_folder(folder, force=False):
    """Refuse a report folder that is a file, or that holds report files, unless ``force``."""
    from .figures import FIGURES

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DDMError(f"{folder}: exists and is not a folder")
    for name in ["analysis.json", *FIGURES]:
        if (folder / name).exists() and not force:
            raise DDMError(f"{folder / name}: already exists (use --force to overwrite)")
    return folder


def save_report(analysis, folder, force=False):
    """Write ``analysis.json`` and the PNG figures into ``folder`` (created if needed).

    Nothing is overwritten without ``force``; the figures are written first and
    ``analysis.json`` last, each atomically.

    Returns
    -------
    list of Path
    """
    from .figures import write_figures

    folder = check_report_folder(folder, force)  # refuse before writing anything
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DDMError(f"{folder}: cannot create the report folder: {exc.strerror}") from None
    written = write_figures(analysis, folder, force=force)
    with atomic_write(folder / "analysis.json", force=force, mode="w") as fh:
        fh.write(to_json(analysis))
    return [folder / "analysis.json", *written]
