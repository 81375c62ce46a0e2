"""Streaming readers: each yields rows one at a time so memory stays flat in the file size.

A row is `SourceRow(row, line, values)`; a row that cannot be read at all is a `RowError`. Problems with
the whole file raise `ImportFileError`. Every message names the file, the line or row, and the field.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "hf_disk", "hf_file")
MAX_FIELD_BYTES = 64 * 1024 * 1024  # csv refuses fields > 128 KiB by default; we check length ourselves


@dataclass
class SourceRow:
    row: int  # 1-based data row
    line: int | None  # 1-based physical line where the row starts (text formats)
    values: dict[str, Any]


@dataclass
class RowError:
    file: str
    row: int | None
    line: int | None
    field: str
    message: str

    def where(self) -> str:
        loc = f"line {self.line}" if self.line is not None else f"row {self.row}"
        return f"{self.file}:{loc}: field '{self.field}': {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "row": self.row, "line": self.line, "field": self.field, "message": self.message}


@dataclass
class ImportFileError(Exception):
    file: str
    message: str
    line: int | None = None
    field_name: str | None = None
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        loc = f":line {self.line}" if self.line is not None else ""
        fld = f": field '{self.field_name}'" if self.field_name else ""
        return f"{self.file}{loc}{fld}: {self.message}"


def detect_format(path: str | os.PathLike) -> str:
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists() or (p / "state.json").exists():
            return "hf_disk"
        raise ImportFileError(str(p), "a folder is only accepted when it was written by datasets' save_to_disk")
    ext = "".join(p.suffixes[-1:]).lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
            ".parquet": "parquet", ".pq": "parquet", ".arrow": "hf_file"}.get(ext) or _unknown(p)


def _unknown(p: Path) -> str:
    raise ImportFileError(str(p), f"unknown file type '{p.suffix or '(none)'}'; use CSV, TSV, JSONL, JSON, Parquet, "
                                  "or a datasets folder")


def iter_rows(path: str | os.PathLike, fmt: str, *, delimiter: str | None = None, hf_split: str | None = None,
              required: tuple[str, ...] = ()) -> Iterator[SourceRow | RowError]:
    path = str(path)
    if not os.path.exists(path):
        raise ImportFileError(path, "file not found")
    if fmt in ("csv", "tsv"):
        yield from _csv_rows(path, delimiter or ("\t" if fmt == "tsv" else ","), required)
    elif fmt == "jsonl":
        yield from _jsonl_rows(path)
    elif fmt == "json":
        yield from _json_rows(path)
    elif fmt == "parquet":
        yield from _parquet_rows(path)
    elif fmt in ("hf_disk", "hf_file"):
        yield from _hf_rows(path, fmt, hf_split)
    else:
        raise ImportFileError(path, f"unknown format '{fmt}'; expected one of {', '.join(FORMATS)}")


def count_rows_hint(path: str, fmt: str) -> int | None:
    """A cheap total for progress bars (line count for text formats, metadata for Parquet)."""
    try:
        if fmt in ("csv", "tsv", "jsonl"):
            with open(path, "rb") as f:
                n = sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))
            return max(n - (1 if fmt != "jsonl" else 0), 0)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
    except Exception:
        return None
    return None


def _bad_utf8_field(values: dict[str, Any]) -> str | None:
    for k, v in values.items():
        if isinstance(v, str) and not v.isascii():  # ASCII is valid UTF-8; only the rest can hold escapes
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return k
    return None


def _csv_rows(path: str, delimiter: str, required: tuple[str, ...]) -> Iterator[SourceRow | RowError]:
    csv.field_size_limit(MAX_FIELD_BYTES)
    # surrogateescape keeps undecodable bytes so we can report the exact row and field instead of dying.
    with open(path, "r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError(path, "the file is empty (no header line)", line=1,
                                  field_name=required[0] if required else None)
        except csv.Error as e:
            raise ImportFileError(path, f"cannot read the header: {e}", line=1)
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            hint = ""
            for d in (";", "\t", "|", ","):
                if d != delimiter and len(header) == 1 and d in header[0]:
                    hint = f"; the header looks {'tab' if d == chr(9) else repr(d)}-delimited: set the delimiter to it"
            raise ImportFileError(path, f"column(s) {missing} not in the header {header[:20]}{hint}",
                                  line=1, field_name=missing[0])
        if _bad_utf8_field(dict(enumerate(header))) is not None:
            raise ImportFileError(path, "the header is not valid UTF-8", line=1)
        row_no, start = 0, reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                row_no += 1
                yield RowError(path, row_no, start, "(row)", f"malformed CSV: {e}")
                start = reader.line_num + 1
                continue
            row_no += 1
            line = start
            start = reader.line_num + 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                row_no -= 1
                continue
            if len(cells) != len(header):
                # Name the first column the row does not fill (or the first surplus cell) as the field.
                fld = header[len(cells)] if len(cells) < len(header) else f"(cell {len(header) + 1})"
                yield RowError(path, row_no, line, fld,
                               f"ragged row: expected {len(header)} cells as in the header, found {len(cells)}")
                continue
            values = dict(zip(header, cells))
            if not "".join(cells).isascii():  # one C-level check for the common all-ASCII row
                bad = _bad_utf8_field(values)
                if bad is not None:
                    yield RowError(path, row_no, line, bad, "invalid UTF-8 bytes")
                    continue
            yield SourceRow(row_no, line, values)


def _jsonl_rows(path: str) -> Iterator[SourceRow | RowError]:
    row_no = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            row_no += 1
            # surrogateescape keeps undecodable bytes, so the report can name the field that holds them.
            text = raw.decode("utf-8", errors="surrogateescape")
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                # A cut-off line (e.g. a partial last write) does not end its object; anything else is bad JSON.
                cut = e.pos >= len(text.rstrip()) or not text.rstrip().endswith(("}", "]"))
                what = "truncated JSON (the line ends before the object does)" if cut else "invalid JSON"
                yield RowError(path, row_no, line_no, _last_key(text[:e.pos]),
                               f"{what}: {e.msg} (column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield RowError(path, row_no, line_no, "(line)", f"expected a JSON object, found {type(obj).__name__}")
                continue
            bad = _bad_utf8_field(obj)
            if bad is not None:
                yield RowError(path, row_no, line_no, bad, "invalid UTF-8 bytes")
                continue
            if not text.isascii() and _has_escapes(text):  # bad bytes outside string values, e.g. in a key
                yield RowError(path, row_no, line_no, "(line)", "invalid UTF-8 bytes")
                continue
            yield SourceRow(row_no, line_no, obj)


_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:')


def _last_key(text: str) -> str:
    """The last object key before a parse error: the field a cut-off or broken line was in."""
    keys = _KEY.findall(text)
    return keys[-1] if keys else "(line)"


def _has_escapes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _json_rows(path: str) -> Iterator[SourceRow | RowError]:
    # A JSON array cannot be streamed with the standard library; it is read whole (use JSONL for big files).
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ImportFileError(path, f"invalid UTF-8 at byte {e.start}")
    except json.JSONDecodeError as e:
        raise ImportFileError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno)
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise ImportFileError(path, "expected a JSON array of objects (or strings)")
    for i, obj in enumerate(data, start=1):
        if isinstance(obj, str):
            obj = {"text": obj}
        if not isinstance(obj, dict):
            yield RowError(path, i, None, "(row)", f"expected an object, found {type(obj).__name__}")
            continue
        yield SourceRow(i, None, obj)


def _parquet_rows(path: str) -> Iterator[SourceRow | RowError]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise ImportFileError(path, f"not a readable Parquet file: {e}")
    row_no = 0
    for batch in pf.iter_batches(batch_size=4096):
        for values in batch.to_pylist():
            row_no += 1
            yield SourceRow(row_no, None, values)


def _hf_rows(path: str, fmt: str, hf_split: str | None) -> Iterator[SourceRow | RowError]:
    import datasets

    try:
        if fmt == "hf_disk":
            ds = datasets.load_from_disk(path)
        else:
            builder = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text",
                       ".arrow": "arrow"}.get(Path(path).suffix.lower(), "json")
            from db.engine import rational_home

            ds = datasets.load_dataset(builder, data_files=path, cache_dir=str(rational_home() / "hf_cache"))
    except Exception as e:
        raise ImportFileError(path, f"cannot load with datasets: {e}")
    if isinstance(ds, datasets.DatasetDict):
        split = hf_split or ("train" if "train" in ds else next(iter(ds)) if len(ds) == 1 else None)
        if split not in ds:
            raise ImportFileError(path, f"choose a split: the dataset has {list(ds)}")
        ds = ds[split]
    row_no = 0
    for batch in ds.iter(batch_size=2048):
        cols = list(batch)
        for i in range(len(batch[cols[0]]) if cols else 0):
            row_no += 1
            yield SourceRow(row_no, None, {c: batch[c][i] for c in cols})
