"""``python -m tlab``: see :mod:`tlab.cli`."""

import sys

from tlab.cli import main

sys.exit(main())
