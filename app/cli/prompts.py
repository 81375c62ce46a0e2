"""`rational import`, `rational sets list|import` and `rational prompts list`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Column

from app.cli.common import DataTable, engine, err, fail, out, parse_pairs, with_progress

sets_app = typer.Typer(no_args_is_help=True, help="Built-in prompt sets.")
prompts_app = typer.Typer(no_args_is_help=True, help="Prompts.")


def register(app: typer.Typer) -> None:
    app.command("import")(import_file)
    app.add_typer(sets_app, name="sets")
    app.add_typer(prompts_app, name="prompts")


@sets_app.command("list")
def sets_list() -> None:
    """Built-in sets, their license, default split, and whether they are installed."""
    from curation.prompts.builtin import BUILTIN_SETS
    from db.crud import list_sets

    installed = {s["name"]: s["prompts"] for s in list_sets(engine())}
    # The name is what `sets import` takes: never cut it, whatever the width of the output.
    t = DataTable(Column("name", no_wrap=True, min_width=max(len(n) for n in BUILTIN_SETS)), "split", "behaviour",
              "license", "installed", "use")
    for s in BUILTIN_SETS.values():
        beh = s.behavior or ",".join(f"{k}→{v}" for k, v in s.behavior_map.items())
        t.add_row(s.name, s.split, beh, s.license, str(installed.get(s.name, "-")), s.use)
    out.print(t)


@sets_app.command("import")
def sets_import(names: List[str] = typer.Argument(..., help="built-in set names, or 'all'")) -> None:
    """Install built-in sets (re-running adds nothing)."""
    from curation.prompts.builtin import BUILTIN_SETS, import_builtin

    if names == ["all"]:
        names = list(BUILTIN_SETS)
    unknown = [n for n in names if n not in BUILTIN_SETS]
    if unknown:
        fail(f"unknown built-in set(s) {unknown}; see 'rational sets list'")
    eng = engine()
    for name in names:
        report = with_progress(name, lambda p: import_builtin(eng, name, progress=p))
        out.print(f"{name}: {report.summary()}")


def import_file(
    path: Path = typer.Argument(..., help="CSV, TSV, JSONL, JSON, Parquet, or a datasets save_to_disk folder"),
    set_name: str = typer.Option(..., "--set", help="prompt set to import into (created if new)"),
    map_: List[str] = typer.Option([], "--map", help="field=column; fields: text, source_id, category, "
                                   "mutation, split. Default text=prompt"),
    behavior: Optional[str] = typer.Option(None, "--behavior", help="refuse | comply | partial for every row"),
    behavior_column: Optional[str] = typer.Option(None, "--behavior-column"),
    behavior_map: List[str] = typer.Option([], "--behavior-map", help="e.g. safe=comply,unsafe=refuse"),
    split: str = typer.Option("train", "--split", help="train | eval"),
    all_or_nothing: bool = typer.Option(False, "--all-or-nothing", help="import nothing if any row is invalid"),
    file_format: Optional[str] = typer.Option(None, "--format", help="csv|tsv|jsonl|json|parquet|hf_disk|hf_file"),
    delimiter: Optional[str] = typer.Option(None, "--delimiter"),
    hf_split: Optional[str] = typer.Option(None, "--hf-split", help="split of a DatasetDict folder"),
    max_chars: int = typer.Option(32_000, "--max-chars"),
    queue: bool = typer.Option(False, "--queue", help="enqueue a job for the worker instead of running here"),
) -> None:
    """Import prompts from a file, mapping columns to fields."""
    from curation.prompts.importer import ImportConfig, PromptImporter
    from curation.prompts.readers import ImportFileError

    mapping = parse_pairs(map_, "--map") or {}
    mapping.setdefault("text", "prompt")
    try:
        cfg = ImportConfig(set_name=set_name, mapping=mapping, behavior=behavior, behavior_column=behavior_column,
                           behavior_map=parse_pairs(behavior_map, "--behavior-map"), split=split,
                           all_or_nothing=all_or_nothing, file_format=file_format, delimiter=delimiter,
                           hf_split=hf_split, max_chars=max_chars)
        cfg.validate()
    except ValueError as e:
        fail(str(e))
    if not path.exists():
        fail(f"{path}: file not found")
    eng = engine()
    if queue:
        from curation.prompts.jobs import enqueue_import

        job = enqueue_import(eng, None, str(path.resolve()), cfg)
        out.print(f"queued job {job.id}")
        return
    try:
        report = with_progress(path.name, lambda p: PromptImporter(eng, cfg).run(path, progress=p))
    except ImportFileError as e:
        fail(str(e))
    except OSError as e:  # e.g. no permission to read it
        fail(f"{path}: cannot read: {e.strerror or e}")
    for e in report.errors[:20]:
        loc = f"line {e['line']}" if e["line"] is not None else f"row {e['row']}"
        err.print(f"  {e['file']}:{loc}: field '{e['field']}': {e['message']}", markup=False, highlight=False,
                  soft_wrap=True)
    if report.invalid > 20:
        err.print(f"  … and {report.invalid - 20} more invalid rows")
    for w in report.warnings[:20]:
        loc = f"line {w['line']}" if w["line"] is not None else f"row {w['row']}"
        err.print(f"  warning: {w['file']}:{loc}: field '{w['field']}': {w['message']}", markup=False,
                  highlight=False, soft_wrap=True)
    if report.status != "succeeded":
        fail(report.summary())
    out.print(report.summary(), markup=False, highlight=False)


@prompts_app.command("list")
def prompts_list(set_name: Optional[str] = typer.Option(None, "--set"), limit: int = typer.Option(20, "--limit"),
                 behavior: Optional[str] = typer.Option(None, "--behavior"),
                 split: Optional[str] = typer.Option(None, "--split"),
                 search: Optional[str] = typer.Option(None, "--search")) -> None:
    """List prompts (server-side filters)."""
    from db.crud import count_prompts, list_prompts
    from db.filters import PromptFilter

    flt = PromptFilter(set_names=[set_name] if set_name else None, behaviors=[behavior] if behavior else None,
                       splits=[split] if split else None, search=search)
    eng = engine()
    t = DataTable("id", "set", "behaviour", "split", "category", "text")
    for r in list_prompts(eng, flt, limit=limit):
        t.add_row(str(r["id"]), r["set"], r["expected_behavior"], r["split"], r["category"] or "",
                  (r["text"][:100] + "…") if len(r["text"]) > 100 else r["text"])
    out.print(t)
    out.print(f"{count_prompts(eng, flt)} prompts match")
