"""English text for the sample causal LM: the Python language reference topics, split by topic.

The text is ``pydoc_data.topics.topics``: the reference sections that ship with CPython for
``help()``, written by the CPython developers, not for this project (and not the docstrings that
``corpus.txt`` samples). Whitespace is normalised and reST heading underlines dropped, one topic
per line, topics in name order.

Split rule: topics that share a sentence of at least ``SHARED_SENTENCE_WORDS`` words are
grouped (some topics quote others: ``compound`` holds ``if``, ``while``, ...); a group is held
out when the SHA-256 of its alphabetically first topic name, read as an integer, is divisible
by ``HELDOUT_MODULUS``. So no such sentence is in both texts, and the split does not depend on
the order in which topics are listed. The text depends on the Python release (the committed
model was trained on 3.11's).

>>> set(heldout_topics()).isdisjoint(training_topics())
True
"""
from __future__ import annotations

import functools
import hashlib
import re

from pydoc_data.topics import topics as _REFERENCE_TOPICS

HELDOUT_MODULUS = 5
SHARED_SENTENCE_WORDS = 6

# A reST heading underline: a line of one repeated punctuation character.
_UNDERLINE = re.compile(r"^\s*([*=\-~^])\1+\s*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def normalise(topic_text: str) -> str:
    """``topic_text`` on one line: heading underlines dropped, whitespace runs made one space."""
    return " ".join(_UNDERLINE.sub("", topic_text).split())


def sentences(text: str) -> set[str]:
    """The sentences of normalised ``text`` with at least ``SHARED_SENTENCE_WORDS`` words."""
    return {
        sentence for sentence in _SENTENCE_END.split(text)
        if len(sentence.split()) >= SHARED_SENTENCE_WORDS
    }


def topic_texts() -> dict[str, str]:
    """Every reference topic's normalised text, by topic name."""
    return {name: normalise(text) for name, text in sorted(_REFERENCE_TOPICS.items())}


def _topic_groups(texts: dict[str, str]) -> list[list[str]]:
    """Topics joined when they share a sentence (connected components), each sorted by name."""
    group_of = {name: name for name in texts}

    def root(name: str) -> str:
        while group_of[name] != name:
            name = group_of[name]
        return name

    first_topic_of: dict[str, str] = {}
    for name, text in texts.items():
        for sentence in sentences(text):
            other = first_topic_of.setdefault(sentence, name)
            group_of[root(name)] = root(other)
    groups: dict[str, list[str]] = {}
    for name in texts:
        groups.setdefault(root(name), []).append(name)
    return [sorted(members) for members in groups.values()]


def is_heldout(group: list[str]) -> bool:
    """The split rule: SHA-256 of the group's first topic name divisible by ``HELDOUT_MODULUS``."""
    digest = hashlib.sha256(min(group).encode("utf-8")).hexdigest()
    return int(digest, 16) % HELDOUT_MODULUS == 0


@functools.lru_cache(maxsize=1)
def _split() -> tuple[tuple[str, ...], tuple[str, ...]]:
    groups = _topic_groups(topic_texts())
    heldout = sorted(name for group in groups if is_heldout(group) for name in group)
    training = sorted(name for group in groups if not is_heldout(group) for name in group)
    return tuple(training), tuple(heldout)


def training_topics() -> tuple[str, ...]:
    """Names of the topics the sample LM and its tokenizer are trained on, sorted."""
    return _split()[0]


def heldout_topics() -> tuple[str, ...]:
    """Names of the topics kept out of training, sorted."""
    return _split()[1]


def lm_training_text() -> str:
    """The training topics' text, one topic per line."""
    texts = topic_texts()
    return "\n".join(texts[name] for name in training_topics())


def lm_heldout_text() -> str:
    """The held-out topics' text, one topic per line: shares no sentence with the training text."""
    texts = topic_texts()
    return "\n".join(texts[name] for name in heldout_topics())
