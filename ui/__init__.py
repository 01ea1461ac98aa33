"""The dashboard's shared pieces: the session, caches, stores, recipe widgets, charts and texts.

Pages in ``pages/`` stay thin: they turn widgets into a recipe (``ui.state``, ``ui.controls``),
call the engine through ``ui.cache``, keep results in ``ui.stores`` and draw what comes back
with ``ui.charts``; the Export page's sections live in ``ui/export/``. Every page first calls
``ui.navigation.require_navigation``.
"""
