"""The committed sentence corpora: one for evaluating the MiniLM embedder, one for calibrating it.

The sentences are real English from shipped software: sentences of Python standard-library
docstrings, not written for this project. ``build_corpus.py`` made both files; no calibration
sentence is an evaluation sentence.
"""
from __future__ import annotations

from pathlib import Path

CORPUS_FILE = Path(__file__).resolve().parent / "corpus.txt"
CALIBRATION_FILE = CORPUS_FILE.with_name("calibration_corpus.txt")


def sentences() -> list[str]:
    """The corpus, one sentence per line of ``corpus.txt``, in file order."""
    return CORPUS_FILE.read_text(encoding="ascii").splitlines()


def calibration_sentences() -> list[str]:
    """The calibration corpus, one sentence per line of ``calibration_corpus.txt``, in file order."""
    return CALIBRATION_FILE.read_text(encoding="ascii").splitlines()
