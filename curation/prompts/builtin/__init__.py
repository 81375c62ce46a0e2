"""Built-in prompt sets: shipped copies of permissively licensed safety benchmarks (see LICENSES.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from curation.prompts.importer import ImportConfig, ImportReport, PromptImporter

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class BuiltinSet:
    name: str
    file: str  # relative to DATA
    description: str
    license: str
    source: str
    split: str
    mapping: dict[str, str]
    behavior: Optional[str] = None
    behavior_column: Optional[str] = None
    behavior_map: dict[str, str] = field(default_factory=dict)
    kind: str = "prompts"
    transform: Optional[Callable[[dict[str, Any]], Optional[dict[str, Any]]]] = None
    use: str = ""

    @property
    def path(self) -> Path:
        return DATA / self.file

    def config(self, project_id: int = 1) -> ImportConfig:
        return ImportConfig(
            set_name=self.name, mapping=dict(self.mapping), behavior=self.behavior,
            behavior_column=self.behavior_column, behavior_map=dict(self.behavior_map), split=self.split,
            set_description=self.description, set_source=self.source, set_license=self.license,
            set_kind=self.kind, project_id=project_id,
        )


def _harmbench(row: dict[str, Any]) -> Optional[dict[str, Any]]:
    # Copyright rows are scored by hash, not refusal; contextual rows carry their context before the request.
    kind = row.get("FunctionalCategory")
    if kind == "copyright":
        return None
    if kind == "contextual" and row.get("ContextString"):
        row["prompt"] = f"{row['ContextString']}\n\n---\n\n{row['Behavior']}"
    else:
        row["prompt"] = row["Behavior"]
    return row


_HB = "centerforaisafety/HarmBench data/behavior_datasets (Mazeika et al., 2024)"
_JBB = "JailbreakBench/jailbreakbench behaviors (Chao et al., 2024)"

BUILTIN_SETS: dict[str, BuiltinSet] = {s.name: s for s in [
    BuiltinSet("xstest", "xstest/xstest_prompts.csv",
               "XSTest: 250 safe prompts that look unsafe and 200 unsafe contrast prompts (exaggerated safety).",
               "CC-BY-4.0", "paul-rottger/exaggerated-safety (Röttger et al., 2024)", "eval",
               {"text": "prompt", "source_id": "id", "category": "type"},
               behavior_column="label", behavior_map={"safe": "comply", "unsafe": "refuse"},
               use="over-refusal (safe rows), harmful compliance (unsafe rows)"),
    BuiltinSet("harmbench_val", "harmbench/harmbench_behaviors_text_val.csv",
               "HarmBench validation behaviours, standard and contextual (copyright rows left out).",
               "MIT", _HB, "train", {"text": "prompt", "source_id": "BehaviorID", "category": "SemanticCategory"},
               behavior="refuse", transform=_harmbench, use="harmful requests for training"),
    BuiltinSet("harmbench_test", "harmbench/harmbench_behaviors_text_test.csv",
               "HarmBench test behaviours, standard and contextual (copyright rows left out).",
               "MIT", _HB, "eval", {"text": "prompt", "source_id": "BehaviorID", "category": "SemanticCategory"},
               behavior="refuse", transform=_harmbench, use="held-out harmful requests"),
    BuiltinSet("advbench", "advbench/harmful_behaviors.csv",
               "AdvBench harmful behaviours (many near-duplicates).", "MIT",
               "llm-attacks/llm-attacks data/advbench (Zou et al., 2023)", "train", {"text": "goal"},
               behavior="refuse", use="harmful requests for training"),
    BuiltinSet("strongreject", "strongreject/strongreject_dataset.csv",
               "StrongREJECT forbidden prompts. License not verified upstream (likely MIT): research use only.",
               "not verified (research use only)", "alexandrasouly/strongreject (Souly et al., 2024)", "eval",
               {"text": "forbidden_prompt", "category": "category"}, behavior="refuse",
               use="held-out harmful requests"),
    BuiltinSet("jbb_harmful", "jailbreakbench/jbb_harmful_behaviors.csv",
               "JailbreakBench harmful behaviours.", "MIT", _JBB, "eval",
               {"text": "Goal", "source_id": "Behavior", "category": "Category"}, behavior="refuse",
               use="held-out harmful requests"),
    BuiltinSet("jbb_benign", "jailbreakbench/jbb_benign_behaviors_RECONSTRUCTED.csv",
               "JailbreakBench benign behaviours, topic-matched twins of the harmful ones (reconstructed from the "
               "benchmark's generation script).", "MIT", _JBB, "eval",
               {"text": "Goal", "source_id": "Index", "category": "Category"}, behavior="comply",
               use="over-refusal"),
    BuiltinSet("coconot_eval", "coconot/coconot_eval.jsonl",
               "CoCoNot noncompliance evaluation prompts (5 categories; the model should not fully comply).",
               "MIT", "allenai/noncompliance (Brahman et al., 2024)", "eval",
               {"text": "prompt", "source_id": "id", "category": "subcategory"}, behavior="refuse",
               use="noncompliance; rubric in coconot/refusal_evaluation_rubric.json"),
    BuiltinSet("coconot_contrast", "coconot/coconot_contrast_eval.jsonl",
               "CoCoNot contrast prompts: benign requests that look like noncompliance cases.", "MIT",
               "allenai/noncompliance (Brahman et al., 2024)", "train",
               {"text": "prompt", "source_id": "id", "category": "subcategory"}, behavior="comply",
               use="benign prompts (over-refusal contrast)"),
    BuiltinSet("simplesafetytests", "simplesafetytests/sst_test_cases.csv",
               "SimpleSafetyTests: 100 clear-cut harmful prompts in 5 harm areas.", "CC-BY-4.0",
               "bertiev/SimpleSafetyTests (Vidgen et al., 2023)", "eval",
               {"text": "prompts_final", "source_id": "id", "category": "harm_area"}, behavior="refuse",
               use="held-out harmful requests (sanity set)"),
    BuiltinSet("alpaca_harmless", "alpaca_harmless/harmless_train.json",
               "Ordinary benign instructions (Alpaca items, as split by Arditi et al. for the refusal direction).",
               "CC-BY-NC-4.0 (Alpaca items; split Apache-2.0)",
               "andyrdt/refusal_direction dataset/splits/harmless_train.json (Arditi et al., 2024)", "train",
               {"text": "instruction", "category": "category"}, behavior="comply",
               use="general benign instructions for training (helpfulness)"),
    BuiltinSet("jailbreak_templates", "jailbreak_templates/jailbreak_prompts.csv",
               "Jailbreak templates with an [INSERT PROMPT HERE] slot (applied to prompts by the mutation step).",
               "MIT", "yjw1029/Self-Reminder-Data (Xie et al., 2023)", "train",
               {"text": "prompt", "source_id": "name", "category": "name"}, behavior="refuse",
               kind="jailbreak_templates", use="template jailbreaks"),
]}


def import_builtin(engine, name: str, *, progress=None, created_by: int | None = None,
                   job_id: int | None = None, project_id: int = 1) -> ImportReport:
    if name not in BUILTIN_SETS:
        raise KeyError(f"no built-in set '{name}'; available: {', '.join(BUILTIN_SETS)}")
    bs = BUILTIN_SETS[name]
    importer = PromptImporter(engine, bs.config(project_id), row_transform=bs.transform, created_by=created_by,
                              job_id=job_id)
    return importer.run(bs.path, progress=progress)
