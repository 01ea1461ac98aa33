"""Text the engine and the sample zoo make for display, said in the session's language.

The engine tags the sentences that describe models and data with a code
(:class:`compression.display_text.DisplayText`); the catalog's ``[engine]`` table has a text per
code, with the code's values as placeholders. A sentence without a code, or with one the
catalog lacks, is shown as the engine wrote it, in English. Engine errors keep their English
detail under a lead-in from the catalog (``errors.lead_in``, or the page's own).

A value that is a tuple is a series (the speed-ups of a latency verdict, one per batch): its
items are said one by one and joined by the catalog's ``engine.series.list``, or by
``engine.series.and`` where the placeholder's format spec is ``and`` (``{batches:and}``).

>>> localized(DisplayText("training_digits", "1347 training digits", count=1347))
'1347 training digits'
>>> localized(DisplayText("reason_int8_overheads", "…", extensions=("AVX512-VNNI", "AVX-VNNI")))[:41]
'this CPU has AVX512-VNNI and AVX-VNNI, so'
"""
from __future__ import annotations

from typing import Any, Mapping

import sample_models
from compression.display_text import DisplayText
from ui.text import catalog, language, t

CODES = "engine."  # the catalog table of the engine's codes
SCHEMES = "quantization.stored_schemes."  # the catalog's name of each scheme a packed file records


def localized(text: str) -> str:
    """``text`` in the session's language where it carries a code the catalog knows, else as it is."""
    texts = catalog(language())
    template = texts.get(CODES + text.code) if isinstance(text, DisplayText) else None
    if template is None:
        return str(text)
    return template.format(**{name: _localized_value(value, texts) for name, value in text.values.items()})


def _localized_value(value: Any, texts: Mapping[str, str]) -> Any:
    if isinstance(value, tuple):
        return _Series(tuple(str(_localized_value(item, texts)) for item in value), texts)
    return localized(value) if isinstance(value, str) else value


class _Series:
    """A tuple value said in the session's language: its format spec picks the joining word."""

    def __init__(self, items: tuple[str, ...], texts: Mapping[str, str]) -> None:
        self.items, self.texts = items, texts

    def __format__(self, spec: str) -> str:
        return self.texts[f"{CODES}series.{spec or 'list'}"].join(self.items)


def stored_scheme(label: str) -> str:
    """How a layer's stored scheme reads (``LayerReport.scheme``: ``linear_symmetric``,
    ``gptq_asymmetric``, ``fp16``, …); one the catalog does not name shows as the file stores it.

    >>> stored_scheme("linear_asymmetric"), stored_scheme("a_future_scheme")
    ('asymmetric linear', 'a_future_scheme')
    """
    return t(f"quantization.stored_schemes.{label}") if SCHEMES + label in catalog(language()) else label


def sample_model(name: str) -> str:
    """One line on a sample model: its architecture and held-out score (``sample_models.describe``)."""
    score = sample_models.heldout_score(name)
    architecture = t(f"zoo.models.{name}")
    if score is None:
        return architecture
    metric, value = score
    return architecture + t("zoo.heldout_perplexity" if metric == "perplexity" else "zoo.heldout_accuracy", value=value)

