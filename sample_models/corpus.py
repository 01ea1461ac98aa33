"""The committed sentence corpus for evaluating the MiniLM embedder.

The sentences are real English from shipped software: first sentences of Python
standard-library docstrings, not written for this project. ``build_corpus.py`` made the file.
"""
from __future__ import annotations

from pathlib import Path

CORPUS_FILE = Path(__file__).resolve().parent / "corpus.txt"


def sentences() -> list[str]:
    """The corpus, one sentence per line of ``corpus.txt``, in file order."""
    return CORPUS_FILE.read_text(encoding="ascii").splitlines()
