"""``python -m tlab``: see :mod:`tlab.runs.cli`."""

import sys

from tlab.runs.cli import main

sys.exit(main())
