"""The dashboard's shared pieces: session state and caches, recipe widgets, and charts.

Pages in ``pages/`` stay thin: they turn widgets into a recipe, call the engine through
``ui.state``'s caches and draw what it returns with ``ui.charts``.
"""
