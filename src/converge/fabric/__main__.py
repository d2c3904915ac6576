"""``python -m converge.fabric``: run the reference fabric controller (see :mod:`converge.fabric.serve`)."""

import sys

from converge.fabric.serve import main

sys.exit(main())
