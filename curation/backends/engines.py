"""Warm engines: one backend per process stays loaded between jobs, so consecutive jobs on the same model start in
seconds instead of paying vLLM's minutes of start-up each time. Memory stays bounded: asking for a different
model (or other options) closes the one held first, and an idle engine is closed after `idle_s`.

The worker runs jobs one after another in one process, so every generation, labelling and eval job it runs
shares the pool. A job uses `with engine(kind, model, **options) as backend:`; it never closes the backend itself.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from core.settings import get_settings
from curation.backends import Backend, make_backend


class EnginePool:
    def __init__(self, idle_s: float | None = None):
        # an engine nobody used for this long is closed (its memory freed)
        idle_s = get_settings().rational_engine_idle_s if idle_s is None else idle_s
        self.idle_s = idle_s
        self._lock = threading.RLock()
        self._key: Optional[str] = None
        self._backend: Optional[Backend] = None
        self._users = 0
        self._last_used = 0.0
        self._timer: Optional[threading.Timer] = None
        self.starts = 0  # engines started by this pool (a warm hit starts none)

    @contextmanager
    def engine(self, kind: str, model: str, **options) -> Iterator[Backend]:
        key = json.dumps([kind, model, options], sort_keys=True, default=str)
        with self._lock:
            if self._key != key:
                if self._users:
                    raise RuntimeError("the engine pool's engine is in use by another job")
                self._close_locked()
                self._backend = make_backend(kind, model, **options)
                self._key = key
                self.starts += 1
            self._users += 1
            backend = self._backend
        try:
            yield backend
        except BaseException:
            with self._lock:  # a backend that failed mid-job may be in any state: do not hand it on
                self._users -= 1
                if not self._users:
                    self._close_locked()
            raise
        with self._lock:
            self._users -= 1
            self._last_used = time.monotonic()
            self._arm_timer()

    def held(self) -> Optional[str]:
        """The key of the engine held now (kind, model, options as JSON), or None."""
        return self._key

    def close(self) -> None:
        with self._lock:
            if not self._users:
                self._close_locked()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self.idle_s, self._close_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _close_if_idle(self) -> None:
        with self._lock:
            if not self._users and time.monotonic() - self._last_used >= self.idle_s - 0.01:
                self._close_locked()

    def _close_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._backend is not None:
            try:
                self._backend.close()
            finally:
                self._backend, self._key = None, None


POOL = EnginePool()


def engine(kind: str, model: str, **options):
    """A warm backend from the process-wide pool (a context manager)."""
    return POOL.engine(kind, model, **options)
