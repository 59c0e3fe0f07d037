"""``python -m rusty_genius.ogenius.serve`` is ``ogenius serve``.

It runs the ``ogenius`` command rather than anything of this package's own: :mod:`rusty_genius.ogenius.cli` imports
the serve package, so the serve package must not import it back (only this entry point, which nothing imports, does).
"""

import sys

from rusty_genius.ogenius.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
