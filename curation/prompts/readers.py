"""Streaming readers: each yields rows one at a time so memory stays flat in the file size.

A row is `SourceRow(row, line, values)`; a row that cannot be read at all is a `RowError`. Problems with
the whole file raise `ImportFileError`. Every message names the file, the line or row, and the field.
"""
from __future__ import annotations

import codecs
import csv
import itertools
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "hf_disk", "hf_file")
MAX_FIELD_BYTES = 64 * 1024 * 1024  # csv refuses fields > 128 KiB by default; we check length ourselves
MAX_DEPTH = 32  # nesting of JSON values; deeper ones are refused before they reach a recursive parser or the database
# Byte-order marks, longest first (a UTF-32-LE mark starts with the UTF-16-LE one).
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


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
              required: tuple[str, ...] = (), text_column: str | None = None) -> Iterator[SourceRow | RowError]:
    path = str(path)
    if not os.path.exists(path):
        raise ImportFileError(path, "file not found")
    if fmt not in FORMATS:
        raise ImportFileError(path, f"unknown format '{fmt}'; expected one of {', '.join(FORMATS)}")
    if fmt != "hf_disk" and not stat.S_ISREG(os.stat(path).st_mode):
        what = "a folder" if os.path.isdir(path) else "not a regular file"
        raise ImportFileError(path, f"{what}, not a {fmt} file" + (
            "; only a datasets save_to_disk folder can be imported as a folder" if os.path.isdir(path) else ""))
    if fmt in ("csv", "tsv"):
        yield from _csv_rows(path, delimiter or ("\t" if fmt == "tsv" else ","), required)
    elif fmt == "jsonl":
        yield from _jsonl_rows(path)
    elif fmt == "json":
        yield from _json_rows(path)
    elif fmt == "parquet":
        yield from _parquet_rows(path, text_column)
    else:
        yield from _hf_rows(path, fmt, hf_split)


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


def text_encoding(path: str) -> str:
    """The codec for a text file: UTF-8 unless a byte-order mark says UTF-16 or UTF-32."""
    with open(path, "rb") as f:
        head = f.read(4096)
    for bom, codec in BOMS:
        if head.startswith(bom):
            return codec
    # ASCII text in UTF-16 or UTF-32 has a NUL byte beside every character; UTF-8 text almost never has any.
    if len(head) >= 4 and head.count(b"\x00") * 4 >= len(head):
        raise ImportFileError(path, "not UTF-8: the NUL bytes between characters look like UTF-16 or UTF-32 "
                                    "without a byte-order mark; save the file as UTF-8", line=1)
    return "utf-8-sig"


def _open_text(path: str, codec: str, newline: str):
    # surrogateescape keeps undecodable UTF-8 bytes so we can report the exact row and field instead of dying;
    # UTF-16/32 are decoded strictly (that handler cannot carry their bad bytes) and a bad one fails the file.
    errors = "surrogateescape" if codec.startswith("utf-8") else "strict"
    return open(path, "r", encoding=codec, errors=errors, newline=newline)


def _decode_error(path: str, codec: str, line: int, e: UnicodeDecodeError) -> ImportFileError:
    return ImportFileError(path, f"not valid {codec.upper()} (as its byte-order mark says): {e.reason}", line=line)


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
    codec = text_encoding(path)
    with _open_text(path, codec, "") as f:
        # strict: a quote left open at the end of the file is an error, not one row swallowing the rest.
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError(path, "the file is empty (no header line)", line=1,
                                  field_name=required[0] if required else None)
        except UnicodeDecodeError as e:
            raise _decode_error(path, codec, 1, e)
        except csv.Error as e:
            raise ImportFileError(path, f"cannot read the header: {e}", line=1)
        header = [h.strip() for h in header]
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:  # a row's values would silently come from the last column of that name
            raise ImportFileError(path, f"column '{twice[0]}' appears {header.count(twice[0])} times in the header; "
                                  "rename or remove the duplicate", line=1, field_name=twice[0])
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
            except UnicodeDecodeError as e:
                raise _decode_error(path, codec, reader.line_num + 1, e)
            except csv.Error as e:
                _check_unreadable(path, codec, delimiter, header, start, reader.line_num, str(e))
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
                if start - line > 1:  # a quoted cell took in the lines after it: they may be rows of their own
                    multi = next((i for i, c in enumerate(cells) if "\n" in c or "\r" in c), 0)
                    fld = header[multi] if multi < len(header) else f"(cell {multi + 1})"
                    raise ImportFileError(path, f"the row starting here runs over lines {line}-{start - 1} and has "
                                                f"{len(cells)} cells, not {len(header)}: an unbalanced quote? "
                                                f"{start - line - 1:,} line(s) after it were not read as rows",
                                          line=line, field_name=fld)
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


def _check_unreadable(path: str, codec: str, delimiter: str, header: list[str], start: int, end: int,
                      why: str) -> None:
    """Errors after which the reader cannot find the next row fail the file, naming where the trouble starts."""
    if why == "unexpected end of data":
        what = (f"a quoted field opened here is never closed: the {end - start + 1:,} line(s) from here to the end "
                f"of the file (line {end}) were not read as rows")
    elif why.startswith("field larger than field limit"):
        what = (f"a field over {MAX_FIELD_BYTES:,} characters (an unclosed quote?): the lines from here to line "
                f"{end} were not read as rows")
    elif end > start:  # a quoted cell ran over several lines before the error: they may be rows of their own
        what = (f"malformed CSV ({why}) in a row that runs over lines {start}-{end}: an unbalanced quote? "
                f"{end - start:,} line(s) after it were not read as rows")
    else:
        return
    with _open_text(path, codec, "") as f:
        first = next(itertools.islice(f, start - 1, None), "")
    cells = next(csv.reader([first], delimiter=delimiter), [""])  # non-strict: the cells up to the open quote
    i = len(cells) - 1
    raise ImportFileError(path, what, line=start, field_name=header[i] if i < len(header) else f"(cell {i + 1})")


def _jsonl_rows(path: str) -> Iterator[SourceRow | RowError]:
    codec = text_encoding(path)
    row_no = line_no = 0
    with _open_text(path, codec, "\n") as f:
        while True:
            try:
                text = next(f)
            except StopIteration:
                return
            except UnicodeDecodeError as e:
                raise _decode_error(path, codec, line_no + 1, e)
            line_no += 1
            if not text.strip():
                continue
            row_no += 1
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                # A cut-off line (e.g. a partial last write) does not end its object; anything else is bad JSON.
                cut = e.pos >= len(text.rstrip()) or not text.rstrip().endswith(("}", "]"))
                what = "truncated JSON (the line ends before the object does)" if cut else "invalid JSON"
                yield RowError(path, row_no, line_no, _last_key(text[:e.pos]),
                               f"{what}: {e.msg} (column {e.colno})")
                continue
            except RecursionError:
                deep, _end = _deep_spot(text, 0)
                yield RowError(path, row_no, line_no, _last_key(text[:deep]), _too_deep())
                continue
            except ValueError as e:  # e.g. an integer longer than Python converts
                yield RowError(path, row_no, line_no, "(line)", f"invalid JSON: {e}")
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
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)  # strings are skipped whole, brackets counted
_SPACE = re.compile(r"[ \t\n\r]*")


def _last_key(text: str) -> str:
    """The last object key before a parse error: the field a cut-off or broken line was in."""
    keys = _KEY.findall(text)
    return keys[-1] if keys else "(line)"


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels"


def _deep_spot(text: str, start: int) -> tuple[int, int | None]:
    """Where the value at `start` first nests deeper than MAX_DEPTH, and where it ends (None: it never does).
    Only called after the parser gave up, so the scan's cost is paid only for such values."""
    depth, deep = 0, start
    for m in _TOKEN.finditer(text, start):
        t = m.group()
        if t in ("[", "{"):
            depth += 1
            if depth == MAX_DEPTH + 1:
                deep = m.start()
        elif t in ("]", "}"):
            depth -= 1
            if depth <= 0:
                return deep, m.end()
    return deep, None


def _has_escapes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _json_rows(path: str) -> Iterator[SourceRow | RowError]:
    # A JSON array cannot be streamed with the standard library; it is read whole (use JSONL for big files),
    # then parsed one element at a time so each row knows its line and one bad element does not sink the rest.
    codec = text_encoding(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as e:
        raise ImportFileError(path, f"invalid {codec.upper()} at byte {e.start}", line=raw.count(b"\n", 0, e.start) + 1)
    i = _SPACE.match(text).end()
    if text.startswith("[", i):
        yield from _json_array(path, text, i + 1)
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ImportFileError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno)
    except RecursionError:
        deep, _end = _deep_spot(text, i)
        raise ImportFileError(path, _too_deep(), line=text.count("\n", 0, deep) + 1, field_name=_last_key(text[:deep]))
    except ValueError as e:
        raise ImportFileError(path, f"invalid JSON: {e}")
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise ImportFileError(path, "expected a JSON array of objects (or strings)")
    for i, obj in enumerate(data, start=1):
        yield _json_row(path, i, None, obj)


def _json_array(path: str, text: str, i: int) -> Iterator[SourceRow | RowError]:
    decode = json.JSONDecoder().raw_decode
    line, counted, row = 1, 0, 0

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    i = _SPACE.match(text, i).end()
    closed = text.startswith("]", i)
    while not closed:
        row += 1
        try:
            obj, end = decode(text, i)
        except json.JSONDecodeError as e:
            raise ImportFileError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno)
        except RecursionError:
            deep, end = _deep_spot(text, i)
            if end is None:
                raise ImportFileError(path, _too_deep() + " and never closed", line=line_at(deep))
            yield RowError(path, row, line_at(i), _last_key(text[i:deep]), _too_deep())
        except ValueError as e:
            raise ImportFileError(path, f"invalid JSON: {e}", line=line_at(i))
        else:
            yield _json_row(path, row, line_at(i), obj)
        i = _SPACE.match(text, end).end()
        if text.startswith(",", i):
            i = _SPACE.match(text, i + 1).end()
        elif text.startswith("]", i):
            closed = True
        else:
            raise ImportFileError(path, "invalid JSON: expected ',' or ']' after an element", line=line_at(i))
    if _SPACE.match(text, i + 1).end() != len(text):
        raise ImportFileError(path, "invalid JSON: extra data after the array", line=line_at(i))


def _json_row(path: str, row: int, line: int | None, obj: Any) -> SourceRow | RowError:
    if isinstance(obj, str):
        obj = {"text": obj}
    if not isinstance(obj, dict):
        return RowError(path, row, line, "(row)", f"expected an object, found {type(obj).__name__}")
    return SourceRow(row, line, obj)


def _parquet_rows(path: str, text_column: str | None) -> Iterator[SourceRow | RowError]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise ImportFileError(path, f"not a readable Parquet file: {e}")
    schema = pf.schema_arrow
    if text_column is not None and text_column in schema.names:
        kind = schema.field(text_column).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ImportFileError(path, f"the text column holds {kind} values, not text: map a text column",
                                  field_name=text_column)
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
