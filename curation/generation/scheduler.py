"""Drives many per-sample strategy generators through one streaming backend: each sample's next request goes out
the moment its previous answer is back, up to `max_inflight` samples at once, and each finished sample is handed
back at once, so a run can store, label and count it while the others are still generating."""
from __future__ import annotations

import itertools
from typing import Any, Generator, Hashable, Iterable, Iterator

from curation.backends import Backend, ChatRequest, ChatResult


def drive(backend: Backend, samples: Iterable[tuple[Any, Generator[ChatRequest, ChatResult, Any]]], *,
          max_inflight: int = 256, poll_s: float = 0.5) -> Iterator[tuple[Any, Any]]:
    """Yield (sample, value its generator returned) as each sample finishes (not in input order)."""
    pending = iter(samples)
    active: dict[Hashable, tuple[Any, Generator]] = {}
    keys = itertools.count()

    def start_more() -> list[tuple[Any, Any]]:
        finished = []
        while len(active) < max_inflight:
            nxt = next(pending, None)
            if nxt is None:
                break
            sample, gen = nxt
            try:
                req = next(gen)
            except StopIteration as stop:  # a strategy that needs no model call
                finished.append((sample, stop.value))
                continue
            key = next(keys)
            active[key] = (sample, gen)
            backend.submit(key, req)
        return finished

    yield from start_more()
    while active:
        for key, result in backend.poll(timeout_s=poll_s):
            sample, gen = active.pop(key)
            try:
                req = gen.send(result)
            except StopIteration as stop:
                yield sample, stop.value
                continue
            nk = next(keys)
            active[nk] = (sample, gen)
            backend.submit(nk, req)
        yield from start_more()
