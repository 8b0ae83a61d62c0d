"""`python -m M2DiffSlicer` is `m2diff`."""

import sys

from .cli import main

sys.exit(main())
