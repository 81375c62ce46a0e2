"""The loop's settings and their defaults: one home for `rational loop`, the Home page's quick start and the
worker's job. Light on purpose (the CLI reads the defaults without importing the loop's machinery)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from core.vocabulary import DEFAULT_MODEL
from workflows.loop_filter import LEVELS

ABLATIONS = ("keep_system_prompt", "answer_only", "no_benign")
HUMAN = "human"  # the arm trained on a review queue's approved and edited traces
PREFERENCE = "preference"  # DPO on the SFT student's own mistakes, on top of the main arm (loop_preference.py)
HARMFUL_TRAIN = ("harmbench_val", "advbench")
BENIGN_TRAIN = ("coconot_contrast", "alpaca_harmless")  # JBB benign and XSTest are held out for over-refusal
EVAL_SUITES = ("harmful", "attacks", "over_refusal")


class LoopError(RuntimeError):
    """The loop cannot go on (e.g. no trace survived the filter); the message names the stage and why."""


@dataclass
class LoopConfig:
    model: str = DEFAULT_MODEL  # the student: trained and evaluated
    teacher: Optional[str] = None  # generates traces (and style mutations); default: the student itself
    backend: str = "auto"  # auto: the engine measured fastest on this CPU for this loop (curation.backends.choice)
    strategy: str = "scaffold"  # 530 of 582 samples usable on the embedded model (two_pass: 5 of 176 refusals)
    samples: int = 2
    temperature: float = 0.7
    gen_max_tokens: int = 128
    limit_train: int = 128  # prompts per behaviour (harmful / benign) for generation
    limit_eval: int = 100  # prompts per eval set (per set and attack for the attack suite)
    eval_max_tokens: int = 128
    mutation: str = "templates"  # templates (jailbreak templates) | styles (SORRY-Bench rewrites by the teacher)
    mutation_limit: int = 16  # harmful train prompts mutated
    # Contrast twins among the benign training prompts: the harmful train prompts' topics with the intent stripped,
    # expected comply (refusal keyed to topic words made JBB-benign over-refusal 0.72 without them); at most half
    # of limit_train.
    twins: int = 32
    jbb_methods: list[str] = field(default_factory=lambda: ["PAIR", "GCG", "JBC"])
    # Looser levels fill a behaviour up to min_per_behavior survivors, strictest first.
    fallback: list[str] = field(default_factory=lambda: ["matches_expected"])
    min_per_behavior: int = 10
    generation_run: Optional[int] = None  # resume/reuse this generation run instead of starting a new one
    acting_user: Optional[int] = None  # who runs it (None: the local operator, the CLI)
    min_train_rows: int = 10  # fewer approved traces: stop at filtering (a LoRA run on 1-2 rows says nothing)
    balance_ratio: float = 3.0  # at most this many approved traces of one behaviour per trace of the other
    # Approved traces per prompt at most (the strictest of its K samples): more prompts rather than more copies of
    # one for the same training time; the other survivors stay pending for review.
    per_prompt: int = 1
    # answer_only by default (the paper's claim at this size); the others by flag, within the 20-minute budget
    ablations: list[str] = field(default_factory=lambda: ["answer_only"])
    from_queue: Optional[str] = None  # the human arm: train also on what reviewers approved in this queue
    train_preset: Optional[str] = None
    # Two epochs at 5e-4 over ~230 rows: 7 minutes for main and 5 for answer-only on 2 cores, what the 20-minute
    # budget leaves. One epoch moved harmful refusal only 0.04 -> 0.11 (a 14-minute loop); two reached 0.80
    # (docs/results/rational_loop).
    train_overrides: dict[str, Any] = field(default_factory=lambda: {"num_train_epochs": 2, "learning_rate": 5e-4,
                                                                     "max_length": 384})
    # The preference stage: DPO pairs from the SFT student's mistakes on its training prompts, trained on top.
    preference: bool = True
    # Safety pairs beside the mistakes: the student's deliberate compliance with harmful prompts it refused, as many
    # as the mistakes' pairs lean towards helping (mistakes alone took harmful refusal 0.86 -> 0.57).
    safety_pairs: bool = True
    # Four pairs a step, twice accumulated: a step holds chosen, rejected and the reference's pass of each, and eight
    # pairs at once took 16 GB on a CPU.
    preference_overrides: dict[str, Any] = field(default_factory=lambda: {
        "num_train_epochs": 2, "learning_rate": 1e-4, "max_length": 384, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2})
    # Selection: every trained arm answers this many harmful and benign dev prompts per behaviour (training sources,
    # not trained on; never the held-out sets), and the rule in workflows/loop_selection.py picks one. 0: off.
    dev_size: int = 32
    eval_suites: list[str] = field(default_factory=lambda: list(EVAL_SUITES))
    # The ablation arms answer only these of eval_suites: they compare with main on the goal sets, and the attacks
    # suite (282 more prompts per arm) stays the main arm's.
    ablation_suites: list[str] = field(default_factory=lambda: ["harmful", "over_refusal"])
    out: Optional[str] = None  # report folder; default results/<tag> under the artifact root
    seed: int = 0
    tag: str = ""  # names this loop's sets/exports/runs; default: a timestamp

    def validate(self) -> None:
        bad = [a for a in self.ablations if a not in ABLATIONS]
        if bad:
            raise ValueError(f"ablation '{bad[0]}' is not one of {', '.join(ABLATIONS)}")
        bad = [f for f in self.fallback if f not in LEVELS[1:]]
        if bad:
            raise ValueError(f"fallback '{bad[0]}' is not one of {', '.join(LEVELS[1:])}")
        if self.backend not in ("auto", "vllm", "transformers", "openai"):
            raise ValueError(f"backend '{self.backend}' is not one of auto, vllm, transformers, openai")
        if self.mutation not in ("templates", "styles", "none"):
            raise ValueError(f"mutation '{self.mutation}' is not one of templates, styles, none")
        if self.dev_size < 0:
            raise ValueError(f"dev_size must be 0 or more, got {self.dev_size}")
        if self.twins < 0:
            raise ValueError(f"twins must be 0 or more, got {self.twins}")
        for name in ("samples", "limit_train", "limit_eval", "gen_max_tokens", "eval_max_tokens", "per_prompt"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.balance_ratio < 1:
            raise ValueError(f"balance_ratio must be >= 1, got {self.balance_ratio}")

    def expected_tokens(self) -> int:
        """About how many tokens the loop generates: scaffold samples (two short clauses and a reply) and greedy
        eval answers (refusals end early: half the budget on average), for choosing an engine."""
        generation = 2 * self.limit_train * self.samples * (self.gen_max_tokens + 40)
        if self.preference:  # the SFT student answers its training prompts
            generation += 2 * self.limit_train * self.eval_max_tokens // 2
            if self.safety_pairs:  # about a quarter of the harmful prompts, written on purpose
                generation += self.limit_train // 4 * (self.gen_max_tokens + 40)
        generation += self.dev_size * 2 * len(self.arms) * self.eval_max_tokens // 2
        outputs = self.limit_eval * (6 + 5 * len(self.arms))  # base and main: every suite; other arms: goal sets
        return int(generation + outputs * self.eval_max_tokens / 2)

    @property
    def arms(self) -> list[str]:
        return (["main"] + list(self.ablations) + ([PREFERENCE] if self.preference else [])
                + ([HUMAN] if self.from_queue else []))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoopConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
