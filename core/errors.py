"""Errors that cross layers. Domain-specific ones (ExportError, EvalError, …) live beside their code and subclass
these, so a page or command can catch one family and show its one-line message."""
from __future__ import annotations

from typing import Any, Optional


class UserError(ValueError):
    """Bad input or a request the current state does not allow; the message is meant for the user."""


class PermissionDenied(Exception):
    """The acting user's role (or membership) does not allow the action."""


class LoginThrottled(PermissionDenied):
    """Too many failed sign-ins for this user name or client: refused, even with the right password, until
    `retry_after_s` has passed."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"too many failed sign-ins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ConflictError(Exception):
    """The row changed since the caller loaded it. `current` is its state now; `other_change` the audit event
    that changed it (who, when, before/after), so the page can show it and nothing is silently lost."""

    def __init__(self, message: str, *, current: Any = None, other_change: Optional[dict] = None):
        super().__init__(message)
        self.current = current
        self.other_change = other_change
