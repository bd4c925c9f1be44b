"""``python -m ddm_neuro.cli``: the ``ddm-neuro`` command."""
from . import main

raise SystemExit(main())
