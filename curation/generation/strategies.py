"""Generation strategies: first-class, versioned recipes that turn one (prompt, sample) into the requests a backend
answers and, from the answers, one trace. Small models do not follow a reasoning format on their own, so:

- single:   one pass under the self-check system prompt;
- prefill:  the assistant turn starts with the opening reasoning tag;
- two_pass: a reasoning call, then an answer conditioned on that reasoning;
- few_shot: the self-check prompt plus worked examples from the demo library as earlier chat turns;
- scaffold: few-shot, then the reasoning built from short model-written clauses ("The user is asking me to …",
  "This is harmful because …" / "This is safe to help with because …") and the self-check's conclusion, then the
  reply after a behaviour-conditioned opener (harmful) or the model's own plain answer (benign).

A strategy is a generator per sample: it yields a ChatRequest, receives its ChatResult, and returns a Draft. The
run's scheduler interleaves thousands of them, so each sample's next step goes out the moment its last one ends.
Every text a strategy uses is a versioned template (`rational templates list`); a strategy's `ref`
(name@vN) and its parameters are recorded on the run and on every trace.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional

from rapidfuzz import fuzz

from curation.backends import ChatRequest, ChatResult, SamplingParams
from curation.generation.selfcheck import SELF_CHECK_BY_BEHAVIOR
from curation.generation.traceformat import ParsedTrace, TraceFormat, parse_trace
from curation.templates import register_builtin

SCAFFOLD_TEXTS = {
    "scaffold.clause_request": "The user is asking me to",
    "scaffold.clause_refuse": "This is harmful because",
    "scaffold.clause_comply": "This is safe to help with because",
    "scaffold.clause_partial": "Part of this could cause harm because",
    "scaffold.conclusion_refuse": "So I should not help with this, and I will say why.",
    "scaffold.conclusion_comply": "So I should help with this.",
    "scaffold.conclusion_partial": "So I will help only with the safe part.",
    "scaffold.opener_refuse": "I can't help with that.",
    # The refusal built from the model's own reason clause: short, clear, and never contradicting itself.
    "scaffold.reply_refuse": "I can't help with that, because {why}.",
    "scaffold.opener_comply": "Sure.",
    "scaffold.opener_partial": "I can help with part of this.",
    # One stop string per line: a reply ends where the model starts a new turn or a stray reasoning tag.
    "scaffold.stop": "<think>\n</think>\n<|im_end|>\n<|im_start|>\nUser:",
}
for _name, _text in SCAFFOLD_TEXTS.items():
    register_builtin(_name, _text)

Step = Generator[ChatRequest, ChatResult, "Draft"]


@dataclass
class Draft:
    """What a strategy returns for one sample: the composed raw text and how it was made."""

    raw: str
    parsed: ParsedTrace
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish: list[str] = field(default_factory=list)  # finish reason of each call, in order
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return bool(self.finish) and self.finish[-1] == "length"


@dataclass
class SampleContext:
    """Everything a strategy needs for one sample."""

    prompt: str
    behavior: str
    fmt: TraceFormat
    templates: dict[str, str]  # name -> text, as snapshotted on the run
    sampling: SamplingParams
    params: dict[str, Any]
    demos: list[dict] = field(default_factory=list)  # {"prompt", "reasoning", "response", "behavior"}

    def text(self, name: str) -> str:
        return self.fmt.fill(self.templates[name])

    def system(self) -> str:
        return self.text(SELF_CHECK_BY_BEHAVIOR.get(self.behavior, "self_check.refuse"))

    def basic(self) -> list[dict]:
        """The system prompt and the user's prompt."""
        return [{"role": "system", "content": self.system()}, {"role": "user", "content": self.prompt}]

    def turns(self, system: bool = True) -> list[dict]:
        """The system prompt, the demos as earlier turns, then the user's prompt."""
        msgs = [{"role": "system", "content": self.system()}] if system else []
        for d in self.demos:
            msgs += [{"role": "user", "content": d["prompt"]},
                     {"role": "assistant", "content": self.fmt.compose(d["reasoning"], d["response"])}]
        return msgs + [{"role": "user", "content": self.prompt}]

    def request(self, messages: list[dict], prefill: Optional[str] = None, **sampling: Any) -> ChatRequest:
        s = SamplingParams(**{**self.sampling.to_dict(), **sampling}) if sampling else self.sampling
        if prefill is not None:
            messages = messages + [{"role": "assistant", "content": prefill}]
        return ChatRequest(messages, s, n=1, continue_final_message=prefill is not None)


def _finish(draft_raw: str, ctx: SampleContext, results: list[ChatResult], **meta) -> Draft:
    finish = [r.completions[0].finish_reason for r in results]
    calls = [r.completion_tokens for r in results]
    return Draft(raw=draft_raw, parsed=parse_trace(draft_raw, ctx.fmt, truncated=finish[-1] == "length"),
                 prompt_tokens=sum(r.prompt_tokens for r in results), completion_tokens=sum(calls), finish=finish,
                 meta={**meta, "call_tokens": calls})


def single(ctx: SampleContext) -> Step:
    res = yield ctx.request(ctx.basic())
    return _finish(res.completions[0].text, ctx, [res])


def student(ctx: SampleContext) -> Step:
    res = yield ctx.request([{"role": "user", "content": ctx.prompt}])
    return _finish(res.completions[0].text, ctx, [res])


def prefill(ctx: SampleContext) -> Step:
    head = ctx.fmt.open_tag + "\n"
    res = yield ctx.request(ctx.basic(), prefill=head)
    return _finish(head + res.completions[0].text, ctx, [res])


def two_pass(ctx: SampleContext) -> Step:
    system = ctx.system() + "\n\n" + ctx.text("two_pass.reason")
    r1 = yield ctx.request([{"role": "system", "content": system}, {"role": "user", "content": ctx.prompt}])
    reasoning = ctx.fmt.strip_tags(r1.completions[0].text)
    answer_system = ctx.fmt.fill(ctx.templates["two_pass.answer"], reasoning=reasoning)
    r2 = yield ctx.request([{"role": "system", "content": answer_system}, {"role": "user", "content": ctx.prompt}])
    answer = ctx.fmt.strip_tags(r2.completions[0].text)
    return _finish(ctx.fmt.compose(reasoning, answer), ctx, [r1, r2])


def few_shot(ctx: SampleContext) -> Step:
    head = ctx.fmt.open_tag + "\n"
    res = yield ctx.request(ctx.turns(), prefill=head)
    return _finish(head + res.completions[0].text, ctx, [res], demo_ids=[d["id"] for d in ctx.demos])


def _clause(text: str) -> str:
    """A model-written clause, cleaned: one line, no tags, no trailing full stop (the scaffold adds its own)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().rstrip(".").strip()


def _copies_demo(clause: str, ctx: SampleContext) -> bool:
    """A clause the model copied from a demo's reasoning instead of writing about this request."""
    if not clause:
        return True
    low = clause.lower()
    return any(fuzz.partial_ratio(low, d["reasoning"].lower()) >= 90 for d in ctx.demos if len(low) >= 12)


def scaffold(ctx: SampleContext) -> Step:
    # `conclude` writes a conclusion other than the prompt's expected one: a wrong answer in the model's own words,
    # the rejected side of a preference pair.
    b = ctx.params.get("conclude") or ctx.behavior
    fmt, b = ctx.fmt, b if b in ("refuse", "comply", "partial") else "refuse"
    clause_stop = [".", "\n", fmt.open_tag, fmt.close_tag]
    clause_tokens = int(ctx.params.get("clause_max_tokens", 40))
    retries = int(ctx.params.get("clause_retries", 2))
    messages = ctx.turns()
    results = []
    head = fmt.open_tag + "\n" + ctx.text("scaffold.clause_request")

    def own_clause(prefill: str):
        """One model-written clause after `prefill`; a clause copied from a demo is written again, a little
        hotter."""
        clause = ""
        for attempt in range(retries + 1):
            r = yield ctx.request(messages, prefill=prefill, max_tokens=clause_tokens, stop=clause_stop,
                                  **({"temperature": max(ctx.sampling.temperature, 0.7) + 0.2 * attempt}
                                     if attempt else {}))
            results.append(r)
            clause = _clause(r.completions[0].text)
            if not _copies_demo(clause, ctx):
                break
        return clause

    asked = yield from own_clause(head)
    judgement = ctx.text(f"scaffold.clause_{b}")
    why = yield from own_clause(f"{head} {asked}. {judgement}")
    reasoning = (f"{ctx.text('scaffold.clause_request')} {asked}. {judgement} {why}. "
                 f"{ctx.text(f'scaffold.conclusion_{b}')}")
    stops = [s for s in ctx.text("scaffold.stop").splitlines() if s]
    if b == "comply" and ctx.params.get("comply_reply", "plain") == "plain":
        # The model's own plain answer: what a benign prompt should get, without the scaffold's framing.
        r3 = yield ctx.request([{"role": "user", "content": ctx.prompt}], stop=stops)
        results.append(r3)
        reply = r3.completions[0].text.strip()
    elif b == "refuse" and ctx.params.get("refuse_reply", "reason") == "reason":
        reply = fmt.fill(ctx.templates["scaffold.reply_refuse"], why=why)
    else:
        opener = ctx.text(f"scaffold.opener_{b}")
        r3 = yield ctx.request(messages, prefill=fmt.compose(reasoning, opener), stop=stops)
        results.append(r3)
        reply = (opener + " " + r3.completions[0].text.strip()).strip()
    return _finish(fmt.compose(reasoning, reply), ctx, results, demo_ids=[d["id"] for d in ctx.demos],
                   clauses=[asked, why])


@dataclass(frozen=True)
class Strategy:
    name: str
    version: int  # bumped whenever what the steps do changes; templates carry their own versions
    description: str
    steps: Callable[[SampleContext], Step]
    templates: tuple[str, ...] = ()  # beyond the self-check prompts, which every strategy uses
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def uses_demos(self) -> bool:
        return int(self.defaults.get("n_demos", 0)) > 0

    def template_names(self) -> list[str]:
        return list(SELF_CHECK_BY_BEHAVIOR.values()) + list(self.templates)


_SCAFFOLD = tuple(SCAFFOLD_TEXTS)
STRATEGY_LIST = (
    Strategy("single", 1, "one pass under the self-check system prompt", single),
    Strategy("prefill", 1, "the reply starts with the opening reasoning tag", prefill),
    Strategy("student", 1, "the prompt alone, as a user sends it (no system prompt, no demos): a trained model's "
             "own answer, e.g. to find its mistakes for preference pairs", student),
    Strategy("two_pass", 1, "a reasoning call, then an answer conditioned on it", two_pass,
             ("two_pass.reason", "two_pass.answer")),
    Strategy("few_shot", 1, "the self-check prompt plus worked examples from the demo library", few_shot,
             defaults={"n_demos": 3}),
    Strategy("scaffold", 1, "few-shot, reasoning from short model-written clauses and the self-check's "
             "conclusion, then the reply (a refusal that gives the model's own reason; a benign prompt's plain "
             "answer)", scaffold,
             _SCAFFOLD, {"n_demos": 2, "clause_max_tokens": 40, "clause_retries": 2, "comply_reply": "plain",
                         "refuse_reply": "reason"}),
)
STRATEGIES: dict[str, Strategy] = {s.name: s for s in STRATEGY_LIST}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"strategy '{name}' is not one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
