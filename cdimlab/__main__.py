"""``python -m cdimlab``: see :mod:`cdimlab.cli`."""

import sys

from cdimlab.cli import main

sys.exit(main())
