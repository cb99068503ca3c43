"""`python -m tandem.pipeline.cli`: the `tandem` command (how the loop starts its children)."""

import sys

from tandem.pipeline.cli import main

sys.exit(main())
