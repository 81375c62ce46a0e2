"""Import: upload a file (or pick a built-in set), map its columns, and start an import job for the worker.

Only the first PREVIEW_ROWS rows are read here; the whole file is read by the worker's import job.
"""
from __future__ import annotations

import itertools
import json

import pandas as pd
import streamlit as st

from app.web.job_panel import job_panel
from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine, save_upload
from core.errors import PermissionDenied
from core.vocabulary import BEHAVIORS, SPLITS
from curation.prompts.builtin import BUILTIN_SETS
from curation.prompts.importer import ImportConfig
from curation.prompts.jobs import enqueue_builtin, enqueue_import
from curation.prompts.readers import ImportFileError, RowError, detect_format, iter_rows
from db.crud import list_sets

PREVIEW_ROWS = 20
NONE = "(none)"
INVALID = "(row invalid)"
OPTIONAL_FIELDS = ("source_id", "category", "mutation", "split")
TEXT_GUESSES = ("prompt", "text", "goal", "question", "instruction", "behavior", "forbidden_prompt", "query")
LABEL_GUESSES = ("expected_behavior", "expected_behaviour", "behavior_label", "label", "labels", "type", "safety",
                 "harmful", "unsafe", "is_harmful")
MAX_LABEL_VALUES = 10  # more distinct values than this in the preview: a text column, not a label
# Label values that name a behaviour in common safety sets; proposed, and shown, never applied unseen.
SYNONYMS = {"safe": "comply", "benign": "comply", "harmless": "comply", "complied": "comply", "compliance": "comply",
            "unsafe": "refuse", "harmful": "refuse", "refusal": "refuse", "refused": "refuse", "contrast_harm": "refuse"}
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
JOB_KEY = "import_job_id"

user = page_user(__file__)
eng = engine()


def preview(path: str, fmt: str, delimiter: str | None) -> tuple[list[dict], list[RowError]]:
    """The first PREVIEW_ROWS rows (and the unreadable ones among them); never the whole file."""
    rows, errors = [], []
    for item in itertools.islice(iter_rows(path, fmt, delimiter=delimiter), PREVIEW_ROWS):
        if isinstance(item, RowError):
            errors.append(item)
        else:
            rows.append(item.values)
    return rows, errors


def as_text(v) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (dict, list)) else str(v)


def columns_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def guess(columns: list[str], names: tuple[str, ...]) -> int:
    lower = [c.lower() for c in columns]
    return next((lower.index(n) for n in names if n in lower), 0)


def remember_upload(uploaded) -> str:
    """Save each new upload once; a new file also resets the previous file's mapping widgets."""
    saved = st.session_state.get("import_upload_saved")
    if saved is None or saved["file_id"] != uploaded.file_id:
        path = save_upload(uploaded.name, uploaded.getvalue())
        for k in [k for k in st.session_state if str(k).startswith("imp_")]:
            del st.session_state[k]
        saved = {"file_id": uploaded.file_id, "path": str(path), "name": uploaded.name}
        st.session_state["import_upload_saved"] = saved
    return saved["path"]


def label_column(columns: list[str], rows: list[dict], text_col: str) -> str | None:
    """A likely label column: a known name with few distinct values in the preview (never the text column)."""
    lower = {c.lower(): c for c in columns if c != text_col}
    for name in LABEL_GUESSES:
        col = lower.get(name)
        if col and len({str(r.get(col)) for r in rows if r.get(col) is not None}) <= MAX_LABEL_VALUES:
            return col
    return None


def behaviour_choice(columns: list[str], rows: list[dict], text_col: str) -> dict | None:
    """The expected behaviour: nothing until the user chooses (a default would label every row), a likely label
    column proposed. None while the choice is incomplete."""
    guessed = label_column(columns, rows, text_col)
    how = st.radio("Expected behaviour", ["Same for every row", "From a column"], horizontal=True, key="imp_beh_how",
                   index=1 if guessed else None,
                   help="Proposed: a column whose name and values look like labels." if guessed else None)
    if how is None:
        st.caption("Choose how each prompt's expected behaviour is set: refuse, comply or partial.")
        return None
    if how == "Same for every row":
        b = st.selectbox("Behaviour for every row", BEHAVIORS, index=None, placeholder="choose…",
                         key="imp_beh_const")
        return {"behavior": b} if b else None
    candidates = [c for c in columns if c != text_col]
    col = st.selectbox("Behaviour column", candidates, key="imp_beh_col",
                       index=candidates.index(guessed) if guessed in candidates else None, placeholder="choose…")
    if col is None:
        return None
    seen = sorted({str(r.get(col)).strip() for r in rows if r.get(col) is not None})
    if len(seen) > MAX_LABEL_VALUES:
        st.warning(f"Column {plain(col)} has {len(seen)} different values in the first {len(rows)} rows: it looks "
                   "like text, not a label. Choose a column whose values name the behaviour.")
        return None
    st.caption("Map each value seen in the preview (proposals for common names like safe/unsafe are filled in). "
               "Values not seen there make their rows invalid (listed after the import).")
    mapping = {}
    options = [*BEHAVIORS, INVALID]
    for value in seen:
        proposal = value if value in BEHAVIORS else SYNONYMS.get(value.lower(), INVALID)
        # Keyed by column and value: a choice made for one value never carries over to another.
        choice = st.selectbox(f"“{plain(value)}” →", options, index=options.index(proposal),
                              key=f"imp_beh_map_{col}_{value}")
        if choice != INVALID:
            mapping[value] = choice
    return {"behavior_column": col, "behavior_map": mapping}


def upload_tab() -> None:
    uploaded = st.file_uploader("Prompt file", type=["csv", "tsv", "jsonl", "ndjson", "json", "parquet"],
                                key="import_upload", help="CSV, TSV, JSONL, JSON or Parquet")
    if uploaded is None:
        return
    path = remember_upload(uploaded)
    try:
        fmt = detect_format(path)
        delimiter = None
        if fmt in ("csv", "tsv"):
            delimiter = st.columns(4)[0].selectbox("Delimiter", list(DELIMITERS), format_func=DELIMITERS.get,
                                                   index=2 if fmt == "tsv" else 0, key="imp_delim")
        rows, bad = preview(path, fmt, delimiter)
    except (ImportFileError, OSError, UnicodeError) as e:
        st.error(plain(e))
        return
    if not rows:
        st.error(f"{plain(uploaded.name)}: no readable rows in the first {PREVIEW_ROWS}"
                 + (f", e.g. {plain(bad[0].where())}" if bad else "."))
        return
    columns = columns_of(rows)
    st.markdown(f"**Preview** (first {len(rows)} rows of {plain(uploaded.name)}, {fmt})")
    st.dataframe(pd.DataFrame([{c: as_text(r.get(c)) for c in columns} for r in rows], columns=columns),
                 hide_index=True, width="stretch")
    if bad:
        st.warning(f"{len(bad)} unreadable row(s) in the preview, e.g. {plain(bad[0].where())}")

    st.markdown("**Map columns to fields**")
    stem = uploaded.name.rsplit(".", 1)[0]
    set_name = st.text_input("Prompt set", value=stem, key="imp_set", help="created when new")
    cols = st.columns(5)
    mapping = {"text": cols[0].selectbox("Text column", columns, index=guess(columns, TEXT_GUESSES),
                                         key="imp_map_text")}
    for c, fld in zip(cols[1:], OPTIONAL_FIELDS):
        options = [NONE, *columns]
        default = options.index(fld) if fld in options else 0
        choice = c.selectbox(fld.replace("_", " ").capitalize() + " column", options, index=default,
                             key=f"imp_map_{fld}")
        if choice != NONE:
            mapping[fld] = choice
    left, right = st.columns(2)
    with left:
        beh = behaviour_choice(columns, rows, mapping["text"])
    with right:
        split = "train"
        if "split" in mapping:
            st.caption(f"Split comes from column {plain(mapping['split'])} (train or eval).")
        else:
            split = st.radio("Split for every row", SPLITS, horizontal=True, key="imp_split",
                             help="or map a split column above")
        all_or_nothing = st.radio("When rows are invalid", ["Skip invalid rows and import the rest",
                                                            "All or nothing"], key="imp_mode") == "All or nothing"

    if st.button("Start import", type="primary", key="imp_start", disabled=beh is None,
                 help="Choose the expected behaviour first." if beh is None else None):
        try:
            cfg = ImportConfig(set_name=set_name.strip(), mapping=mapping, split=split, all_or_nothing=all_or_nothing,
                               file_format=fmt, delimiter=delimiter, **beh)
            job = enqueue_import(eng, user.id, path, cfg)
        except (ValueError, PermissionDenied) as e:
            st.error(plain(e))
            return
        st.session_state[JOB_KEY] = job.id


def builtin_tab() -> None:
    installed = {s["name"]: s["prompts"] for s in list_sets(eng)}
    name = st.selectbox("Built-in set", list(BUILTIN_SETS), key="builtin_name")
    bs = BUILTIN_SETS[name]
    st.markdown(bs.description)
    behaviour = bs.behavior or ", ".join(f"{k} → {v}" for k, v in bs.behavior_map.items())
    st.caption(f"License: {bs.license} · Source: {bs.source} · Split: {bs.split} · Behaviour: {behaviour} · "
               f"Installed: {installed.get(name, 0):,} prompts")
    if st.button("Install set", type="primary", key="builtin_start"):
        try:
            st.session_state[JOB_KEY] = enqueue_builtin(eng, user.id, name).id
        except (ValueError, PermissionDenied) as e:
            st.error(str(e))


st.title("Import prompts")
upload, builtin = st.tabs(["Upload a file", "Built-in set"])
with upload:
    upload_tab()
with builtin:
    builtin_tab()

if st.session_state.get(JOB_KEY):
    st.divider()
    st.subheader("Import job")
    job_panel(eng, st.session_state[JOB_KEY])
