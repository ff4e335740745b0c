"""`python -m lightpeft ...` (also `torchrun --nproc_per_node N -m lightpeft run ...`)."""

import sys

from lightpeft.cli import main

sys.exit(main())
