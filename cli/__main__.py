"""``python -m cli``: the ``clipsearch-tui`` command."""

import sys

from cli.main import run

sys.exit(run())
