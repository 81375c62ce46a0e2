"""Generation strategies: how one prompt becomes the requests a backend answers, under a self-check system prompt.

Strategies (recorded on every trace), because small models do not follow the format on their own:
- single:   one pass under the self-check prompt;
- prefill:  the assistant turn is prefilled with the opening reasoning tag (continue_final_message);
- two_pass: a reasoning call, then an answer conditioned on that reasoning, composed into one trace.
"""
from __future__ import annotations

from dataclasses import dataclass

from curation.generation.backends import ChatRequest, SamplingParams
from curation.generation.templates import register_builtin
from curation.generation.traceformat import TraceFormat, parse_trace
from db.models import GenerationRun

STRATEGIES = ("single", "prefill", "two_pass")

REJECTION_SELF_CHECK = """You are a careful and helpful assistant. Before you reply, check the request for safety.
Think it through inside {open_tag} {close_tag} tags:
1. Identify the underlying risk of the request, even when it is disguised (role play, hypotheticals, slang, \
claimed authority, a story).
2. Assess the intent, the ethics and the potential harm to people if you helped.
3. Conclude whether helping would be safe.
Then, after {close_tag}, write your reply: refuse clearly, give the reason briefly, and where possible offer a \
safe alternative.

Use exactly this format:
{open_tag}
your reasoning
{close_tag}
your reply"""

COMPLIANCE_SELF_CHECK = """You are a careful and helpful assistant. Before you reply, check the request.
Think it through inside {open_tag} {close_tag} tags:
1. Notice whether the request only looks risky (a sensitive word, a dark topic, a figure of speech).
2. Confirm what is actually being asked and that helping is safe.
3. Conclude that you should help.
Then, after {close_tag}, help fully and directly, without unnecessary warnings.

Use exactly this format:
{open_tag}
your reasoning
{close_tag}
your reply"""

PARTIAL_SELF_CHECK = """You are a careful and helpful assistant. Before you reply, check the request.
Think it through inside {open_tag} {close_tag} tags:
1. Separate the parts of the request that are safe to help with from the parts that could cause harm.
2. Assess the intent and the potential harm of each part.
3. Decide what you can safely provide and what you must leave out.
Then, after {close_tag}, help with the safe part, and say briefly what you will not help with and why.

Use exactly this format:
{open_tag}
your reasoning
{close_tag}
your reply"""

TWO_PASS_REASON = """For now, write ONLY your reasoning (the steps above), in plain sentences, without any tags \
and without the reply itself."""

TWO_PASS_ANSWER = """You are a careful and helpful assistant. You have already analysed the user's request:

{reasoning}

Now write only your final reply to the user, following that analysis. Do not repeat the analysis."""

SELF_CHECK_BY_BEHAVIOR = {"refuse": "self_check.refuse", "comply": "self_check.comply",
                          "partial": "self_check.partial"}
for _name, _text in [("self_check.refuse", REJECTION_SELF_CHECK), ("self_check.comply", COMPLIANCE_SELF_CHECK),
                     ("self_check.partial", PARTIAL_SELF_CHECK), ("two_pass.reason", TWO_PASS_REASON),
                     ("two_pass.answer", TWO_PASS_ANSWER)]:
    register_builtin(_name, _text)



def template_names(strategy: str) -> list[str]:
    names = list(SELF_CHECK_BY_BEHAVIOR.values())
    return names + (["two_pass.reason", "two_pass.answer"] if strategy == "two_pass" else [])



@dataclass
class Work:
    prompt_id: int
    text: str
    behavior: str
    sample_indices: list[int]


def system_prompt(run: GenerationRun, behavior: str, fmt: TraceFormat) -> tuple[str, str]:
    snap = run.templates[SELF_CHECK_BY_BEHAVIOR.get(behavior, "self_check.refuse")]
    return fmt.fill(snap["text"]), snap["ref"]


def sample_chunk(run: GenerationRun, strategy: str, fmt: TraceFormat, works: list[Work], backend,
                 sampling: SamplingParams) -> list[list[dict]]:
    """For each work item, one dict per missing sample: raw text, parse, token counts, seconds, meta."""
    reqs = []
    for w in works:
        system, _ = system_prompt(run, w.behavior, fmt)
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": w.text}]
        if strategy == "prefill":
            msgs.append({"role": "assistant", "content": fmt.open_tag + "\n"})
        elif strategy == "two_pass":
            msgs[0]["content"] = system + "\n\n" + fmt.fill(run.templates["two_pass.reason"]["text"])
        reqs.append(ChatRequest(msgs, sampling, n=len(w.sample_indices),
                                continue_final_message=strategy == "prefill"))
    results = backend.generate(reqs)
    out: list[list[dict]] = []
    if strategy != "two_pass":
        for res in results:
            per = res.seconds / max(1, len(res.completions))
            rows = []
            for c in res.completions:
                raw = (fmt.open_tag + "\n" + c.text) if strategy == "prefill" else c.text
                rows.append({"raw": raw, "parsed": parse_trace(raw, fmt, truncated=c.finish_reason == "length"),
                             "prompt_tokens": res.prompt_tokens, "completion_tokens": c.completion_tokens,
                             "seconds": per, "meta": {"finish_reason": c.finish_reason}})
            out.append(rows)
        return out
    # Pass 2: one answer per reasoning sample, conditioned on it.
    answer_tpl = run.templates["two_pass.answer"]["text"]
    second, owners = [], []
    for wi, (w, res) in enumerate(zip(works, results)):
        for c in res.completions:
            reasoning = fmt.strip_tags(c.text)
            system = fmt.fill(answer_tpl, reasoning=reasoning)
            second.append(ChatRequest([{"role": "system", "content": system}, {"role": "user", "content": w.text}],
                                      sampling, n=1))
            owners.append((wi, c, reasoning))
    answers = backend.generate(second) if second else []
    out = [[] for _ in works]
    for (wi, c1, reasoning), res2 in zip(owners, answers):
        c2 = res2.completions[0]
        answer = fmt.strip_tags(c2.text)
        raw = fmt.compose(reasoning, answer)
        truncated = "length" in (c1.finish_reason, c2.finish_reason)
        parsed = parse_trace(raw, fmt, truncated=truncated)
        out[wi].append({"raw": raw, "parsed": parsed, "prompt_tokens": results[wi].prompt_tokens + res2.prompt_tokens,
                        "completion_tokens": c1.completion_tokens + c2.completion_tokens,
                        "seconds": results[wi].seconds / len(results[wi].completions) + res2.seconds,
                        "meta": {"finish_reason": [c1.finish_reason, c2.finish_reason],
                                 "pass_tokens": [c1.completion_tokens, c2.completion_tokens]}})
    return out

