"""openai backend: any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM server, TGI, llama.cpp, hosted).

Several servers: `base_url` may be a list (or a comma-separated string) of servers of the same model; each call
goes to the server with the fewest calls in flight, with `concurrency` calls at most per server (a thread pool
each). Per-call timeouts, retries with exponential backoff (honouring Retry-After) on connection errors, timeouts,
408/409/429 and 5xx; a retry after a connection error or timeout moves to the next server. Other 4xx answers fail
at once: retrying cannot fix them.
Each of the n samples is its own call with n=1, so every sample gets its own token count and servers without
`n` support work too. A prefilled assistant turn is sent with vLLM's `continue_final_message` extension.
"""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Optional, Sequence

from core.settings import get_settings
from curation.backends.base import BackendError, ChatRequest, ChatResult, Completion, Streaming

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend(Streaming):
    name = "openai"

    def __init__(self, model: str, *, base_url: str | Sequence[str] | None = None, api_key: Optional[str] = None,
                 concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 4, backoff_s: float = 0.5,
                 max_backoff_s: float = 20.0):
        self.model = str(model)
        self.base_urls = server_urls(base_url or get_settings().openai_base_url)
        self.base_url = self.base_urls[0]
        self.api_key = api_key if api_key is not None else get_settings().openai_api_key
        self.concurrency = max(1, int(concurrency))  # per server
        self.timeout_s = timeout_s
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._local = threading.local()
        self._pools = [ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"openai-backend-{i}")
                       for i in range(len(self.base_urls))]
        self.calls = 0  # HTTP attempts made, retries included (for tests and logs)
        self.calls_by_server = [0] * len(self.base_urls)
        self._load = [0] * len(self.base_urls)  # calls queued or in flight per server
        self._lock = threading.Lock()
        self._inflight: dict = {}

    def _session(self):
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _body(self, req: ChatRequest) -> dict:
        s = req.sampling
        body = {"model": self.model, "messages": list(req.messages), "n": 1, "max_tokens": s.max_tokens,
                "temperature": s.temperature, "top_p": s.top_p}
        if s.stop:
            body["stop"] = list(s.stop)
        if s.repetition_penalty != 1.0:
            body["repetition_penalty"] = s.repetition_penalty  # vLLM / TGI / llama.cpp extension
        if req.continue_final_message:
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    def _post(self, body: dict, server: int = 0) -> dict:
        import requests

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        last = ""
        for attempt in range(self.max_retries + 1):
            url = f"{self.base_urls[server]}/chat/completions"
            with self._lock:
                self.calls += 1
                self.calls_by_server[server] += 1
            retry_after = None
            try:
                resp = self._session().post(url, json=body, headers=headers, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as e:
                last = f"{type(e).__name__}: {e}"
                server = (server + 1) % len(self.base_urls)  # that server may be down: try the next one
            else:
                if resp.status_code == 200:
                    try:
                        return resp.json()
                    except ValueError:
                        last = f"HTTP 200 with a body that is not JSON: {resp.text[:200]!r}"
                elif resp.status_code in RETRY_STATUS:
                    last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                else:
                    raise BackendError(f"openai backend: {url} answered HTTP {resp.status_code}: {resp.text[:500]}")
            if attempt < self.max_retries:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
                time.sleep(retry_after if retry_after is not None else delay)
        raise BackendError(f"openai backend: {url} failed after {self.max_retries + 1} attempt(s); last: {last}")

    def _one(self, req: ChatRequest, server: int = 0) -> tuple[Completion, int]:
        try:
            data = self._post(self._body(req), server)
        finally:
            with self._lock:
                self._load[server] -= 1
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            comp = Completion(text, int(usage.get("completion_tokens") or 0),
                              "length" if choice.get("finish_reason") == "length" else "stop")
            return comp, int(usage.get("prompt_tokens") or 0)
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise BackendError(f"openai backend: unexpected response shape ({e}): {str(data)[:300]}") from None

    def submit(self, key, request: ChatRequest) -> None:
        if request.lora:
            raise BackendError("openai backend: name the adapter as the model (vLLM serves it with "
                               "--lora-modules NAME=PATH) instead of a per-request LoRA path")
        futures = []
        for _ in range(request.n):
            with self._lock:
                server = min(range(len(self._load)), key=lambda i: (self._load[i], i))
                self._load[server] += 1
            futures.append(self._pools[server].submit(self._one, request, server))
        self._inflight[key] = (time.perf_counter(), futures)

    def pending(self) -> int:
        return len(self._inflight)

    def poll(self, timeout_s: float = 1.0) -> list:
        if not self._inflight:
            return []
        futures = [f for _, fs in self._inflight.values() for f in fs]
        wait(futures, timeout=timeout_s, return_when=FIRST_COMPLETED)
        done = []
        for key, (t0, fs) in list(self._inflight.items()):
            if all(f.done() for f in fs):
                del self._inflight[key]
                answers = [f.result() for f in fs]  # raises the BackendError of a failed call
                done.append((key, ChatResult([c for c, _ in answers], max(p for _, p in answers),
                                             time.perf_counter() - t0, self.name, self.model)))
        return done

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)


def server_urls(value: str | Sequence[str]) -> list[str]:
    """One or more server base URLs (a list, or one string with commas or spaces between them)."""
    items = value.replace(",", " ").split() if isinstance(value, str) else [str(v).strip() for v in value]
    urls = [u.rstrip("/") for u in items if u]
    if not urls:
        raise BackendError("openai backend: no server URL given")
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise BackendError(f"openai backend: '{bad[0][:200]}' is not an http(s) URL")
    return list(dict.fromkeys(urls))


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return min(30.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None
