"""``python -m clevr_diffusion.cli``."""

import sys

from . import main

sys.exit(main())
