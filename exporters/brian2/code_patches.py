r"""Edits to the C++ that Brian2 generates for a standalone project, made before it is compiled.

Needs only the standard library (an exported project carries this file beside
``network.py``). Each edit looks for exactly the code Brian2 2.8-2.9 writes and
leaves a file it does not recognise untouched, so an unknown Brian2 version
builds Brian2's own code (correct, only slower or with the old clock test).

* :func:`relative_clock_epsilon` -- the scheduler's test for simultaneous clocks
  becomes relative to dt (see :data:`CLOCK_TEST`).
* :func:`parallel_summed_variables` -- with OpenMP (K > 1 threads) a summed
  variable's sum over synapses is split over the threads. Brian2's
  ``summed_variable`` template runs that loop on one thread, and the rate
  network's N -> d decode is such a sum every step, so two threads ran the rate
  network only 1.4x faster than one while its neurons alone ran 1.9x faster.
  Each thread sums a fixed contiguous block of synapses into its own partial
  array; the partials are then added per target in thread order. The result is
  therefore the same on every run of a K-thread build (the order of the
  additions is fixed by K), and differs from the serial sum only by rounding.
"""
from __future__ import annotations

import os
import re

#: Brian2's C++ scheduler treats two clocks as simultaneous when their times differ by at most
#: 1e-14 s (absolute); after ~50 s of network time ``i*dt`` and ``j*record_dt`` differ by more
#: through rounding and the recording falls one step late. Its runtime device compares
#: relative to dt; the generated code is given a relative test as well.
CLOCK_TEST = ("fabs(s-t)<=Clock_epsilon", "fabs(s-t)<=1e-9*minclock->dt[0]")


def relative_clock_epsilon(directory):
    """Make the generated scheduler's clock comparison relative (see :data:`CLOCK_TEST`).

    Parameters
    ----------
    directory : str or path
        A generated ``cpp_standalone`` or ``cuda_standalone`` project.
    """
    for fname in ("network.cpp", "network.cu"):
        path = os.path.join(directory, fname)
        if os.path.exists(path):
            with open(path) as fh:
                code = fh.read()
            if CLOCK_TEST[0] in code:
                with open(path, "w") as fh:
                    fh.write(code.replace(CLOCK_TEST[0], CLOCK_TEST[1]))


#: The serial synapse loop of Brian2's ``summed_variable.cpp`` as generated: the loop bound, the body
#: (the vector code, which only reads), and the accumulation ``target[post[_idx]] += _synaptic_var;``.
_SUMMED_LOOP = re.compile(
    r"(?P<indent>[ \t]*)for\(int _idx=0; _idx<(?P<n>[^;]+); _idx\+\+\)\n"
    r"[ \t]*\{\n"
    r"(?P<body>(?:(?![ \t]*\}\n)[^\n]*\n)*?)"
    r"[ \t]*(?P<target>_ptr_array_\w+)\[(?P<index>_ptr_array_\w+)\[_idx\]\] \+= _synaptic_var;\n"
    r"[ \t]*\}\n")

#: The template's zeroing of the target, which must start at index 0 (no subgroup target).
_ZEROING = re.compile(r"\[_target_idx \+ 0\] = 0;")

_PARALLEL_LOOP = """\
{indent}// split over the OpenMP threads by ddm_neuro (exporters/brian2/code_patches.py): each thread sums
{indent}// a fixed block of synapses into its own partial array, then the partials are added in thread order
{indent}{{
{indent}    const int _ddm_n_syn = {n};
{indent}    const size_t _ddm_stride = ((size_t)_target_size + 15) / 8 * 8;   // own cache lines per thread
{indent}    static std::vector<double> _ddm_partial;
{indent}    _ddm_partial.assign((size_t)omp_get_max_threads() * _ddm_stride + 8, 0.0);
{indent}    #pragma omp parallel
{indent}    {{
{indent}        const int _ddm_thr = omp_get_thread_num(), _ddm_nthr = omp_get_num_threads();
{indent}        double* const _ddm_mine = &_ddm_partial[(size_t)_ddm_thr * _ddm_stride];
{indent}        const int _ddm_lo = (int)(((long long)_ddm_n_syn * _ddm_thr) / _ddm_nthr);
{indent}        const int _ddm_hi = (int)(((long long)_ddm_n_syn * (_ddm_thr + 1)) / _ddm_nthr);
{indent}        for(int _idx=_ddm_lo; _idx<_ddm_hi; _idx++)
{indent}        {{
{body}{indent}            _ddm_mine[{index}[_idx]] += _synaptic_var;
{indent}        }}
{indent}        #pragma omp barrier
{indent}        #pragma omp for schedule(static)
{indent}        for (int _ddm_t=0; _ddm_t<_target_size; _ddm_t++)
{indent}        {{
{indent}            double _ddm_sum = 0.0;
{indent}            for (int _ddm_k=0; _ddm_k<_ddm_nthr; _ddm_k++)
{indent}                _ddm_sum += _ddm_partial[(size_t)_ddm_k * _ddm_stride + _ddm_t];
{indent}            {target}[_ddm_t] += _ddm_sum;
{indent}        }}
{indent}    }}
{indent}}}
"""

#: Marker of a file already edited (a second call leaves it as it is).
PARALLEL_MARK = "split over the OpenMP threads by ddm_neuro"


def parallel_summed_variables(directory):
    """Split the synapse loops of a project's summed variables over its OpenMP threads.

    Only for projects built with OpenMP (``#pragma omp`` in the code object);
    a code object whose loop or zeroing does not look exactly as expected is
    left as Brian2 wrote it (serial, still correct).

    Parameters
    ----------
    directory : str or path
        A generated ``cpp_standalone`` project (``code_objects/`` inside).

    Returns
    -------
    list of str
        The code objects edited (file names).
    """
    folder = os.path.join(directory, "code_objects")
    if not os.path.isdir(folder):
        return []
    edited = []
    for fname in sorted(os.listdir(folder)):
        if "summed_variable" not in fname or not fname.endswith(".cpp"):
            continue
        path = os.path.join(folder, fname)
        with open(path) as fh:
            code = fh.read()
        if PARALLEL_MARK in code or "#pragma omp" not in code or not _ZEROING.search(code):
            continue
        loops = list(_SUMMED_LOOP.finditer(code))
        if len(loops) != 1:
            continue
        m = loops[0]
        body = "".join("        " + ln + "\n" if ln.strip() else "\n" for ln in m["body"].splitlines())
        new = _PARALLEL_LOOP.format(indent=m["indent"], n=m["n"], body=body, target=m["target"],
                                    index=m["index"])
        code = "#include <vector>\n#include <omp.h>\n" + code[:m.start()] + new + code[m.end():]
        with open(path, "w") as fh:
            fh.write(code)
        edited.append(fname)
    return edited
