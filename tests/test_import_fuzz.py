"""The importer against generated malformed files (CSV, JSONL, JSON): bad quotes, bad encodings, NULs, deep
nesting, wrong types, huge fields, missing columns. For every file, either each record is accounted for (inserted,
a duplicate, or an error naming the file, the line and the field) or nothing is written; never another exception."""
from __future__ import annotations

import csv
import io
import itertools
import json
import re
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlmodel import Session

from curation.prompts.importer import ImportConfig, PromptImporter
from curation.prompts.readers import ImportFileError
from db.models import Prompt, PromptImport, PromptSet

COLUMNS = ("prompt", "label", "note")
def mostly(usual, odd, times: int):
    """`usual`, with `odd` one time in times + 1 (one_of would draw each about as often)."""
    return st.integers(0, times).flatmap(lambda n: odd if n == 0 else usual)


text = st.text(st.characters(codec="utf-8"), max_size=12)
prompt = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), min_size=1, max_size=20)
value = st.one_of(text, st.integers(-5, 10**30), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
                  st.just("x" * 33_000), st.just("a\x00b"))
record = st.fixed_dictionaries({
    "prompt": mostly(prompt, value, 5),
    "label": st.sampled_from(["safe", "unsafe"] * 4 + ["maybe", ""]),
    "note": mostly(text, value, 2)})
SNIPPETS = [b'"', b'"', b"\x00", b"\xff\xfe", b"\n", b",", b"{", b"}", b"\r", b"[" * 3000, b'{"a": ' * 40,
            b'"' + b"y" * 70_000, "\ufeff".encode(), b'\\ud800', b"\xc3"]
ENCODINGS = ["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig"]
_names = itertools.count()


@dataclass
class Hostile:
    """A generated file, and what each record in it must become: for `records` that no corruption touched,
    (line, text): the text imported (or a duplicate) or an error on that line."""

    fmt: str
    data: bytes
    mapping: dict
    records: list[tuple[int, object]]


def serialise(fmt: str, rows: list[dict], columns: list[str]) -> tuple[bytes, list[list[int]], list]:
    """The file, each record's [start, end) in it, and the text each record should import as (None: none)."""
    def csv_line(cells) -> bytes:
        buf = io.StringIO(newline="")
        csv.writer(buf).writerow(["" if c is None else c for c in cells])
        return buf.getvalue().encode()

    rows = [{c: r[c] for c in columns} for r in rows]
    if fmt == "csv":
        head, parts, sep, tail = csv_line(columns), [csv_line(r.values()) for r in rows], b"", b""
        texts = [csv_text(r.get("prompt")) for r in rows]
    else:
        parts = [json.dumps(r).encode() for r in rows]
        head, sep, tail = (b"", b"\n", b"\n") if fmt == "jsonl" else (b"[\n", b",\n", b"\n]")
        texts = [r.get("prompt") if isinstance(r.get("prompt"), str) else None for r in rows]
    spans, at = [], len(head)
    for i, part in enumerate(parts):
        spans.append([at, at + len(part)])
        at += len(part) + (len(sep) if i < len(parts) - 1 else 0)
    return head + sep.join(parts) + tail, spans, texts


def csv_text(v) -> str:
    return "" if v is None else str(v)


@st.composite
def hostile_file(draw) -> Hostile:
    fmt = draw(st.sampled_from(["csv", "jsonl", "json"]))
    columns = draw(st.sampled_from([list(COLUMNS)] * 4 + [["prompt", "label"], ["label", "note"]]))
    data, spans, texts = serialise(fmt, draw(st.lists(record, min_size=1, max_size=8)), columns)
    touched, gone, known = set(), set(), "prompt" in columns
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        at = draw(st.integers(0, len(data)))
        hit = [i for i, (a, b) in enumerate(spans) if a <= at <= b and i not in gone]
        if not hit:  # between records or in the header or the array's brackets: its neighbours may suffer
            before = [i for i, (a, b) in enumerate(spans) if b < at and i not in gone]
            after = [i for i, (a, b) in enumerate(spans) if a > at and i not in gone]
            hit = before[-1:] + after[:1]
            known = known and bool(before)  # a broken header leaves nothing to expect
        touched.update(hit)
        if draw(st.booleans()):
            snippet = draw(st.sampled_from(SNIPPETS))
            data = data[:at] + snippet + data[at:]
            for span in spans:
                span[0] += len(snippet) if span[0] >= at and span[0] != at else 0
                span[1] += len(snippet) if span[1] >= at else 0
            if fmt == "csv" and b'"' in snippet and hit:
                # From an extra quote on, a later quote can close it: rows taken into one cell then look like
                # a prompt with line breaks, which no reader can tell from one.
                touched.update(range(max(hit), len(spans)))
        else:
            data = data[:at]
            gone.update(i for i, (a, b) in enumerate(spans) if a >= at)
    breaks = re.compile(rb"\r\n|\r|\n") if fmt == "csv" else re.compile(rb"\n")  # as each reader counts lines
    records = [(1 + len(breaks.findall(data, 0, a)), texts[i]) for i, (a, _b) in enumerate(spans)
               if known and i not in touched and i not in gone]
    if draw(st.integers(0, 4)) == 0:  # re-encoded: the same lines, and a byte-order mark says how to read them
        codec = draw(st.sampled_from(ENCODINGS))
        data = data.decode("utf-8", "replace").encode(codec, "replace")
        if codec not in ("utf-16", "utf-32", "utf-8-sig"):
            records = []
    mapping = draw(st.sampled_from([{"text": "prompt"}, {"text": "prompt", "category": "note"},
                                    {"text": "prompt", "source_id": "note"}]))
    return Hostile(fmt, data, mapping, records)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=hostile_file(), all_or_nothing=st.sampled_from([False, False, True]))
def test_hostile_files_are_accounted_for_or_leave_nothing(sqlite_engine, tmp_path, case, all_or_nothing):
    path = tmp_path / f"f{next(_names)}.{case.fmt}"
    path.write_bytes(case.data)
    cfg = ImportConfig(set_name=path.stem, mapping=case.mapping, behavior_column="label",
                       all_or_nothing=all_or_nothing, behavior_map={"safe": "comply", "unsafe": "refuse"})
    empty(sqlite_engine)  # a fresh database each time, so earlier examples' prompts are not duplicates here
    before = counts(sqlite_engine)
    try:
        report = PromptImporter(sqlite_engine, cfg).run(path)
    except ImportFileError as e:
        event("file error")
        assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
        assert counts(sqlite_engine) == before
        return
    after = counts(sqlite_engine)
    event(f"{report.status}, {'some' if report.invalid else 'no'} invalid rows")
    assert report.rows_read == report.valid + report.invalid
    assert len(report.errors) == report.invalid
    for e in report.errors:
        assert e["file"] == str(path) and e["field"] and e["message"], e
        assert (e["line"] or e["row"] or 0) >= 1, e
    if report.status != "succeeded":
        assert report.inserted == 0 and after == before
        return
    assert report.valid == report.inserted + report.duplicates
    assert after[0] == before[0] + report.inserted
    assert report.inserted or not report.invalid  # nothing added and rows refused is a failure
    with Session(sqlite_engine) as s:
        stored = set(s.execute(select(Prompt.text)).scalars())
    error_lines = {e["line"] for e in report.errors}
    for line, text in case.records:  # every record no corruption touched: imported, a duplicate, or an error
        assert text in stored or line in error_lines, (line, text, report.errors)


def empty(engine) -> None:
    with Session(engine) as s:
        for model in (Prompt, PromptImport, PromptSet):
            s.execute(delete(model))
        s.commit()


def counts(engine) -> tuple[int, int]:
    with Session(engine) as s:
        return (s.execute(select(func.count()).select_from(Prompt)).scalar(),
                s.execute(select(func.count()).select_from(PromptSet)).scalar())
