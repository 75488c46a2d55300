"""The ``clipsearch-tui`` command line: a front end over :mod:`core`, beside the app.

:mod:`cli.main` parses the command line and runs a command, or opens the app (:mod:`tui`,
imported only then); :mod:`cli.models` holds the ``model`` commands, :mod:`cli.photos` the
commands over the library (``index``, ``search``, ``describe``, ``timeline``), and
:mod:`cli.output` what they write (errors, escaped lines, JSON, the progress bar). Nothing in
:mod:`core` or :mod:`tui` imports this package.
"""
