"""``python -m rusty_genius.ogenius.serve`` is ``ogenius serve``."""

import sys

from rusty_genius.ogenius.serve.cli import main

sys.exit(main())
