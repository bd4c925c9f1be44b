"""Options of the library's operations as a user gives them, declared as data next to each operation.

An option is a row ``(flags [METAVAR], kind, default, help[, keyword])``:

* ``flags``: as the command line spells them (``"--spike-budget RATIO"``,
  ``"-o,--output"``; a bare name is a positional argument). The keyword the
  option fills is its last flag's name, ``-`` read as ``_``, unless the row
  names it (:func:`keyword`).
* ``kind``: how a text is read: a converter (``int``, :data:`SEED`,
  :data:`SPAN`, ...), a tuple of choices, :data:`FLAG` (on when given),
  :data:`SWITCH` (``--x`` on, ``--no-x`` off, else the default) or :data:`APPEND` (repeatable).
* ``default``: the value when it is not given; :data:`REQUIRED`: it must be.
* ``help``: one line.

Each operation declares its options next to its code (:data:`ddm_neuro.fit.options.FIT`,
:data:`ddm_neuro.spiking.calibration.OPTIONS`, :data:`ddm_neuro.verify.options.OPTIONS`, ...),
so a default or a help line is written once, where what it governs is;
``ddm-neuro`` builds its flags from these rows (:func:`add_arguments`) and
reads the given values back by keyword (:func:`values`).
"""
from __future__ import annotations

import argparse
import math

#: ``kind`` of an option that is on when given; of one turned on or off (``--x``, ``--no-x``); of one that may
#: be given several times; ``default`` of one that must be given.
FLAG, SWITCH, APPEND, REQUIRED = "flag", "switch", "append", "required"


def integer(least):
    """Converter: an integer ``>= least`` (raises :class:`argparse.ArgumentTypeError` saying why not)."""
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
        return value
    return convert


def positive(kind):
    """Converter: a finite ``kind`` (int or float) ``> 0`` (raises :class:`argparse.ArgumentTypeError`)."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value
    return convert


def rates(text):
    """Converter: ``"LOW,HIGH"`` (Hz) -> ``(low, high)``."""
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in Hz, e.g. 200,400 (got {text!r})") from None
    return lo, hi


#: A seed or step count (integer >= 0), a thread count (>= 1), a count (> 0), a span of time or a size (> 0).
SEED, THREADS, COUNT, SPAN = integer(0), integer(1), positive(int), positive(float)


def keyword(row):
    """The keyword an option row fills: its fifth item, else its last flag (``--spike-budget``: ``spike_budget``)."""
    return row[4] if len(row) > 4 else row[0].split(" ")[0].split(",")[-1].lstrip("-").replace("-", "_")


def values(rows, given):
    """The values of ``rows``' options found as attributes of ``given`` (a parsed namespace), by keyword."""
    return {keyword(row): getattr(given, keyword(row)) for row in rows}


def add_arguments(parser, rows):
    """Declare ``rows`` to an :class:`argparse.ArgumentParser` (positional rows by name, the others by flags).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    rows : list of tuple
        Option rows (see the module docstring).
    """
    for row in rows:
        names, _, metavar = row[0].partition(" ")
        kind, default = row[1], row[2]
        kw = {"help": row[3], "metavar": metavar or None}
        if names.startswith("-"):
            kw["dest"] = keyword(row)
        if kind in (FLAG, SWITCH, APPEND):
            kw["action"] = {FLAG: "store_true", SWITCH: argparse.BooleanOptionalAction, APPEND: "append"}[kind]
        elif isinstance(kind, tuple):
            kw["choices"] = kind
        elif kind is not str:
            kw["type"] = kind
        if default == REQUIRED:
            kw["required"] = True
        elif default is not None:
            kw["default"] = default
        parser.add_argument(*names.split(","), **{k: v for k, v in kw.items() if v is not None})
