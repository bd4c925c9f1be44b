"""``python -m ddm_neuro.cli``: the ``ddm-neuro`` command."""
import sys

from . import main

sys.exit(main())
