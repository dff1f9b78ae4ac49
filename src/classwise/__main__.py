"""``python -m classwise`` (also what ``torchrun -m classwise`` runs)."""

import sys

from .cli import main

sys.exit(main())
