"""`python -m M2DiffSlicer.cli` (what torchrun runs) is `m2diff`."""

import sys

from . import main

sys.exit(main())
