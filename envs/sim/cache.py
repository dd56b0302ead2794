"""The edge result cache: repeated inputs are answered without compute.

Entries are keyed by input identity (a fingerprint the device sends instead of the input).
Eviction, when a result is admitted into a full cache, follows the policy the admitting
request names:

- ``lru``: evict the least recently used entry;
- ``lfu``: evict the least frequently used entry (ties: least recently used);
- ``cost``: cost-aware, evict the entry with the smallest hits x compute-time-saved
  (a frequency-weighted form of GreedyDual's cost awareness: Cao & Irani, USENIX Symposium
  on Internet Technologies and Systems 1997).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CacheEntry:
    last_access_s: float
    hits: int
    cost_s: float  # compute time a hit saves
    correct: bool
    accuracy: float


_EVICTION_KEYS = {
    "lru": lambda e: e.last_access_s,
    "lfu": lambda e: (e.hits, e.last_access_s),
    "cost": lambda e: ((e.hits + 1) * e.cost_s, e.last_access_s),
}


class ResultCache:
    __slots__ = ("capacity", "entries", "evictions", "hits", "lookups")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: dict[int, CacheEntry] = {}
        self.lookups = 0
        self.hits = 0
        self.evictions = 0

    def lookup(self, now_s: float, key: int) -> CacheEntry | None:
        self.lookups += 1
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.entries[key] = entry  # re-insert: dict order is recency order
            self.hits += 1
            entry.hits += 1
            entry.last_access_s = now_s
        return entry

    def admit(
        self, now_s: float, key: int, policy: str, cost_s: float, correct: bool, accuracy: float
    ) -> None:
        if self.capacity == 0 or policy == "none":
            return
        entry = self.entries.pop(key, None)
        if entry is not None:  # a concurrent request admitted it meanwhile: keep the better one
            self.entries[key] = entry
            entry.last_access_s = now_s
            if accuracy > entry.accuracy:
                entry.accuracy, entry.correct = accuracy, correct
            return
        if len(self.entries) >= self.capacity:
            if policy == "lru":  # entries are kept in recency order
                victim = next(iter(self.entries))
            else:
                rank = _EVICTION_KEYS[policy]
                victim = min(self.entries, key=lambda k: rank(self.entries[k]))
            del self.entries[victim]
            self.evictions += 1
        self.entries[key] = CacheEntry(now_s, 0, cost_s, correct, accuracy)

    @property
    def fill(self) -> float:
        return len(self.entries) / self.capacity if self.capacity else 0.0
