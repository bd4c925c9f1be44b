"""What the example scripts share: their command line, the smoke-run fit sizes, figure saving."""
import argparse

#: Fit sizes of a ``--quick`` smoke run (closed form only, few states): fast, not a measurement.
QUICK_FIT = dict(steps=0, n_train=3000, n_val=1000, n_test=500, n_noise=100)


def parse_args(doc, default_out, argv=None, extra=None):
    """``--out DIR``, ``--quick``, ``--force`` (plus what ``extra(parser)`` adds); returns the parsed args."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if extra is not None:
        extra(ap)
    ap.add_argument("--out", default=default_out, help=f"output folder (created; default {default_out})")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    ap.add_argument("--force", action="store_true", help="replace an existing output folder")
    return ap.parse_args(argv)


def fit_options(args):
    """Extra :func:`ddm_neuro.fit.fit` settings for this run (smaller for ``--quick``)."""
    return dict(QUICK_FIT) if args.quick else {}


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg back end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path):
    """Lay out, write (PNG, 110 dpi) and close ``fig``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def fit_and_save(sde, n, out, small, where=""):
    """Fit ``sde`` with ``n`` tanh neurons (seed 0), print its held-out errors, save ``out/model.ddm``."""
    from ddm_neuro.fit.matching import fit

    print(f"== fit {sde.name}: N = {n} tanh neurons, seed 0")
    model = fit(sde, n_neurons=n, seed=0, progress=False, **small)
    f = model.meta["fit"]
    print(f"   held-out drift error {f['drift_error']:.2%}{where}, diffusion error {f['diffusion_error']:.2%}, "
          f"T = {model.time_scale:.3g} s per time unit, fit {f['wall_time_s']:.1f} s")
    model.save(out / "model.ddm")
    return model


def run(main):
    """Run ``main()`` as a script: its return value is the exit status; a DDMError is one line and exit 2."""
    import sys

    from ddm_neuro.errors import DDMError

    try:
        sys.exit(main())
    except DDMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
