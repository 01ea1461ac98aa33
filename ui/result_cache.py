"""Results shared by the sessions of one server process, bounded in bytes rather than in entries.

A compressed copy of a 135M-parameter model holds about 0.5 GB; twelve of them (Streamlit's
``max_entries``) would not fit a laptop, while twelve of simplenet's are nothing. Entries are
weighed by the tensors they hold and the least recently used go first (``cachetools``' LRU).
A key is computed once even when several sessions ask for it at the same moment, as
``st.cache_resource`` does; a result larger than the whole budget is returned, not kept.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

import cachetools
import torch

Value = TypeVar("Value")
ENTRY_OVERHEAD_BYTES = 64 * 1024  # the report, histograms and Python objects beside the tensors


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a tied weight counts once; meta: none)."""
    storages = {}
    for tensor in tensors:
        if tensor.device.type != "meta":
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


class ResultCache(Generic[Value]):
    """A least-recently-used cache whose entries together weigh at most ``max_bytes``."""

    def __init__(self, max_bytes: int, weight: Callable[[Value], int]) -> None:
        self.max_bytes = max_bytes
        self._entries: cachetools.LRUCache = cachetools.LRUCache(
            maxsize=max_bytes, getsizeof=lambda value: weight(value) + ENTRY_OVERHEAD_BYTES
        )
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        """The value of ``key``, computed by ``compute`` unless kept (or being computed) already."""
        with self._lock:
            if key in self._entries:
                return self._entries[key]
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:  # a second session asking for the same key waits for the first's answer
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            try:
                value = compute()
                with self._lock:
                    try:
                        self._entries[key] = value
                    except ValueError:  # larger than the whole budget: returned, not kept
                        pass
            finally:
                with self._lock:
                    self._computing.pop(key, None)
            return value

    def peek(self, key: Hashable) -> Value | None:
        """The kept value of ``key``, or None; computes nothing."""
        with self._lock:
            return self._entries.get(key)

    @property
    def bytes_held(self) -> int:
        return int(self._entries.currsize)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
