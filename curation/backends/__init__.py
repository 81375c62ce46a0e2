"""Model backends behind one interface (base.py): transformers, vllm (offline), openai (any compatible server).

Heavy libraries load only when a backend is built, so importing this package stays cheap.
"""
from __future__ import annotations

from curation.backends.base import Backend, BackendError, ChatRequest, ChatResult, Completion, SamplingParams

BACKENDS = ("transformers", "vllm", "openai")

__all__ = ["BACKENDS", "Backend", "BackendError", "ChatRequest", "ChatResult", "Completion", "SamplingParams",
           "make_backend"]


def make_backend(kind: str, model: str, **options) -> Backend:
    """Build a backend. `model` is a local folder or HF id (transformers, vllm) or the served model name (openai).
    Options: transformers: device, dtype, batch_size, threads; vllm: python, seed, dtype, max_model_len,
    kv_cache_gb, engine_args, env;
    openai: base_url, api_key, concurrency, timeout_s, max_retries, backoff_s."""
    if kind == "transformers":
        from curation.backends.hf import TransformersBackend

        return TransformersBackend(model, **options)
    if kind == "vllm":
        from curation.backends.vllm_offline import VLLMBackend

        return VLLMBackend(model, **options)
    if kind == "openai":
        from curation.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(model, **options)
    raise ValueError(f"unknown backend '{kind}'; choose one of {', '.join(BACKENDS)}")
