"""``python -m companion.coursework student|grade ...``: see :mod:`companion.coursework`."""

import sys

from companion.coursework.cli import main

sys.exit(main())
