"""Prompt import: map columns to fields, validate every row, dedupe by sha256, write all or nothing.

Two passes over the file keep memory flat: pass 1 validates (no writes, progress visible), pass 2 writes. On
PostgreSQL pass 2 is one transaction. On SQLite, whose single write lock a long transaction would hold for a minute
on a million rows (annotators' submits wait, then fail), pass 2 commits in chunks of BATCH rows while the import
is "staging": its rows stay invisible (db.visibility) until one short transaction flips it to "succeeded". A
failure deletes the staged rows; the worker reaps those of a killed import. Either way nothing is half-visible.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from sqlalchemy import ARRAY, String, any_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.identity import prompt_sha256
from core.vocabulary import BEHAVIORS, JOB_ACTIVE, SPLITS
from curation.prompts.readers import (
    MAX_DEPTH,
    ImportFileError,
    RowError,
    SourceRow,
    count_rows_hint,
    detect_format,
    iter_rows,
)
from db.engine import refresh_statistics, write_engine
from db.models import Job, Prompt, PromptImport, PromptSet, utcnow
from db.models.prompts import IMPORT_STAGING
from db.visibility import INCLUDE_STAGED

FIELDS = ("text", "source_id", "category", "mutation", "split", "expected_behavior")
MAX_STORED_ERRORS = 1000
BATCH = 2000
STAGING_STALE = timedelta(minutes=10)  # a staging import without a job that wrote nothing this long is dead
MAX_META_CHARS = 64_000  # unmapped columns kept per row: more belongs in a mapped field, or nowhere
Progress = Callable[[int, Optional[int], str], None]


@dataclass
class ImportConfig:
    """How one file maps onto prompts. JSON-serialisable so it can travel as job params."""

    set_name: str
    mapping: dict[str, str] = field(default_factory=lambda: {"text": "prompt"})  # field -> column
    behavior: Optional[str] = None  # constant expected behaviour ...
    behavior_column: Optional[str] = None  # ... or a column through behavior_map
    behavior_map: dict[str, str] = field(default_factory=dict)
    split: str = "train"  # constant unless mapping has "split"
    all_or_nothing: bool = False
    max_chars: int = 32_000
    file_format: Optional[str] = None  # detected from the extension when None
    delimiter: Optional[str] = None
    hf_split: Optional[str] = None
    meta_columns: Optional[list[str]] = None  # None: every unmapped column goes to metadata
    set_description: str = ""
    set_source: str = ""
    set_license: str = ""
    set_kind: str = "prompts"
    project_id: int = 1

    def validate(self) -> None:
        if "text" not in self.mapping:
            raise ValueError("the mapping must name the text column (text=COLUMN)")
        unknown = set(self.mapping) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} in the mapping; fields are {', '.join(FIELDS)}")
        if (self.behavior is None) == (self.behavior_column is None):
            raise ValueError("give exactly one of a constant behaviour or a behaviour column")
        if self.behavior is not None and self.behavior not in BEHAVIORS:
            raise ValueError(f"behaviour '{self.behavior}' is not one of {', '.join(BEHAVIORS)}")
        bad = {k: v for k, v in self.behavior_map.items() if v not in BEHAVIORS}
        if bad:
            raise ValueError(f"behaviour map values {bad} are not among {', '.join(BEHAVIORS)}")
        if self.split not in SPLITS:
            raise ValueError(f"split '{self.split}' is not one of {', '.join(SPLITS)}")
        if not self.set_name.strip():
            raise ValueError("the set name is empty")
        if len(self.set_name) > 200:
            raise ValueError(f"the set name has {len(self.set_name)} characters (at most 200)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImportConfig":
        return cls(**d)


@dataclass
class ImportReport:
    file: str
    set_name: str
    file_format: str
    all_or_nothing: bool
    status: str = "running"  # succeeded | failed
    rows_read: int = 0
    valid: int = 0
    inserted: int = 0
    duplicates: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    import_id: Optional[int] = None
    message: str = ""

    def add_error(self, err: RowError) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_STORED_ERRORS:
            self.errors.append(err.as_dict())

    def summary(self) -> str:
        return (f"{self.status}: {self.inserted} inserted, {self.duplicates} duplicates skipped, "
                f"{self.invalid} invalid of {self.rows_read} rows into '{self.set_name}'"
                + (f" ({self.message})" if self.message else ""))


RowTransform = Callable[[dict[str, Any]], Optional[dict[str, Any]]]  # None drops the row (e.g. copyright rows)


class PromptImporter:
    """Imports one file into one prompt set under an ImportConfig."""

    def __init__(self, engine: Engine, config: ImportConfig, *, row_transform: RowTransform | None = None,
                 created_by: int | None = None, job_id: int | None = None):
        config.validate()
        self.engine = engine
        self.config = config
        self.row_transform = row_transform
        self.created_by = created_by
        self.job_id = job_id
        # Per-row constants, computed once (the check runs twice per row, so it is the importer's hot path).
        self._text_col = config.mapping["text"]
        # Optional text fields longer than their column are row errors (PostgreSQL would reject the whole import).
        self._opt_cols = [(f, config.mapping.get(f), Prompt.__table__.c[f].type.length)
                          for f in ("source_id", "category", "mutation")]
        self._mapped = set(config.mapping.values()) | {config.behavior_column}

    # -- validation ---------------------------------------------------------------------------------------
    def _rows(self, path: str, fmt: str) -> Iterator[SourceRow | RowError]:
        cfg = self.config
        required = tuple(c for c in [*cfg.mapping.values(), cfg.behavior_column] if c)
        text_column = self._text_col
        if self.row_transform is not None:
            required, text_column = (), None  # columns are checked after the transform
        yield from iter_rows(path, fmt, delimiter=cfg.delimiter, hf_split=cfg.hf_split, required=required,
                             text_column=text_column)

    def _check(self, path: str, src: SourceRow, full: bool = True) -> dict[str, Any] | RowError | None:
        """A row's prompt fields, or its first error; with full=False only what validation needs."""
        cfg = self.config
        values = src.values
        if self.row_transform is not None:
            values = self.row_transform(dict(values))
            if values is None:
                return None

        def err(fld: str, msg: str) -> RowError:
            return RowError(path, src.row, src.line, fld, msg)

        col = self._text_col
        if src.row == 1 and col not in values:
            raise ImportFileError(path, f"column '{col}' not found; the first row has {sorted(values)[:20]}",
                                  line=src.line, field_name=col)
        text = values.get(col)
        if text is None or (isinstance(text, float) and text != text):
            return err(col, "missing text")
        if not isinstance(text, str):  # a number or a list is not a prompt, whatever str() makes of it
            return err(col, f"expected text, found {_kind(text)}")
        if not text.strip():
            return err(col, "empty text")
        if len(text) > cfg.max_chars:
            return err(col, f"text too long: {len(text):,} characters (limit {cfg.max_chars:,})")
        bad = _bad_text(text)
        if bad:
            return err(col, f"text {bad}")
        if cfg.behavior_column:
            raw = values.get(cfg.behavior_column)
            raw = "" if raw is None else str(raw).strip()
            behavior = cfg.behavior_map.get(raw, raw) if cfg.behavior_map else raw
            if behavior not in BEHAVIORS:
                known = sorted(cfg.behavior_map) if cfg.behavior_map else list(BEHAVIORS)
                return err(cfg.behavior_column, f"unknown behaviour value {raw!r}; expected one of {known}")
        else:
            behavior = cfg.behavior
        split = cfg.split
        if "split" in cfg.mapping:
            split = str(values.get(cfg.mapping["split"]) or "").strip()
            if split not in SPLITS:
                return err(cfg.mapping["split"], f"unknown split {split!r}; expected train or eval")
        # Every other stored value is checked here too: PostgreSQL refuses NUL characters and unpaired surrogates,
        # and one refused value would abort the whole write.
        out = {"text": text, "expected_behavior": behavior, "split": split}
        for fld, c, length in self._opt_cols:
            v = values.get(c) if c else None
            if type(v) is not str:
                if v is None or (isinstance(v, float) and v != v):
                    out[fld] = None
                    continue
                if isinstance(v, (dict, list, tuple, set)):
                    return err(c, f"expected text or a number, found {_kind(v)}")
                v = str(v)
            bad = _suspect(v) and _bad_text(v)
            if bad:
                return err(c, bad)
            if length and len(v) > length:  # cut, it would silently merge distinct values: refused instead
                return err(c, f"too long: {len(v):,} characters (limit {length:,})")
            out[fld] = v or None
        if cfg.meta_columns is None:
            meta = {k: v for k, v in values.items() if k not in self._mapped}
        else:
            meta = {k: values[k] for k in cfg.meta_columns if k in values}
        problem = _meta_problem(meta)
        if problem:
            return err(*problem)
        head = text.lstrip()[:2]
        formula_like = head[:1] in ("=", "+", "-", "@") and head != "--"
        if not full:  # pass 1 only needs to know the row is valid
            return {"formula_like": formula_like}
        out["formula_like"] = formula_like
        out["meta"] = {k: (v if v is None or type(v) is str else _jsonable(v)) for k, v in meta.items()}
        return out

    def _valid_rows(self, path: str, fmt: str, report: ImportReport | None) -> Iterator[tuple[SourceRow, dict]]:
        for src in self._rows(path, fmt):
            if isinstance(src, RowError):
                if report is not None:
                    report.rows_read += 1
                    report.add_error(src)
                continue
            checked = self._check(path, src, full=report is None)
            if checked is None:
                continue
            if report is not None:
                report.rows_read += 1
            if isinstance(checked, RowError):
                if report is not None:
                    report.add_error(checked)
                continue
            yield src, checked

    # -- run ------------------------------------------------------------------------------------------------
    def run(self, path: str | Path, progress: Progress | None = None) -> ImportReport:
        path = str(path)
        cfg = self.config
        fmt = cfg.file_format or detect_format(path)
        report = ImportReport(file=path, set_name=cfg.set_name, file_format=fmt, all_or_nothing=cfg.all_or_nothing)
        total = count_rows_hint(path, fmt)

        def tick(n: int, phase: str) -> None:
            if progress is not None and (n % 1000 == 0):
                progress(n, total, phase)

        # Pass 1: validate only.
        for n, (src, checked) in enumerate(self._valid_rows(path, fmt, report), start=1):
            report.valid += 1
            if checked["formula_like"] and len(report.warnings) < 100:
                report.warnings.append({"file": path, "row": src.row, "line": src.line, "field": cfg.mapping["text"],
                                        "message": "formula-like text stored as plain text"})
            tick(n, "validating")
        if report.rows_read == 0:
            raise ImportFileError(path, "no data rows found (an empty file?)", line=1, field_name=cfg.mapping["text"])
        if report.invalid and (cfg.all_or_nothing or not report.valid):
            report.status = "failed"
            report.message = (f"all-or-nothing: {report.invalid} invalid row(s), nothing imported" if report.valid
                              else f"no valid rows: {report.invalid} invalid, nothing imported")
            self._record(report)
            return report
        # Pass 2: write, all or nothing.
        try:
            if self.engine.dialect.name == "sqlite":
                self._write_staged(path, fmt, report, progress)
            else:
                self._write_one_transaction(path, fmt, report, progress)
        except _NothingNew:
            report.status = "failed"
            report.message = (f"nothing imported: every valid row was a duplicate and {report.invalid} "
                              f"row(s) were invalid")
            report.import_id = None
            self._record(report)
            return report
        except Exception as e:
            report.status = "failed"
            report.message = f"write failed, nothing imported: {type(e).__name__}: {e}"
            report.inserted = 0
            report.import_id = None
            try:
                self._record(report)
            except Exception:  # the original error matters more than the report row
                pass
            raise
        report.status = "succeeded"
        refresh_statistics(self.engine, ("prompt", "prompt_set"), report.inserted)
        if progress is not None:
            progress(report.valid, report.valid, "done")
        return report

    def _import_row(self, path: str, fmt: str, set_id: int, status: str) -> PromptImport:
        cfg = self.config
        return PromptImport(set_id=set_id, set_name=cfg.set_name, source_path=path[-1000:], file_format=fmt,
                            config=cfg.to_dict(), status=status, created_by=self.created_by, job_id=self.job_id)

    def _batches(self, path: str, fmt: str, report: ImportReport) -> Iterator[dict[str, dict]]:
        """Valid rows in batches (sha256 -> row). Duplicates within a batch are dropped here; earlier batches and
        earlier imports are found by _flush's query, so memory does not grow with the file."""
        batch: dict[str, dict] = {}
        for _src, checked in self._valid_rows(path, fmt, None):
            sha = prompt_sha256(checked["text"])
            if sha in batch:
                report.duplicates += 1
                continue
            batch[sha] = checked
            if len(batch) >= BATCH:
                yield batch
                batch = {}
        if batch:
            yield batch

    def _finish(self, imp: PromptImport, report: ImportReport) -> None:
        if report.inserted == 0 and report.invalid:
            raise _NothingNew()
        imp.rows_read, imp.inserted, imp.duplicates, imp.invalid = (
            report.rows_read, report.inserted, report.duplicates, report.invalid)
        imp.errors = report.errors
        imp.status = "succeeded"
        imp.finished_at = utcnow()

    def _write_one_transaction(self, path: str, fmt: str, report: ImportReport, progress: Progress | None) -> None:
        with Session(write_engine(self.engine)) as session:
            with session.begin():
                set_id = self._ensure_set(session)
                imp = self._import_row(path, fmt, set_id, "running")
                session.add(imp)
                session.flush()
                report.import_id = imp.id
                done = 0
                for batch in self._batches(path, fmt, report):
                    done += self._flush(session, batch, set_id, imp.id, report)
                    if progress is not None:
                        progress(done, report.valid, "writing")
                self._finish(imp, report)  # raising _NothingNew rolls back: no new, empty set
                session.add(imp)

    def _write_staged(self, path: str, fmt: str, report: ImportReport, progress: Progress | None) -> None:
        with Session(write_engine(self.engine), expire_on_commit=False) as session:
            # One staging import at a time: another one's hidden rows would count as duplicates here, and be
            # gone if it then failed.
            busy = session.execute(select(PromptImport.id, PromptImport.set_name).where(
                PromptImport.status == IMPORT_STAGING)).first()
            if busy is not None:
                raise ImportFileError(path, f"import {busy[0]} into '{busy[1]}' is still being written; import "
                                            "this file when it has finished")
            set_id = self._ensure_set(session)
            imp = self._import_row(path, fmt, set_id, IMPORT_STAGING)
            session.add(imp)
            session.commit()
        report.import_id = imp.id
        try:
            done = 0
            for batch in self._batches(path, fmt, report):
                with Session(write_engine(self.engine)) as session:  # one short write lock per chunk
                    _still_staging(session, imp.id)
                    done += self._flush(session, batch, set_id, imp.id, report)
                    session.commit()
                if progress is not None:
                    progress(done, report.valid, "writing")
            with Session(write_engine(self.engine)) as session:
                row = _still_staging(session, imp.id)
                self._finish(row, report)  # the one moment the rows become visible
                session.commit()
        except BaseException:
            discard_staged(self.engine, imp.id)
            raise

    def _ensure_set(self, session: Session) -> int:
        cfg = self.config
        ps = session.execute(select(PromptSet).where(PromptSet.project_id == cfg.project_id,
                                                         PromptSet.name == cfg.set_name)).scalars().first()
        if ps is None:
            ps = PromptSet(project_id=cfg.project_id, name=cfg.set_name, description=cfg.set_description,
                           source=cfg.set_source, license=cfg.set_license, kind=cfg.set_kind)
            session.add(ps)
            session.flush()
        return ps.id

    def _flush(self, session: Session, batch: dict[str, dict], set_id: int, import_id: int,
               report: ImportReport) -> int:
        """Insert one batch (sha256 -> checked row), skipping prompts the project already has."""
        if not batch:
            return 0
        project_id = self.config.project_id
        if self.engine.dialect.name == "postgresql":
            # One array parameter: a 2,000-item IN list, once psycopg prepares it, sometimes got a plan that took
            # seconds per batch (measured up to 21 s), which made 100k-row imports ten times slower.
            match = Prompt.sha256 == any_(bindparam("hashes", list(batch), type_=ARRAY(String)))
        else:
            match = Prompt.sha256.in_(list(batch))
        existing = set(session.execute(select(Prompt.sha256).where(Prompt.project_id == project_id, match),
                                       execution_options={INCLUDE_STAGED: True}).scalars())
        now = utcnow()
        rows = [{
            "project_id": project_id, "set_id": set_id, "import_id": import_id, "text": r["text"],
            "sha256": sha, "source_id": r["source_id"], "category": r["category"],
            "expected_behavior": r["expected_behavior"], "split": r["split"], "mutation": r["mutation"],
            "meta": r["meta"], "created_at": now,
        } for sha, r in batch.items() if sha not in existing]
        report.duplicates += len(batch) - len(rows)
        if rows:
            conn = session.connection()
            if conn.dialect.name == "postgresql":
                _copy_prompts(conn, rows)
            else:  # Core executemany: the ORM bulk path costs several times more per row and adds nothing here.
                conn.execute(insert(Prompt.__table__), rows)
        report.inserted += len(rows)
        return len(batch)

    def _record(self, report: ImportReport) -> None:
        """Keep a failed import's error report (its own small transaction; no prompts)."""
        cfg = self.config
        with Session(self.engine) as session:
            ps = session.execute(select(PromptSet.id).where(PromptSet.project_id == cfg.project_id,
                                                            PromptSet.name == cfg.set_name)).scalar()
            imp = PromptImport(set_id=ps, set_name=cfg.set_name, source_path=report.file[-1000:],
                               file_format=report.file_format, config=cfg.to_dict(), status=report.status,
                               rows_read=report.rows_read, inserted=0, duplicates=report.duplicates,
                               invalid=report.invalid, errors=report.errors, created_by=self.created_by,
                               job_id=self.job_id, finished_at=utcnow())
            session.add(imp)
            session.commit()
            report.import_id = imp.id


def _copy_prompts(conn, rows: list[dict]) -> None:
    """PostgreSQL's COPY through psycopg, inside the caller's transaction: about 1.4x the rows/s of executemany.
    The columns are the rows' own keys (the same dicts the SQLite path inserts)."""
    columns = list(rows[0])
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY prompt ({', '.join(columns)}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row([json.dumps(r[c]) if c == "meta" else r[c] for c in columns])


class _NothingNew(Exception):
    """Raised inside the write transaction to roll it back."""


def _still_staging(session: Session, import_id: int) -> PromptImport:
    """Inside a chunk's write transaction: the import was not reaped meanwhile (its rows would then be visible)."""
    row = session.get(PromptImport, import_id)
    if row is None or row.status != IMPORT_STAGING:
        raise RuntimeError("the import was reaped as abandoned while it ran")
    return row


def discard_staged(engine: Engine, import_id: int, *, reason: Optional[str] = None) -> int:
    """Delete a staging import's rows in chunks (each a short write lock; they stay invisible meanwhile), then its
    set if that is left empty and no other import uses it, then the import row; with `reason`, the import row is
    kept as failed instead. Returns the number of rows deleted."""
    gone = 0
    while True:
        with write_engine(engine).begin() as conn:
            ids = conn.execute(select(Prompt.id).where(Prompt.import_id == import_id).limit(BATCH * 5)).scalars().all()
            if ids:
                conn.execute(delete(Prompt).where(Prompt.id.in_(ids)))
                gone += len(ids)
                continue
            set_id = conn.execute(select(PromptImport.set_id).where(PromptImport.id == import_id)).scalar()
            if reason is None:
                conn.execute(delete(PromptImport).where(PromptImport.id == import_id))
            else:
                conn.execute(update(PromptImport).where(PromptImport.id == import_id).values(
                    status="failed", inserted=0, finished_at=utcnow(),
                    errors=[{"file": "", "line": None, "field": None, "message": reason[:2000]}]))
            if set_id is not None:
                used = conn.execute(select(func.count()).select_from(Prompt).where(Prompt.set_id == set_id)).scalar()
                others = conn.execute(select(func.count()).select_from(PromptImport).where(
                    PromptImport.set_id == set_id, PromptImport.id != import_id)).scalar()
                if not used and not others and reason is None:
                    conn.execute(delete(PromptSet).where(PromptSet.id == set_id))
            return gone


def reap_imports(engine: Engine, *, stale_after: timedelta = STAGING_STALE) -> list[int]:
    """Staging imports that died: their job has ended (the worker was killed and the job reaped), or, run by the
    CLI without a job, no chunk was written for `stale_after`. Their rows are deleted; the import is kept as
    failed."""
    before = utcnow() - stale_after
    recent = (select(Prompt.id).where(Prompt.import_id == PromptImport.id, Prompt.created_at >= before)
              .exists())
    with engine.connect() as conn:
        dead = conn.execute(select(PromptImport.id, Job.id, Job.status)
                            .join(Job, Job.id == PromptImport.job_id)
                            .where(PromptImport.status == IMPORT_STAGING, Job.status.not_in(JOB_ACTIVE))).all()
        orphans = conn.execute(select(PromptImport.id).where(
            PromptImport.status == IMPORT_STAGING, PromptImport.job_id.is_(None),
            PromptImport.created_at < before, ~recent)).scalars().all()
    for import_id, job_id, job_status in dead:
        discard_staged(engine, import_id, reason=f"its job {job_id} ended ({job_status}) before the import was "
                                                 "complete; nothing was imported")
    for import_id in orphans:
        discard_staged(engine, import_id, reason=f"no rows were written for {stale_after} (its process was "
                                                 "killed?); nothing was imported")
    return [d[0] for d in dead] + list(orphans)


def _kind(v: Any) -> str:
    names = {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number"}
    return names.get(type(v)) or f"a {type(v).__name__} value"


def _suspect(s: str) -> bool:
    """Cheap first test (C-level) that rules out most strings before _bad_text looks closer."""
    return "\x00" in s or not s.isascii()


def _bad_text(s: str) -> str | None:
    """Why PostgreSQL would refuse this string, or None."""
    if "\x00" in s:
        return "contains a NUL character"
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return "has invalid UTF-8 (undecodable bytes or an unpaired surrogate)"
    return None


def _meta_problem(meta: dict[str, Any]) -> tuple[str, str] | None:
    """(column, why) for the first metadata value that cannot be stored, or that pushes the row over its size."""
    size = 0
    for k, v in meta.items():
        bad = _suspect(k) and _bad_text(k) and f"the column name {_bad_text(k)}"
        if not bad:
            if type(v) is str:
                n, bad = len(v), _suspect(v) and _bad_text(v)
            elif isinstance(v, float) and v != v:  # a missing value in a dataframe column: stored as null
                n = 0
            else:
                n, bad = _walk(v)
        if bad:
            return k, bad
        size += len(k) + n
        if size > MAX_META_CHARS:
            return k, (f"metadata too large: the unmapped columns reach {size:,} characters here (limit "
                       f"{MAX_META_CHARS:,} per row); map this column to a field or leave it out of the metadata")
    return None


def _walk(value: Any) -> tuple[int, str | None]:
    """Size and first problem of a nested value, without recursion (depth is capped, not trusted)."""
    size, stack = 0, [(value, 1)]
    while stack and size <= MAX_META_CHARS:
        v, depth = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            if depth > MAX_DEPTH:
                return size, f"nested deeper than {MAX_DEPTH} levels"
            items = v.items() if isinstance(v, dict) else ((None, x) for x in v)
            for k, x in items:
                if isinstance(k, str):
                    bad = _bad_text(k)
                    if bad:
                        return size, f"a key {bad}"
                    size += len(k)
                stack.append((x, depth + 1))
        elif isinstance(v, str):
            bad = _bad_text(v)
            if bad:
                return size, bad
            size += len(v)
        elif isinstance(v, float) and not math.isfinite(v):
            return size, f"{v} is not a number JSON can store"
        else:
            size += 8
    return size, None


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if isinstance(v, float):
        return None if v != v else v
    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)
