"""English text for display that also carries a code, so that a dashboard can say it in its own
language.

The engine describes models and data in English sentences (``LoadedModel.description``,
``EvaluationData.description``): the CLI prints them, reports keep them, tests match them. A
``DisplayText`` is that same string, plus the code and values it was made from; the dashboard
looks the code up in its catalog of the session's language (``ui/text/engine.py``) and falls
back to the English where its catalog has no text. A string built from one (an f-string, a
concatenation) is a plain string again: only the sentence made here carries the code.

>>> text = DisplayText("training_digits", "1347 training digits", count=1347)
>>> text == "1347 training digits", text.code, dict(text.values)
(True, 'training_digits', {'count': 1347})
>>> import pickle; pickle.loads(pickle.dumps(text)).values["count"]
1347
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping


class DisplayText(str):
    """``english``, tagged with ``code`` and the ``values`` that fill its translations."""

    code: str
    values: Mapping[str, Any]

    def __new__(cls, code: str, english: str, /, **values: Any) -> DisplayText:
        text = super().__new__(cls, english)
        text.code = code
        text.values = MappingProxyType(values)
        return text

    def __reduce__(self) -> tuple:
        # A mapping proxy does not pickle: rebuild from plain parts (models travel to worker processes).
        return _rebuild, (self.code, str(self), dict(self.values))


def _rebuild(code: str, english: str, values: dict[str, Any]) -> DisplayText:
    return DisplayText(code, english, **values)
