"""The trace parser: well-formed output, each kind of malformed output, and a fuzz that it never raises."""
from __future__ import annotations

import random

import pytest

from curation.generation.traceformat import DEFAULT_FORMAT, TraceFormat, parse_trace


def test_well_formed():
    p = parse_trace("<think>\nThe request is harmful.\n</think>\nI can't help with that.")
    assert (p.reasoning, p.response, p.parse_ok, p.error) == ("The request is harmful.", "I can't help with that.",
                                                             True, None)


@pytest.mark.parametrize("raw, error", [
    ("I can't help with that.", "no <think>…</think> reasoning block"),
    ("The request is harmful.\n</think>\nNo.", "missing opening <think>"),
    ("<think>\nThe request is harm", "reasoning never closed with </think>"),
    ("<think>\nIt is harmful.\n</think>\n   ", "empty answer"),
    ("<think>   </think> Sure.", "empty reasoning"),
    ("Okay. <think>x y z</think> answer", "text before <think>"),
    ("<think>a</think> b <think>c</think>", "a second reasoning tag in the answer"),
])
def test_malformed(raw, error):
    p = parse_trace(raw)
    assert not p.parse_ok
    assert p.error == error


def test_truncated_answer_is_not_ok_but_keeps_text():
    p = parse_trace("<think>fine</think> Here is a long answer that was cut", truncated=True)
    assert not p.parse_ok and p.error == "answer truncated at max_tokens"
    assert p.reasoning == "fine" and p.response.startswith("Here is")


def test_missing_tag_keeps_recoverable_parts():
    p = parse_trace("reasoning only </think> the answer")
    assert p.reasoning == "reasoning only" and p.response == "the answer"


def test_custom_format():
    fmt = TraceFormat("[R]", "[/R]")
    p = parse_trace("[R] why [/R] what", fmt)
    assert p.parse_ok and p.reasoning == "why" and p.response == "what"
    assert not parse_trace("<think>why</think> what", fmt).parse_ok
    with pytest.raises(ValueError):
        TraceFormat("<t>", "<t>")


@pytest.mark.parametrize("raw", [None, 12, b"<think>x</think>y", "", "<think>", "</think>", "</think><think>",
                                 "<think></think>", "<<think>>", "<think>\x00</think>\x00"])
def test_odd_inputs_never_raise(raw):
    p = parse_trace(raw)
    assert isinstance(p.reasoning, str) and isinstance(p.response, str)
    assert p.parse_ok is False or (p.reasoning and p.response)


def test_fuzz_never_raises_and_ok_means_both_parts():
    rng = random.Random(1234)
    pieces = ["<think>", "</think>", "<thi", "nk>", "</", "\n", " ", "I'm sorry.", "Sure!", "harm", "é", "\x00", ""]
    for _ in range(3000):
        raw = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.3:
            raw = raw[:rng.randint(0, len(raw))]  # truncate anywhere, even inside a tag
        p = parse_trace(raw, DEFAULT_FORMAT, truncated=rng.random() < 0.1)
        if p.parse_ok:
            assert p.reasoning and p.response and "</think>" not in p.response and "<think>" not in p.response
            assert DEFAULT_FORMAT.compose(p.reasoning, p.response).count("</think>") >= 1
        else:
            assert p.error
