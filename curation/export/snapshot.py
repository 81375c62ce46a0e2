"""Export snapshots: an immutable, named, reproducible training set built from reviewed traces.

Files are written to a hidden temp folder and renamed into place; the row becomes `ready` only after that, and
only once every lineage row is written. A snapshot whose job ended while it was building (its worker was killed)
is failed and its temp folder removed by `reap_exports`, which the worker runs as it reaps stale jobs.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.vocabulary import JOB_ACTIVE
from curation.auth import check
from curation.export.files import card, manifest, write_files
from curation.export.rows import SPLITS, ExportTrace, assign_splits, build_rows
from curation.export.spec import FORMATS, NAME_PATTERN, ContaminationError, ExportError, ExportFilter, ExportOptions
from curation.prompts.contamination import check_contamination
from db.engine import artifact_root, write_engine
from db.models import EXPORT_KINDS, ExportItem, ExportSnapshot, Job, PromptSet, utcnow

Progress = Callable[[int, Optional[int], str], None]


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
    return artifact_root() / "exports"


def _reserve(engine: Engine, name: str, kind: str, flt: ExportFilter, options: ExportOptions, formats: list[str],
             created_by: Optional[int], job_id: Optional[int], path: Path) -> int:
    """Take the name: a ready snapshot keeps it forever; a failed or abandoned one is replaced. The path is
    recorded now so that the reaper can find the temp folder of a build that was killed."""
    with Session(write_engine(engine)) as s, s.begin():
        old = s.execute(select(ExportSnapshot.id, ExportSnapshot.status)
                        .where(ExportSnapshot.project_id == flt.project_id, ExportSnapshot.name == name)).first()
        if old is not None:
            if old.status == "ready":
                raise ExportError(f"export '{name}' already exists; snapshots are immutable, choose another name")
            s.execute(delete(ExportItem).where(ExportItem.export_id == old.id))
            s.execute(delete(ExportSnapshot).where(ExportSnapshot.id == old.id))
        snap = ExportSnapshot(project_id=flt.project_id, name=name, kind=kind, filter=flt.to_dict(),
                              options=options.to_dict(), formats=formats, created_by=created_by, job_id=job_id,
                              path=str(path))
        s.add(snap)
        s.flush()
        return snap.id


def _fail(engine: Engine, snap_id: int, error: str, contamination: dict | None = None) -> None:
    values: dict[str, Any] = {"status": "failed", "error": error[:4000], "finished_at": utcnow(), "path": None}
    if contamination is not None:
        values["contamination"] = contamination
    with engine.begin() as conn:
        conn.execute(update(ExportSnapshot).where(ExportSnapshot.id == snap_id).values(**values))


def _partials(root: Path, name: str, snap_id: int | None = None) -> list[Path]:
    """Temp folders of builds of exactly this name (of one snapshot when given): `.NAME.ID-HEX.partial`, never
    those of another export whose name starts with this one (`NAME.b`)."""
    own = re.compile(rf"\.{re.escape(name)}\.(\d+)-[0-9a-f]{{8}}\.partial")
    found = []
    for p in root.glob(f".{glob.escape(name)}.*.partial"):
        m = own.fullmatch(p.name)
        if m and (snap_id is None or int(m.group(1)) == snap_id):
            found.append(p)
    return found


def reap_exports(engine: Engine) -> list[int]:
    """Snapshots still `building` whose job has ended (its worker was killed and the job reaped): failed, and their
    temp folders removed."""
    with engine.connect() as conn:
        dead = conn.execute(select(ExportSnapshot.id, ExportSnapshot.name, ExportSnapshot.path, Job.id, Job.status,
                                   Job.error)
                            .join(Job, Job.id == ExportSnapshot.job_id)
                            .where(ExportSnapshot.status == "building", Job.status.not_in(JOB_ACTIVE))).all()
    reaped = []
    for snap_id, name, path, job_id, job_status, job_error in dead:
        error = f"its job {job_id} ended ({job_status}) before the snapshot was complete: {job_error or ''}"
        with write_engine(engine).begin() as conn:
            taken = conn.execute(update(ExportSnapshot)
                                 .where(ExportSnapshot.id == snap_id, ExportSnapshot.status == "building")
                                 .values(status="failed", error=error[:4000], finished_at=utcnow(), path=None))
        if taken.rowcount != 1:
            continue  # replaced or finished meanwhile
        for tmp in _partials(Path(path).parent, name, snap_id) if path else []:
            shutil.rmtree(tmp, ignore_errors=True)
        reaped.append(snap_id)
    return reaped


def check_request(name: str, kind: str, formats: list[str] | None) -> list[str]:
    """The name, kind and formats, checked before a name is reserved or a job queued; the formats, sorted."""
    formats = sorted(set(formats or FORMATS))
    if not NAME_PATTERN.match(name or ""):
        raise ExportError(f"export name '{name}' must be 1-200 letters, digits, '.', '_' or '-'")
    if kind not in EXPORT_KINDS:
        raise ExportError(f"kind '{kind}' is not one of {', '.join(EXPORT_KINDS)}")
    if set(formats) - set(FORMATS):
        raise ExportError(f"format(s) {sorted(set(formats) - set(FORMATS))} not among {', '.join(FORMATS)}")
    return formats


def create_export(engine: Engine, name: str, kind: str, flt: ExportFilter | None = None,
                  options: ExportOptions | None = None, *, formats: list[str] | None = None,
                  out_dir: str | Path | None = None, created_by: Optional[int] = None,
                  job_id: Optional[int] = None, progress: Progress | None = None) -> ExportResult:
    """Build a snapshot; `created_by` is the acting user (None: the local operator), who must be allowed to train."""
    check(engine, created_by, "train")
    flt = flt or ExportFilter()
    options = options or ExportOptions()
    formats = check_request(name, kind, formats)
    progress = progress or (lambda done, total, phase: None)
    flt.validate()
    options.validate()
    root = Path(out_dir) if out_dir else default_export_root()
    final = root / name
    if final.exists():
        raise ExportError(f"{final} already exists; choose another name or folder")
    snap_id = _reserve(engine, name, kind, flt, options, formats, created_by, job_id, final.resolve())
    tmp = root / f".{name}.{snap_id}-{uuid.uuid4().hex[:8]}.partial"
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
        splits = assign_splits(rows, options)
        split_rows = {sp: [r for r, s in zip(rows, splits) if s == sp] for sp in SPLITS}
        counts = _counts(rows, splits, extra, len(traces))
        sets, templates = _set_info(engine, rows, traces)
        try:
            root.mkdir(parents=True, exist_ok=True)
            for stale in _partials(root, name):
                shutil.rmtree(stale, ignore_errors=True)  # left by a killed export of this name
            tmp.mkdir()
            write_files(tmp, kind, split_rows, formats)
            (tmp / "README.md").write_text(card(kind, counts, flt, options, sets, templates, contamination,
                                                formats), encoding="utf-8")
            files, digest = manifest(tmp)
            (tmp / "manifest.json").write_text(json.dumps({"sha256": digest, "files": files}, indent=1,
                                                          sort_keys=True), encoding="utf-8")
        except OSError as e:  # a read-only or full target is the user's to fix: one line, not a traceback
            raise ExportError(f"cannot write the export to {root}: {e.strerror or e}") from e
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


def _set_info(engine: Engine, rows: list[dict], traces: list[ExportTrace]):
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



def snapshot_archive(engine: Engine, user, export_id: int, *, max_bytes: int = 200 * 2**20) -> tuple[str, bytes]:
    """A ready snapshot's folder (HF dataset, JSONL, Parquet, card, manifest) as one zip for a download:
    (file name, bytes). Larger folders than max_bytes are refused with where to copy them from instead."""
    import io
    import zipfile

    check(engine, user, "train")
    with Session(engine) as s:
        snap = s.get(ExportSnapshot, export_id)
    if snap is None or snap.status != "ready" or not snap.path:
        raise ExportError(f"export {export_id} is not a ready snapshot")
    root = Path(snap.path).resolve()
    # Only the snapshot's own regular files: a link could point anywhere on the machine.
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.resolve().is_relative_to(root))
    size = sum(p.stat().st_size for p in files)
    if size > max_bytes:
        raise ExportError(f"export '{snap.name}' is {size / 2**20:,.0f} MiB, too large to download here: copy the "
                          f"folder {root} instead")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in files:
            z.write(p, f"{snap.name}/{p.relative_to(root)}")
    return f"{snap.name}.zip", buf.getvalue()
