"""A corpus of malformed and hostile files. Each one is imported on SQLite and PostgreSQL and through the CLI;
every error or warning must name the file, the line (or row) and the field."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
from sqlalchemy import delete, select
from sqlmodel import Session
from typer.testing import CliRunner

from app.cli import app
from curation.prompts.importer import ImportConfig, PromptImporter
from curation.prompts.readers import ImportFileError
from db.models import Prompt, PromptImport, PromptSet

FORMULA = "=cmd|' /C calc'!A0"
SCRIPT = "<script>alert(1)</script>"
TEN_MB = 10 * 1024 * 1024


@dataclass
class Case:
    name: str  # file name, extension included
    make: Callable[[Path], None]
    file_error: Optional[tuple[Optional[int], Optional[str], str]] = None  # (line, field, message part)
    errors: dict[int, tuple[str, str]] = field(default_factory=dict)  # line -> (field, message part)
    warnings: dict[int, tuple[str, str]] = field(default_factory=dict)
    stored: list[str] = field(default_factory=list)  # texts that must be stored verbatim
    config: dict = field(default_factory=dict)


def lines(*rows: bytes | str) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        p.write_bytes(b"".join((r.encode() if isinstance(r, str) else r) for r in rows))
    return make


def jl(obj) -> str:
    return json.dumps(obj) + "\n"


def huge_line(p: Path) -> None:
    with open(p, "w", encoding="utf-8") as f:
        f.write("prompt,label\nshort one,safe\n")
        f.write("A" * TEN_MB + ",unsafe\n")
        f.write("after the big one,safe\n")


CASES = [
    Case("truncated.jsonl",
         lines(jl({"prompt": "one", "label": "safe"}), jl({"prompt": "two", "label": "unsafe"}),
               '{"label": "safe", "prompt": "three, cut off mid-wri'),
         errors={3: ("prompt", "truncated JSON")}, stored=["one", "two"]),
    Case("semicolon.csv", lines("prompt;label\n", "hello;safe\n", "bye;unsafe\n"),
         file_error=(1, "prompt", "';'-delimited")),
    Case("ten_mb_line.csv", huge_line, errors={3: ("prompt", "text too long: 10,485,760 characters")},
         stored=["short one", "after the big one"]),
    Case("formula.csv", lines("prompt,label\n", "plain prompt,safe\n", FORMULA + ",unsafe\n"),
         warnings={3: ("prompt", "formula-like")}, stored=["plain prompt", FORMULA]),
    Case("script.jsonl", lines(jl({"prompt": SCRIPT, "label": "unsafe"}), jl({"prompt": "ok", "label": "safe"})),
         stored=[SCRIPT, "ok"]),
    Case("bad_utf8_cell.csv", lines("prompt,label,note\n", "good,safe,fine\n", b"also good,safe,bad \xff\xfe\n",
                                    b"caf\xc3\xa9 is fine,unsafe,ok\n"),
         errors={3: ("note", "invalid UTF-8")}, stored=["good", "café is fine"]),
    Case("bad_utf8_line.jsonl", lines(jl({"prompt": "good", "label": "safe"}),
                                      b'{"prompt": "bad \xff bytes", "label": "safe"}\n',
                                      jl({"prompt": "caf\u00e9", "label": "unsafe"})),
         errors={2: ("prompt", "invalid UTF-8")}, stored=["good", "café"]),
    Case("empty.csv", lines(), file_error=(1, "prompt", "empty")),
    Case("empty.jsonl", lines("\n", "  \n"), file_error=(1, "prompt", "no data rows")),
    Case("header_only.csv", lines("prompt,label\n"), file_error=(1, "prompt", "no data rows")),
    Case("binary.parquet", lambda p: p.write_bytes(os.urandom(4096)), file_error=(None, None, "not a readable Parquet")),
    Case("ragged.csv", lines("prompt,label,note\n", "fine,safe,x\n", "short row\n", "long,safe,x,extra\n",
                             "last,unsafe,y\n"),
         errors={3: ("label", "ragged row"), 4: ("(cell 4)", "ragged row")}, stored=["fine", "last"]),
    Case("missing_key.jsonl", lines(jl({"prompt": "has text", "label": "safe"}), jl({"label": "safe"})),
         errors={2: ("prompt", "missing text")}, stored=["has text"]),
]


def config(case: Case) -> ImportConfig:
    kw = dict(set_name="corpus", mapping={"text": "prompt"}, behavior_column="label",
              behavior_map={"safe": "comply", "unsafe": "refuse"})
    kw.update(case.config)
    return ImportConfig(**kw)


def stored_texts(engine) -> list[str]:
    with Session(engine) as s:
        return list(s.execute(select(Prompt.text).order_by(Prompt.id)).scalars())


def assert_names(msg: str, path: Path, line: Optional[int], fld: Optional[str], part: str) -> None:
    assert str(path) in msg, msg
    if line is not None:
        assert f"line {line}" in msg, msg
    if fld is not None:
        assert f"field '{fld}'" in msg, msg
    assert part in msg, msg


def clear_prompts(engine) -> None:
    with Session(engine) as s:
        for model in (Prompt, PromptImport, PromptSet):
            s.execute(delete(model))
        s.commit()


def test_malformed_files(engine, db_url, tmp_path, monkeypatch, subtests):
    """One database per engine for the whole corpus (creating one per file was most of the run time)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    for case in CASES:
        with subtests.test(msg=case.name):
            clear_prompts(engine)
            check_case(case, engine, tmp_path)


def check_case(case: Case, engine, tmp_path: Path) -> None:
    path = tmp_path / case.name
    case.make(path)
    importer = PromptImporter(engine, config(case))

    if case.file_error:
        line, fld, part = case.file_error
        with pytest.raises(ImportFileError) as ei:
            importer.run(path)
        assert_names(str(ei.value), path, line, fld, part)
        assert stored_texts(engine) == []
    else:
        report = importer.run(path)
        assert report.status == "succeeded"
        assert {e["line"]: (e["field"], e["file"]) for e in report.errors} == {
            n: (f, str(path)) for n, (f, _m) in case.errors.items()}
        for e in report.errors:
            assert case.errors[e["line"]][1] in e["message"] and e["row"] is not None
        assert {w["line"]: (w["field"], w["file"]) for w in report.warnings} == {
            n: (f, str(path)) for n, (f, _m) in case.warnings.items()}
        assert stored_texts(engine) == case.stored  # verbatim: no escaping, no stripping of '=' or tags

    # The same file through the CLI, on an empty database: exit 2 with one line for file errors; row problems
    # listed, exit 0.
    clear_prompts(engine)
    res = CliRunner().invoke(app, ["import", str(path), "--set", "corpus-cli", "--behavior-column", "label",
                                   "--behavior-map", "safe=comply,unsafe=refuse"])
    if case.file_error:
        assert res.exit_code == 2, res.output
        err_lines = res.stderr.strip().splitlines()
        assert len(err_lines) == 1 and err_lines[0].startswith("error: "), res.stderr
        assert_names(err_lines[0], path, *case.file_error)
    else:
        assert res.exit_code == 0, res.output
        for n, (fld, part) in {**case.errors, **case.warnings}.items():
            shown = [ln for ln in res.stderr.splitlines() if f"{path}:line {n}: field '{fld}'" in ln]
            assert len(shown) == 1 and part in shown[0], res.stderr
        assert f"{len(case.stored)} inserted" in res.stdout
