"""Writing a snapshot's files: HF datasets folder, JSONL and Parquet per split, the manifest and the card.
The same rows give byte-identical files: no file holds the export's name, time or user."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from core.markdown import code_span, literal
from curation.export.rows import SPLITS
from curation.export.spec import ExportFilter, ExportOptions


def _features(kind: str):
    from datasets import Features, List, Value

    turn = {"role": Value("string"), "content": Value("string")}
    cols: dict[str, Any] = ({"messages": List(turn)} if kind == "sft" else
                            {"prompt": List(turn), "chosen": List(turn), "rejected": List(turn),
                             "rejected_trace_id": Value("int64")})
    cols.update({"trace_id": Value("int64"), "prompt_id": Value("int64"), "set": Value("string"),
                 "behavior": Value("string"), "mutation": Value("string"), "source": Value("string")})
    return Features(cols)


def write_files(tmp: Path, kind: str, split_rows: dict[str, list[dict]], formats: list[str]) -> None:
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


def manifest(tmp: Path) -> tuple[dict[str, str], str]:
    files = {p.relative_to(tmp).as_posix(): _sha_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return files, digest


def card(kind: str, counts: dict, flt: ExportFilter, options: ExportOptions, sets: list[dict],
          templates: dict[str, int], contamination: dict, formats: list[str]) -> str:
    licenses = sorted({s["license"] or "unknown" for s in sets})
    # A JSON string is a YAML scalar: a licence text cannot add keys to the front matter.
    yaml = ["---", "license: other" if len(licenses) != 1 else f"license: {json.dumps(licenses[0].lower())}",
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
                    f"{code_span(repr(options.reasoning_template))} with the annotator's edit where there is one.", "",
                    "## Counts", "", "```json", json.dumps(counts, indent=2, sort_keys=True), "```", "",
                    "## Source prompt sets", "", "| set | license | source |", "|---|---|---|"]
    lines += [f"| {literal(s['name'])} | {literal(s['license'] or 'unknown')} | {literal(s['source'] or '')} |"
              for s in sets]
    lines += ["", "## Template versions (traces per generation template)", ""]
    lines += [f"- {code_span(k or 'unrecorded')}: {v}" for k, v in sorted(templates.items())]
    lines += ["", "## Filter", "", "```json", json.dumps(flt.to_dict(), indent=2, sort_keys=True), "```", "",
              "## Options", "", "```json", json.dumps(options.to_dict(), indent=2, sort_keys=True), "```", "",
              "## Contamination check against eval-split prompts", "", "```json",
              json.dumps({k: v for k, v in contamination.items() if k != "overlaps"}, indent=2, sort_keys=True),
              "```", ""]
    return "\n".join(lines)

