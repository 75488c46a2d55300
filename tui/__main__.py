"""Entry point of the ``clipsearch-tui`` command and of ``python -m tui``."""

from __future__ import annotations

import sys
from pathlib import Path

from core.cli import main as cli_main


def main() -> int:
    """Run the command line; with no command, open the app."""
    return cli_main(sys.argv[1:], launch_app=_launch)


def _launch(paths: list[Path], images: str = "auto", gpu: bool = False) -> int:
    """Build and run the Textual app, imported only now so that commands never load Textual."""
    try:
        from tui.app import make_app
    except ImportError as error:
        if getattr(error, "name", None) not in ("tui.app", "textual"):
            raise
        print(
            f"clipsearch-tui: error: the terminal app cannot start ({error}); "
            "the commands still work, see: clipsearch-tui --help",
            file=sys.stderr,
        )
        return 1
    app = make_app(paths, images=images, gpu=gpu)
    app.run()
    return int(app.return_code or 0)


if __name__ == "__main__":
    sys.exit(main())
