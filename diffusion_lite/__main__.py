"""``python -m diffusion_lite ...`` is the ``diffusion-lite`` command (for environments without its script)."""

import sys

from diffusion_lite.cli import main

sys.exit(main())
