"""Headers of the engine's tables in the session's language.

A table keeps the engine's column names (``encoded_bytes``, ``value``): its CSV download and the
tests read those. What the page shows above each column is a label from the catalog, handed to
``st.dataframe`` as ``column_config``; the metric's columns are named after the metric. A column
the catalog has no label for shows its own name (tests/ui/test_languages.py lists those a
Chinese page still shows).

>>> import pandas as pd
>>> headers(pd.DataFrame(columns=["step", "value", "baseline_value", "new_column"]), "accuracy")
{'step': 'step', 'value': 'Accuracy', 'baseline_value': 'Accuracy, uncompressed', 'new_column': 'new_column'}
"""
from __future__ import annotations

import pandas as pd

from ui.controls import metric_label
from ui.text import catalog, language, t

LABELS = "tables.columns."  # the catalog's label of each engine column, by its name


def headers(frame: pd.DataFrame, metric: str | None = None) -> dict[str, str]:
    """``column_config`` for ``frame``: each column's label; ``value`` is ``metric``'s name, and the
    metric's other columns (its baseline, its value before fine-tuning) say which metric."""
    named = metric_label(metric) if metric is not None else None
    by_metric = {"value": named} if named is not None else {}
    if named is not None:
        by_metric.update(baseline_value=t("tables.baseline_value", metric=named),
                         value_before_fine_tuning=t("tables.value_before_fine_tuning", metric=named))
    known = catalog(language())
    return {str(column): by_metric.get(column) or (t(f"tables.columns.{column}") if LABELS + str(column) in known
                                                   else str(column))
            for column in frame.columns}
