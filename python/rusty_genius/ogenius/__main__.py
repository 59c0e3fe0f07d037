"""``python -m rusty_genius.ogenius`` is the ``ogenius`` command."""

import sys

from rusty_genius.ogenius.cli import main

sys.exit(main())
