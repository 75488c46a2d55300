"""The terminal app (Textual): one front end over :mod:`core`, beside the command line.

:mod:`tui.app` builds the app (:func:`tui.app.make_app`) and is opened by the command line
through :func:`tui.app.run_app`; :mod:`tui.engine` runs the engine's work off the UI thread,
:mod:`tui.widgets` and :mod:`tui.screens` hold what is drawn, :mod:`tui.messages` what the
workers post back. Nothing here imports :mod:`cli`.
"""
