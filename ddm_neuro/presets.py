"""Published limits of neuromorphic chips, as presets for hardware-constrained models.

Each preset gives the weight resolution, the neurons per core, where the
vendor states one the fan-in per neuron, and where the chip is a single core
its total neuron count (``max_neurons``; None: many chips can be tiled). Used by the hardware constraints
(quantisation, fan-in caps) and by the core partitioning of the graph export.
Figures are from the vendors' published specifications:

* ``loihi`` — Intel Loihi (Davies et al., IEEE Micro 2018): 1024 neurons per
  core (compartments), synaptic weights up to 8 bits (signed, shared exponent).
* ``loihi2`` — Intel Loihi 2 (Intel Lava docs, 2021): 8-bit weights in the
  default dense mode, up to 8192 neurons per core.
* ``xylo`` — SynSense Xylo (Rockpool docs): 8-bit weights, about 1000 hidden
  neurons on the chip (one "core").
* ``spinnaker`` — SpiNNaker (Furber et al. 2014): 16-bit fixed-point weights,
  sPyNNaker's default of 256 LIF neurons per core.
"""
from __future__ import annotations

from .errors import DDMError

PRESETS = {
    "loihi": {"bits": 8, "core_size": 1024, "fan_in": None, "max_neurons": None, "description": "Intel Loihi: 8-bit weights, 1024 neurons/core"},
    "loihi2": {"bits": 8, "core_size": 8192, "fan_in": None, "max_neurons": None, "description": "Intel Loihi 2: 8-bit weights, 8192 neurons/core"},
    "xylo": {"bits": 8, "core_size": 1000, "fan_in": None, "max_neurons": 1000, "description": "SynSense Xylo: 8-bit weights, ~1000 neurons"},
    "spinnaker": {"bits": 16, "core_size": 256, "fan_in": None, "max_neurons": None, "description": "SpiNNaker: 16-bit weights, ~256 LIF neurons/core"},
}


def get_preset(name):
    """The limits of chip ``name`` as a dict (``bits``, ``core_size``, ``fan_in``, ``max_neurons``, ``description``).

    Raises
    ------
    DDMError
        If ``name`` is not a known preset; the message lists the known ones.
    """
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise DDMError(f"unknown hardware preset {name!r} (known: {', '.join(sorted(PRESETS))})") from None
