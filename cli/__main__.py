"""``python -m cli``: the ``clipsearch-tui`` command."""

import sys

from cli.launch import run

sys.exit(run())
