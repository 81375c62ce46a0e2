"""Export snapshots: an immutable, named, reproducible training set built from reviewed traces.

- SFT rows are TRL conversational `messages`: the prompt alone as the user turn (no self-check system prompt), the
  assistant turn `<think>{reasoning}</think>\n\n{response}` with the annotator's edit where there is one.
- DPO rows are TRL `prompt` / `chosen` / `rejected`: an edit gives (edited, original); a prompt with an approved
  and a rejected trace gives (approved, rejected).
- The same filter over the same data gives byte-identical files: rows are ordered by id, the validation split is
  chosen by a seeded hash of the prompt id, and no file holds the export's name, time or user.
- Files are written to a hidden temp folder and renamed into place; the row becomes `ready` only after that.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import db.models as models
from curation.contamination import DEFAULT_THRESHOLD, ContaminationReport, check_contamination
from db.models import EXPORT_KINDS, ExportItem, ExportSnapshot, Prompt, PromptSet, Trace, utcnow

FORMATS = ("hf", "jsonl", "parquet")
SPLITS = ("train", "validation")
DEFAULT_TEMPLATE = "<think>{reasoning}</think>\n\n{response}"
Progress = Callable[[int, Optional[int], str], None]
_SLOT = re.compile(r"\{(reasoning|response)\}")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class ExportError(ValueError):
    """Bad export input or state; the message names the field."""


class ContaminationError(ExportError):
    def __init__(self, report: ContaminationReport):
        super().__init__("export refused: " + report.summary() + " (pass --allow-contamination to export anyway)")
        self.report = report


@dataclass
class ExportFilter:
    statuses: list[str] = field(default_factory=lambda: ["approved"])
    set_names: Optional[list[str]] = None
    splits: list[str] = field(default_factory=lambda: ["train"])
    mutations: Optional[list[str]] = None  # "none" selects unmutated prompts
    behaviors: Optional[list[str]] = None
    min_quality: Optional[int] = None  # annotation quality 1..5; traces without one are left out when set
    run_ids: Optional[list[int]] = None
    project_id: int = 1

    _LISTS = {"statuses": str, "set_names": str, "splits": str, "mutations": str, "behaviors": str, "run_ids": int}
    _ALIASES = {"status": "statuses", "sets": "set_names", "set": "set_names", "split": "splits",
                "mutation": "mutations", "behavior": "behaviors", "behaviour": "behaviors", "runs": "run_ids",
                "run": "run_ids", "quality": "min_quality"}

    def validate(self) -> None:
        bad = set(self.statuses) - set(models.TRACE_STATUSES)
        if not self.statuses or bad:
            raise ExportError(f"filter field 'statuses': {sorted(bad) or 'empty'} not among {models.TRACE_STATUSES}")
        bad = set(self.splits) - set(models.SPLITS)
        if not self.splits or bad:
            raise ExportError(f"filter field 'splits': {sorted(bad) or 'empty'} not among {models.SPLITS}")
        bad = set(self.behaviors or []) - set(models.BEHAVIORS)
        if bad:
            raise ExportError(f"filter field 'behaviors': {sorted(bad)} not among {models.BEHAVIORS}")
        if self.min_quality is not None and not 1 <= self.min_quality <= 5:
            raise ExportError(f"filter field 'min_quality': {self.min_quality} is not between 1 and 5")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ExportFilter":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ExportError(f"unknown filter field(s) {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def parse(cls, items: list[str]) -> "ExportFilter":
        """CLI form: `sets=xstest,advbench`, `min_quality=3`, `mutations=none,slang`, `status=approved`."""
        d: dict[str, Any] = {}
        for item in items:
            if "=" not in item:
                raise ExportError(f"--filter '{item}' must look like field=value[,value]")
            k, v = (x.strip() for x in item.split("=", 1))
            k = cls._ALIASES.get(k, k)
            if k == "min_quality":
                try:
                    d[k] = int(v)
                except ValueError:
                    raise ExportError(f"--filter min_quality='{v}' is not an integer") from None
            elif k in cls._LISTS:
                try:
                    d[k] = [cls._LISTS[k](x.strip()) for x in v.split(",") if x.strip()]
                except ValueError:
                    raise ExportError(f"--filter {k}='{v}' must be a list of integers") from None
            else:
                raise ExportError(f"--filter field '{k}' is not one of {sorted(set(cls._LISTS) | {'min_quality'})}")
        flt = cls.from_dict(d)
        flt.validate()
        return flt


@dataclass
class ExportOptions:
    reasoning_template: str = DEFAULT_TEMPLATE
    system_prompt: Optional[str] = None  # a fixed system prompt for inference, never the self-check one
    val_fraction: float = 0.1
    seed: int = 0
    near_dup_threshold: float = DEFAULT_THRESHOLD
    allow_contamination: bool = False
    max_pairs_per_prompt: int = 4

    def validate(self) -> None:
        if "{response}" not in self.reasoning_template:
            raise ExportError("option 'reasoning_template' must contain {response}")
        if not 0 <= self.val_fraction < 1:
            raise ExportError(f"option 'val_fraction' {self.val_fraction} must be in [0, 1)")
        if not 0 < self.near_dup_threshold <= 100:
            raise ExportError(f"option 'near_dup_threshold' {self.near_dup_threshold} must be in (0, 100]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ExportOptions":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ExportError(f"unknown export option(s) {sorted(unknown)}")
        return cls(**d)


@dataclass(slots=True)
class _Trace:
    """One selected trace with the text that trains (edit applied) and its lineage."""

    id: int
    version: int
    prompt_id: int
    prompt: str
    status: str
    set: str
    behavior: str
    mutation: str
    template_version: str
    original: str
    final: str
    annotation_id: Optional[int] = None
    annotation_version: Optional[int] = None
    edited: bool = False


# -- selection --------------------------------------------------------------------------------------------------
def _trace_query(flt: ExportFilter, statuses: list[str]):
    q = (select(Trace.id, Trace.version, Trace.prompt_id, Trace.reasoning, Trace.response, Trace.status,
                Trace.decided_by, Trace.template_version, Prompt.text, Prompt.expected_behavior, Prompt.mutation,
                PromptSet.name)
         .join(Prompt, Prompt.id == Trace.prompt_id).join(PromptSet, PromptSet.id == Prompt.set_id)
         .where(Prompt.project_id == flt.project_id, Trace.status.in_(statuses), Prompt.split.in_(flt.splits)))
    if flt.set_names:
        q = q.where(PromptSet.name.in_(flt.set_names))
    if flt.behaviors:
        q = q.where(Prompt.expected_behavior.in_(flt.behaviors))
    if flt.mutations:
        named = [m for m in flt.mutations if m != "none"]
        cond = Prompt.mutation.in_(named) if named else None
        if "none" in flt.mutations:
            cond = Prompt.mutation.is_(None) if cond is None else (cond | Prompt.mutation.is_(None))
        q = q.where(cond)
    if flt.run_ids:
        q = q.where(Trace.run_id.in_(flt.run_ids))
    return q.order_by(Trace.id)


def _deciding_annotations(s: Session, trace_ids_q, rows) -> dict[int, Any]:
    """Per trace, the annotation that decided it: the one review recorded as final (trace.meta
    final_annotation_id), else the decider's own, else the latest. Empty without the review tables."""
    Annotation = getattr(models, "Annotation", None)
    if Annotation is None:
        return {}
    decider = {r.id: r.decided_by for r in rows}
    anns = s.execute(select(Annotation.id, Annotation.trace_id, Annotation.annotator_id, Annotation.version,
                            Annotation.quality, Annotation.edited_reasoning, Annotation.edited_response)
                     .where(Annotation.trace_id.in_(trace_ids_q))
                     .order_by(Annotation.trace_id, Annotation.updated_at, Annotation.id)).all()
    if not anns:
        return {}
    # Trace meta (JSON) only for annotated traces: decoding it for every exported row is the slow part.
    final = {tid: (meta or {}).get("final_annotation_id") for tid, meta in s.execute(
        select(Trace.id, Trace.meta).where(Trace.id.in_(select(Annotation.trace_id)
                                                        .where(Annotation.trace_id.in_(trace_ids_q)))))}

    def rank(a) -> int:
        return 2 if a.id == final.get(a.trace_id) else 1 if a.annotator_id == decider.get(a.trace_id) else 0

    chosen: dict[int, Any] = {}
    for a in anns:  # in time order, so among equals the latest wins
        cur = chosen.get(a.trace_id)
        if cur is None or rank(a) >= rank(cur):
            chosen[a.trace_id] = a
    return chosen


class _Template:
    """The assistant-turn template, split once into literal text and {reasoning}/{response} slots."""

    def __init__(self, template: str):
        self.parts = _SLOT.split(template)
        self.empty = self.render("", "")

    def render(self, reasoning: str, response: str) -> str:
        vals = {"reasoning": reasoning.strip(), "response": response.strip()}
        return "".join(vals[p] if i % 2 else p for i, p in enumerate(self.parts))


def select_traces(engine: Engine, flt: ExportFilter, options: ExportOptions, statuses: list[str]) -> list[_Trace]:
    q = _trace_query(flt, statuses)
    out: list[_Trace] = []
    with Session(engine) as s:
        rows = s.execute(q).all()
        ann = _deciding_annotations(s, select(q.subquery().c.id), rows)
    tpl = _Template(options.reasoning_template)
    for r in rows:
        a = ann.get(r.id)
        if flt.min_quality is not None and r.status != "rejected" and (a is None or a.quality is None
                                                                       or a.quality < flt.min_quality):
            continue
        original = tpl.render(r.reasoning, r.response)
        final = original
        if a is not None and (a.edited_reasoning is not None or a.edited_response is not None):
            final = tpl.render(r.reasoning if a.edited_reasoning is None else a.edited_reasoning,
                               r.response if a.edited_response is None else a.edited_response)
        out.append(_Trace(r.id, r.version, r.prompt_id, r.text, r.status, r.name, r.expected_behavior,
                          r.mutation or "none", r.template_version or "", original, final,
                          a.id if a is not None else None, a.version if a is not None else None,
                          edited=final != original))
    return out


# -- rows -------------------------------------------------------------------------------------------------------
def _prompt_turns(options: ExportOptions, text: str) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": options.system_prompt}] if options.system_prompt else []
    return turns + [{"role": "user", "content": text}]


def _sft_rows(traces: list[_Trace], options: ExportOptions):
    rows, lineage, skipped = [], [], 0
    empty = _Template(options.reasoning_template).empty
    for t in traces:
        if t.final == empty or not t.final.strip():
            skipped += 1  # nothing to learn from an empty answer
            continue
        rows.append({"messages": _prompt_turns(options, t.prompt) + [{"role": "assistant", "content": t.final}],
                     "trace_id": t.id, "prompt_id": t.prompt_id, "set": t.set, "behavior": t.behavior,
                     "mutation": t.mutation, "source": "trace"})
        lineage.append([("sft", t)])
    return rows, lineage, {"skipped_empty": skipped}


def _dpo_rows(traces: list[_Trace], options: ExportOptions, chosen_statuses: list[str]):
    rows, lineage = [], []
    by_prompt: dict[int, dict[str, list[_Trace]]] = {}
    for t in traces:
        side = "rejected" if t.status == "rejected" else ("chosen" if t.status in chosen_statuses else None)
        if side:
            by_prompt.setdefault(t.prompt_id, {"chosen": [], "rejected": []})[side].append(t)

    def add(chosen: _Trace, chosen_text: str, rejected: _Trace, rejected_text: str, source: str):
        rows.append({"prompt": _prompt_turns(options, chosen.prompt),
                     "chosen": [{"role": "assistant", "content": chosen_text}],
                     "rejected": [{"role": "assistant", "content": rejected_text}],
                     "trace_id": chosen.id, "rejected_trace_id": rejected.id, "prompt_id": chosen.prompt_id,
                     "set": chosen.set, "behavior": chosen.behavior, "mutation": chosen.mutation, "source": source})
        lineage.append([("chosen", chosen, source), ("rejected", rejected, source)])

    for t in traces:  # edits first, in trace order
        if t.status in chosen_statuses and t.edited:
            add(t, t.final, t, t.original, "edit")
    for pid in sorted(by_prompt):
        sides, n = by_prompt[pid], 0
        for c in sides["chosen"]:
            for r in sides["rejected"]:
                if n >= options.max_pairs_per_prompt or c.final == r.original:
                    continue
                add(c, c.final, r, r.original, "status")
                n += 1
    sources = {"edit": sum(r["source"] == "edit" for r in rows), "status": sum(r["source"] == "status" for r in rows)}
    return rows, lineage, {"pairs_by_source": sources}


def _assign_splits(rows: list[dict], options: ExportOptions) -> list[str]:
    """Validation takes whole prompts, stratified by (set, behaviour), in a seeded-hash order."""
    strata: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        strata.setdefault((r["set"], r["behavior"]), set()).add(r["prompt_id"])

    def h(pid: int) -> str:
        return hashlib.sha256(f"{options.seed}:{pid}".encode()).hexdigest()

    val: set[int] = set()
    for key in sorted(strata):
        pids = sorted(strata[key], key=h)
        val.update(pids[:round(len(pids) * options.val_fraction)])
    all_prompts = {r["prompt_id"] for r in rows}
    if options.val_fraction > 0 and not val and len(all_prompts) >= 2:
        biggest = max(sorted(strata), key=lambda k: len(strata[k]))
        val.add(sorted(strata[biggest], key=h)[0])
    return ["validation" if r["prompt_id"] in val else "train" for r in rows]


# -- files ------------------------------------------------------------------------------------------------------
def _features(kind: str):
    from datasets import Features, List, Value

    turn = {"role": Value("string"), "content": Value("string")}
    cols: dict[str, Any] = ({"messages": List(turn)} if kind == "sft" else
                            {"prompt": List(turn), "chosen": List(turn), "rejected": List(turn),
                             "rejected_trace_id": Value("int64")})
    cols.update({"trace_id": Value("int64"), "prompt_id": Value("int64"), "set": Value("string"),
                 "behavior": Value("string"), "mutation": Value("string"), "source": Value("string")})
    return Features(cols)


def _write_files(tmp: Path, kind: str, split_rows: dict[str, list[dict]], formats: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = _features(kind)
    schema = features.arrow_schema
    tables = {sp: pa.Table.from_pylist(rows, schema=schema) for sp, rows in split_rows.items()}
    if "jsonl" in formats:
        (tmp / "jsonl").mkdir()
        for sp, rows in split_rows.items():
            with open(tmp / "jsonl" / f"{sp}.jsonl", "w", encoding="utf-8", newline="\n") as fh:
                for r in rows:
                    fh.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")))
                    fh.write("\n")
    if "parquet" in formats:
        (tmp / "parquet").mkdir()
        for sp, t in tables.items():
            pq.write_table(t, tmp / "parquet" / f"{sp}.parquet", compression="zstd")
    if "hf" in formats:
        from datasets import Dataset, DatasetDict, disable_progress_bars

        disable_progress_bars()  # a job's log is not a terminal

        # Fixed fingerprints: datasets otherwise stores a random one in state.json, breaking byte-identity.
        from datasets.table import InMemoryTable

        dd = DatasetDict({sp: Dataset(InMemoryTable(t), fingerprint=hashlib.sha256(f"{kind}:{sp}".encode())
                                      .hexdigest()[:16]) for sp, t in tables.items()})
        dd.save_to_disk(str(tmp / "hf"))


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(tmp: Path) -> tuple[dict[str, str], str]:
    files = {p.relative_to(tmp).as_posix(): _sha_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return files, digest


def _card(kind: str, counts: dict, flt: ExportFilter, options: ExportOptions, sets: list[dict],
          templates: dict[str, int], contamination: dict, formats: list[str]) -> str:
    licenses = sorted({s["license"] or "unknown" for s in sets})
    yaml = ["---", "license: other" if len(licenses) != 1 else f"license: {licenses[0].lower()}",
            "tags:", "- safety", "- reasoning", "- rational-studio", f"- {kind}"]
    if "parquet" in formats:
        yaml += ["configs:", "- config_name: default", "  data_files:"]
        for sp in SPLITS:
            yaml += [f"  - split: {sp}", f"    path: parquet/{sp}.parquet"]
    yaml.append("---")
    what = ("supervised fine-tuning rows in TRL's conversational `messages` format" if kind == "sft" else
            "preference pairs in TRL's `prompt` / `chosen` / `rejected` format")
    lines = yaml + ["", f"# Rational Studio export ({kind.upper()})", "",
                    f"Reviewed safety reasoning traces (RATIONAL, arXiv 2503.05021) as {what}. The user turn is "
                    "the prompt alone (no self-check system prompt); the assistant turn is "
                    f"`{options.reasoning_template!r}` with the annotator's edit where there is one.", "",
                    "## Counts", "", "```json", json.dumps(counts, indent=2, sort_keys=True), "```", "",
                    "## Source prompt sets", "", "| set | license | source |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['license'] or 'unknown'} | {s['source'] or ''} |" for s in sets]
    lines += ["", "## Template versions (traces per generation template)", ""]
    lines += [f"- `{k or 'unrecorded'}`: {v}" for k, v in sorted(templates.items())]
    lines += ["", "## Filter", "", "```json", json.dumps(flt.to_dict(), indent=2, sort_keys=True), "```", "",
              "## Options", "", "```json", json.dumps(options.to_dict(), indent=2, sort_keys=True), "```", "",
              "## Contamination check against eval-split prompts", "", "```json",
              json.dumps({k: v for k, v in contamination.items() if k != "overlaps"}, indent=2, sort_keys=True),
              "```", ""]
    return "\n".join(lines)


# -- the snapshot -----------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    id: int
    name: str
    kind: str
    path: str
    sha256: str
    row_count: int
    counts: dict
    contamination: dict

    def summary(self) -> str:
        src = self.counts.get("pairs_by_source")
        extra = f"; pairs by source {src}" if src else ""
        return (f"export '{self.name}' ({self.kind}): {self.row_count} rows ({self.counts['splits']['train']} train, "
                f"{self.counts['splits']['validation']} validation){extra}; sha256 {self.sha256[:12]}; {self.path}")


def default_export_root() -> Path:
    from db.engine import rational_home

    return rational_home() / "exports"


def _reserve(engine: Engine, name: str, kind: str, flt: ExportFilter, options: ExportOptions, formats: list[str],
             created_by: Optional[int], job_id: Optional[int]) -> int:
    """Take the name: a ready snapshot keeps it forever; a failed or abandoned one is replaced."""
    from db.engine import write_engine

    with Session(write_engine(engine)) as s, s.begin():
        old = s.execute(select(ExportSnapshot.id, ExportSnapshot.status)
                        .where(ExportSnapshot.project_id == flt.project_id, ExportSnapshot.name == name)).first()
        if old is not None:
            if old.status == "ready":
                raise ExportError(f"export '{name}' already exists; snapshots are immutable, choose another name")
            s.execute(delete(ExportItem).where(ExportItem.export_id == old.id))
            s.execute(delete(ExportSnapshot).where(ExportSnapshot.id == old.id))
        snap = ExportSnapshot(project_id=flt.project_id, name=name, kind=kind, filter=flt.to_dict(),
                              options=options.to_dict(), formats=formats, created_by=created_by, job_id=job_id)
        s.add(snap)
        s.flush()
        return snap.id


def _fail(engine: Engine, snap_id: int, error: str, contamination: dict | None = None) -> None:
    values: dict[str, Any] = {"status": "failed", "error": error[:4000], "finished_at": utcnow()}
    if contamination is not None:
        values["contamination"] = contamination
    with engine.begin() as conn:
        conn.execute(update(ExportSnapshot).where(ExportSnapshot.id == snap_id).values(**values))


def build_rows(engine: Engine, kind: str, flt: ExportFilter, options: ExportOptions):
    """Rows (with their split) and lineage for a filter; also used for the live count on the page."""
    if kind == "sft":
        traces = select_traces(engine, flt, options, flt.statuses)
        rows, lineage, extra = _sft_rows(traces, options)
    else:
        chosen_statuses = [st for st in flt.statuses if st != "rejected"] or ["approved"]
        traces = select_traces(engine, flt, options, sorted(set(chosen_statuses) | {"rejected"}))
        rows, lineage, extra = _dpo_rows(traces, options, chosen_statuses)
    return traces, rows, lineage, extra


def count_rows(engine: Engine, kind: str, flt: ExportFilter, options: ExportOptions | None = None) -> dict:
    _, rows, _, extra = build_rows(engine, kind, flt, options or ExportOptions())
    return {"rows": len(rows), "prompts": len({r["prompt_id"] for r in rows}), **extra}


def create_export(engine: Engine, name: str, kind: str, flt: ExportFilter | None = None,
                  options: ExportOptions | None = None, *, formats: list[str] | None = None,
                  out_dir: str | Path | None = None, created_by: Optional[int] = None,
                  job_id: Optional[int] = None, progress: Progress | None = None) -> ExportResult:
    flt = flt or ExportFilter()
    options = options or ExportOptions()
    formats = sorted(set(formats or FORMATS))
    progress = progress or (lambda done, total, phase: None)
    if not NAME_PATTERN.match(name or ""):
        raise ExportError(f"export name '{name}' must be 1-200 letters, digits, '.', '_' or '-'")
    if kind not in EXPORT_KINDS:
        raise ExportError(f"kind '{kind}' is not one of {', '.join(EXPORT_KINDS)}")
    if set(formats) - set(FORMATS):
        raise ExportError(f"format(s) {sorted(set(formats) - set(FORMATS))} not among {', '.join(FORMATS)}")
    flt.validate()
    options.validate()
    root = Path(out_dir) if out_dir else default_export_root()
    final = root / name
    if final.exists():
        raise ExportError(f"{final} already exists; choose another name or folder")
    snap_id = _reserve(engine, name, kind, flt, options, formats, created_by, job_id)
    tmp = root / f".{name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        progress(0, 5, "selecting traces")
        traces, rows, lineage, extra = build_rows(engine, kind, flt, options)
        if not rows:
            raise ExportError(f"the filter selects no {kind} rows ({len(traces)} traces matched)")
        progress(1, 5, "contamination check")
        texts = {t.prompt_id: t.prompt for t in traces}
        report = check_contamination(engine, {r["prompt_id"]: texts[r["prompt_id"]] for r in rows},
                                     project_id=flt.project_id, threshold=options.near_dup_threshold)
        contamination = {**report.to_dict(), "overridden": bool(report.overlaps and options.allow_contamination)}
        if report.overlaps and not options.allow_contamination:
            raise ContaminationError(report)
        progress(2, 5, "writing files")
        splits = _assign_splits(rows, options)
        split_rows = {sp: [r for r, s in zip(rows, splits) if s == sp] for sp in SPLITS}
        counts = _counts(rows, splits, extra, len(traces))
        sets, templates = _set_info(engine, rows, traces)
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f".{name}.*.partial"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed export of this name
        tmp.mkdir()
        _write_files(tmp, kind, split_rows, formats)
        (tmp / "README.md").write_text(_card(kind, counts, flt, options, sets, templates, contamination, formats),
                                       encoding="utf-8")
        files, digest = _manifest(tmp)
        (tmp / "manifest.json").write_text(json.dumps({"sha256": digest, "files": files}, indent=1, sort_keys=True),
                                           encoding="utf-8")
        progress(3, 5, "recording lineage")
        items = _items(snap_id, rows, splits, lineage)
        os.rename(tmp, final)  # atomic: the folder appears complete or not at all
        try:
            with engine.begin() as conn:
                for start in range(0, len(items), 5000):
                    conn.execute(insert(ExportItem), items[start:start + 5000])
                conn.execute(update(ExportSnapshot).where(ExportSnapshot.id == snap_id).values(
                    status="ready", path=str(final.resolve()), sha256=digest, row_count=len(rows), counts=counts,
                    contamination=contamination, finished_at=utcnow()))
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        progress(5, 5, "done")
        return ExportResult(snap_id, name, kind, str(final.resolve()), digest, len(rows), counts, contamination)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _fail(engine, snap_id, f"{type(e).__name__}: {e}",
                  e.report.to_dict() if isinstance(e, ContaminationError) else None)
        except Exception:
            pass  # the original error matters more than the bookkeeping
        raise


def _counts(rows: list[dict], splits: list[str], extra: dict, traces: int) -> dict:
    def tally(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rows:
            out[r[key]] = out.get(r[key], 0) + 1
        return dict(sorted(out.items()))

    return {"rows": len(rows), "traces_matched": traces,
            "splits": {sp: splits.count(sp) for sp in SPLITS},
            "by_set": tally("set"), "by_behavior": tally("behavior"), "by_mutation": tally("mutation"), **extra}


def _set_info(engine: Engine, rows: list[dict], traces: list[_Trace]):
    names = sorted({r["set"] for r in rows})
    with Session(engine) as s:
        sets = [dict(r._mapping) for r in s.execute(
            select(PromptSet.name, PromptSet.license, PromptSet.source)
            .where(PromptSet.name.in_(names)).order_by(PromptSet.name))]
    used = {r["trace_id"] for r in rows} | {r.get("rejected_trace_id") for r in rows}
    templates: dict[str, int] = {}
    for t in traces:
        if t.id in used:
            templates[t.template_version] = templates.get(t.template_version, 0) + 1
    return sets, templates


def _items(snap_id: int, rows, splits, lineage) -> list[dict]:
    items = []
    for i, (sp, parts) in enumerate(zip(splits, lineage)):
        for part in parts:
            role, t = part[0], part[1]
            source = part[2] if len(part) > 2 else "trace"
            edit_used = role != "rejected"  # the rejected side of an edit pair is the model's original text
            items.append({"export_id": snap_id, "row_index": i, "split": sp, "role": role, "source": source,
                          "trace_id": t.id, "trace_version": t.version,
                          "annotation_id": t.annotation_id if edit_used else None,
                          "annotation_version": t.annotation_version if edit_used else None})
    return items


# -- queries for the CLI and pages -------------------------------------------------------------------------------
def get_export(engine: Engine, name: str, project_id: int = 1) -> Optional[ExportSnapshot]:
    with Session(engine, expire_on_commit=False) as s:
        return s.execute(select(ExportSnapshot).where(ExportSnapshot.project_id == project_id,
                                                      ExportSnapshot.name == name)).scalars().first()


def list_exports(engine: Engine, project_id: int = 1, limit: int = 100) -> list[ExportSnapshot]:
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(select(ExportSnapshot).where(ExportSnapshot.project_id == project_id)
                              .order_by(ExportSnapshot.id.desc()).limit(limit)).scalars())


def export_items(engine: Engine, export_id: int) -> list[ExportItem]:
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(select(ExportItem).where(ExportItem.export_id == export_id)
                              .order_by(ExportItem.row_index, ExportItem.role)).scalars())


def push_to_hub(snapshot_path: str | Path, repo_id: str, *, private: bool = True, token: str | None = None) -> None:
    """Optional: upload the HF folder of a snapshot (network; never called in tests)."""
    from datasets import load_from_disk

    load_from_disk(str(Path(snapshot_path) / "hf")).push_to_hub(repo_id, private=private, token=token)
