"""The Export page's sections, one module each; ``pages/export.py`` draws them in order.

Each ``render`` draws its heading, its explanation and its widgets for the session's model
and the compressed result the page holds; results worth keeping across pages go to
:mod:`ui.stores`.
"""
