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
