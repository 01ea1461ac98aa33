"""Build ``corpus.txt`` (first sentences of Python standard-library docstrings, for evaluation)
and ``calibration_corpus.txt`` (other sentences of the same docstrings, for calibration).

Run ``python -m sample_models.build_corpus``. The sentences are real English written by the
CPython developers for shipped software, not for this project, so nobody picked them to flatter
a compressed embedder. The calibration corpus takes every prose sentence of every paragraph
that is not an evaluation sentence, so calibrating never sees a row that is scored. The output
depends on the Python version (docstrings change between releases; the committed files came
from 3.11), which is why they are committed, not built at run time.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import string
import warnings
from types import ModuleType
from typing import Iterator

from sample_models.corpus import CALIBRATION_FILE, CORPUS_FILE

SIZE = 512
CALIBRATION_SIZE = 1536  # three times the evaluation corpus; 2,048 such sentences exist in 3.11
MIN_WORDS, MAX_WORDS = 6, 30

# Pure-library modules only: none opens windows, plays sound or prints when imported.
MODULES = (
    "abc", "argparse", "ast", "asyncio", "base64", "bisect", "bz2", "calendar", "cmd",
    "codecs", "collections", "concurrent.futures", "configparser", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message", "email.utils",
    "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt",
    "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser",
    "http.client", "http.cookies", "http.server", "imaplib", "inspect", "io", "ipaddress",
    "itertools", "json", "locale", "logging", "logging.handlers", "lzma", "mailbox",
    "mimetypes", "numbers", "operator", "optparse", "os", "pathlib", "pickle", "pkgutil",
    "platform", "plistlib", "poplib", "pprint", "queue", "random", "re", "reprlib", "sched",
    "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket",
    "socketserver", "sqlite3", "ssl", "statistics", "string", "struct", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback",
    "types", "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings",
    "weakref", "wave", "xml.dom.minidom", "xml.etree.ElementTree", "zipfile", "zoneinfo",
)

# Characters that mark code, markup or abbreviations rather than prose.
CODE_CHARACTERS = set("()[]{}<>=_`*#@$%^~|\\:;/")
PRINTABLE = set(string.ascii_letters + string.digits + string.punctuation + " ")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _documented(module: ModuleType) -> Iterator[object]:
    """The module and the public functions, classes and methods it defines itself."""
    yield module
    for name, member in sorted(vars(module).items()):
        if name.startswith("_") or getattr(member, "__module__", None) != module.__name__:
            continue
        if inspect.isroutine(member):
            yield member
        elif inspect.isclass(member):
            yield member
            yield from (
                attribute for attribute_name, attribute in sorted(vars(member).items())
                if not attribute_name.startswith("_") and inspect.isroutine(attribute)
            )


def _first_sentence(docstring: str) -> str:
    first_paragraph = inspect.cleandoc(docstring).split("\n\n")[0]
    return SENTENCE_END.split(" ".join(first_paragraph.split()))[0]


def is_prose(sentence: str) -> bool:
    """An English-looking sentence: 6-30 words, capitalised, ends with '.', no code tokens."""
    return (
        MIN_WORDS <= len(sentence.split()) <= MAX_WORDS
        and sentence[0].isupper()
        and sentence.endswith(".")
        and not sentence.endswith(("e.g.", "i.e.", "etc."))
        and set(sentence) <= PRINTABLE
        and not set(sentence) & CODE_CHARACTERS
    )


def _docstrings() -> Iterator[str]:
    """Every non-empty docstring of ``MODULES``' documented objects."""
    with warnings.catch_warnings():
        # Deprecated aliases (typing.io, typing.re) warn when their docstring is read.
        warnings.simplefilter("ignore", DeprecationWarning)
        for module_name in MODULES:
            for documented in _documented(importlib.import_module(module_name)):
                docstring = documented.__doc__
                if isinstance(docstring, str) and docstring.strip():
                    yield docstring


def candidate_sentences() -> set[str]:
    """Every distinct prose first sentence found in ``MODULES``."""
    return {sentence for sentence in map(_first_sentence, _docstrings()) if is_prose(sentence)}


def calibration_candidates(evaluation: set[str]) -> set[str]:
    """Every distinct prose sentence of every paragraph found in ``MODULES``, less ``evaluation``."""
    sentences = set()
    for docstring in _docstrings():
        for paragraph in inspect.cleandoc(docstring).split("\n\n"):
            sentences.update(s for s in SENTENCE_END.split(" ".join(paragraph.split())) if is_prose(s))
    return sentences - evaluation


def select(sentences: set[str], size: int = SIZE) -> list[str]:
    """A deterministic, alphabet-independent sample: the ``size`` smallest SHA-256 digests."""
    return sorted(sentences, key=lambda s: hashlib.sha256(s.encode()).hexdigest())[:size]


def main() -> None:
    chosen = select(candidate_sentences())
    calibration = select(calibration_candidates(set(chosen)), CALIBRATION_SIZE)
    for path, sentences in ((CORPUS_FILE, chosen), (CALIBRATION_FILE, calibration)):
        path.write_text("\n".join(sentences) + "\n", encoding="ascii")
        print(f"wrote {len(sentences)} sentences to {path}")


if __name__ == "__main__":
    main()
