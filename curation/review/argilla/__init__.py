"""Argilla bulk annotation: connection, record mapping, push, pull and their jobs (SDK 2.8)."""
