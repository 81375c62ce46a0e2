"""Every environment variable the product reads, typed, with its default. No other module reads the environment.

Settings are read afresh on each call (cheap), so a test or a shell that changes a variable sees it at once. The
README's configuration table lists these fields; a test keeps the two in step.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, env_ignore_empty=True, extra="ignore")

    database_url: Optional[str] = Field(
        None, description="SQLAlchemy URL of the database (`postgresql://…` for teams)",
        json_schema_extra={"default_text": "SQLite file `$RATIONAL_HOME/rational.db`"})
    rational_home: Path = Field(
        Path("~/.rational"), description="data directory (database, uploads, models, exports, runs, reports); "
        "created with mode 0700")
    rational_artifacts: Optional[Path] = Field(
        None, description="artifact root: uploads, exports, training runs and reports; mount one shared folder on "
        "every machine (at any path) and point this at it: the database stores paths relative to it",
        json_schema_extra={"default_text": "`$RATIONAL_HOME`"})
    rational_secret_key: Optional[str] = Field(
        None, description="key that signs sign-in cookies",
        json_schema_extra={"default_text": "random, kept in `$RATIONAL_HOME/session_secret` (mode 0600)"})
    rational_vllm_python: Optional[str] = Field(
        None, description="a Python that can import vllm (the `vllm` backend runs its engine there)",
        json_schema_extra={"default_text": "`.venv-vllm/bin/python` when present"})
    rational_torch_threads: int = Field(
        0, description="CPU threads for the transformers backend (0: torch's default)")
    rational_trust_forwarded: bool = Field(
        False, description="sign-in throttling trusts the client address a reverse proxy forwards "
        "(`X-Forwarded-For`); set it only behind a proxy that overwrites that header. Off, every request that "
        "carries a forwarded header shares one throttle, so a forged header earns no fresh attempts")
    rational_engine_idle_s: float = Field(
        600.0, description="seconds the worker keeps an idle model engine loaded for the next job")
    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="default server of the `openai` backend")
    openai_api_key: str = Field("", description="API key sent to that server")
    argilla_api_url: Optional[str] = Field(
        None, description="Argilla server (overrides the Argilla page's saved settings)")
    argilla_api_key: Optional[str] = Field(None, description="Argilla owner API key (overrides the saved one)")
    argilla_workspace: Optional[str] = Field(
        None, description="Argilla workspace", json_schema_extra={"default_text": "`rational`"})
    argilla_hf_token: Optional[str] = Field(
        None, description="Hugging Face token for an Argilla server in a private Space")
    local_rank: int = Field(
        0, description="this training process's device index; set by `accelerate launch`, never by hand")

    def home(self) -> Path:
        """The data directory, owner-only: it holds password hashes, API keys and the data. Created 0700; one
        that others can read (made by hand, or by an older version) is narrowed to 0700."""
        path = self.rational_home.expanduser()
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
        return path

    def artifacts(self) -> Path:
        """The artifact root (the data directory unless set), absolute; created owner-only when missing."""
        if self.rational_artifacts is None:
            return self.home().resolve()
        path = artifact_path()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path


def get_settings() -> Settings:
    return Settings()


def artifact_path() -> Path:
    """The artifact root's absolute path, touching nothing: read once per stored path, so cached per setting
    (building Settings costs about half a millisecond)."""
    return _artifact_path(os.environ.get("RATIONAL_ARTIFACTS"), os.environ.get("RATIONAL_HOME"))


@lru_cache(maxsize=8)
def _artifact_path(_artifacts: str | None, _home: str | None) -> Path:
    s = get_settings()
    return (s.rational_artifacts or s.rational_home).expanduser().resolve()


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a child process (the trainer, the vLLM engine): ours plus `overrides`."""
    return {**os.environ, **overrides}
