"""Export & train: pick a filter (live count), a base model, a method and a preset; one click builds the snapshot
and queues the training job. The exact CLI command the click corresponds to is shown beside it."""
from __future__ import annotations

import json
from datetime import datetime

import streamlit as st

from app.web.job_panel import job_panel
from app.web.login import page_user
from app.web.navigation import link_to
from app.web.plain import plain
from app.web.state import engine
from core.errors import PermissionDenied
from core.vocabulary import DEFAULT_MODEL
from curation.export.jobs import enqueue_export
from curation.export.rows import count_rows
from curation.export.snapshot import list_exports, snapshot_archive
from curation.export.spec import ExportError, ExportFilter, ExportOptions
from db.crud import list_sets
from training.config import PRESETS
from training.runs import RunError, cli_command, export_and_train

user = page_user(__file__)
eng = engine()
st.title("Export & train")
st.caption("Approved traces become an immutable export snapshot; a LoRA run (SFT or DPO) trains on it in the worker.")

sets = [s["name"] for s in list_sets(eng)]
c1, c2 = st.columns(2)
with c1:
    st.subheader("What to export")
    chosen_sets = st.multiselect("Prompt sets (none = all)", sets, key="et_sets")
    splits = st.multiselect("Prompt splits", ["train", "eval"], default=["train"], key="et_splits",
                            help="Eval-split prompts are held out; exporting them fails the contamination check.")
    behaviors = st.multiselect("Expected behaviour (none = all)", ["refuse", "comply", "partial"], key="et_beh")
    mutations = st.text_input("Mutation styles (comma list; 'none' = unmutated; empty = all)", key="et_mut")
    min_quality = st.slider("Minimum annotation quality (0 = any)", 0, 5, 0, key="et_q")
with c2:
    st.subheader("How to train")
    method = st.radio("Method", ["sft", "dpo"], horizontal=True, key="et_method",
                      help="SFT on reasoning + answer; DPO on (edited, original) and (approved, rejected) pairs.")
    base_model = st.text_input("Base model (catalog name, folder or hub id)", DEFAULT_MODEL, key="et_model")
    preset = st.selectbox("Preset", ["auto"] + list(PRESETS), key="et_preset",
                          help="auto picks from the model size in its name (135M → xs, 8B → m).")
    max_steps = st.number_input("Max steps (0 = by epochs)", min_value=0, value=0, step=10, key="et_steps")
    name = st.text_input("Export name", f"{method}-{datetime.now():%Y%m%d-%H%M%S}", key="et_name")
    with st.expander("Devices and workers"):
        processes = st.number_input("Processes (one per GPU; more than 1 runs accelerate launch, DDP)",
                                    min_value=1, max_value=256, value=1, key="et_procs")
        accel = st.text_input("Accelerate config (FSDP, DeepSpeed ZeRO): a file name in $RATIONAL_HOME/accelerate "
                              "on the worker", "", key="et_accel", placeholder="fsdp.yaml")
        label = st.text_input("Worker label (only a worker started with --label LABEL takes the run)", "",
                              key="et_label", placeholder="gpu")

try:
    flt = ExportFilter(set_names=chosen_sets, splits=splits, behaviors=behaviors,
                       mutations=[m.strip() for m in mutations.split(",") if m.strip()],
                       min_quality=min_quality or None)
    flt.validate()
    filter_error = None
except ExportError as e:
    flt, filter_error = None, str(e)


@st.cache_data(ttl=5, show_spinner=False)
def _count(kind: str, filter_json: str) -> dict:
    return count_rows(eng, kind, ExportFilter.from_dict(json.loads(filter_json)))


if filter_error:
    st.error(filter_error)
else:
    n = _count(method, json.dumps(flt.to_dict(), sort_keys=True))
    m1, m2, m3 = st.columns(3)
    m1.metric("Rows", f"{n['rows']:,}")
    m2.metric("Prompts", f"{n['prompts']:,}")
    if method == "dpo":
        src = n.get("pairs_by_source", {})
        m3.metric("Pairs: edits / approved-vs-rejected", f"{src.get('edit', 0)} / {src.get('status', 0)}")
    else:
        m3.metric("Skipped (empty answer)", n.get("skipped_empty", 0))

preset_arg = None if preset == "auto" else preset
overrides = {"max_steps": int(max_steps)} if max_steps else {}
if processes > 1:
    overrides["num_processes"] = int(processes)
if accel.strip():
    overrides["accelerate_config"] = accel.strip()
overrides = overrides or None
command = cli_command(export_name=name, base_model=base_model, method=method, preset=preset_arg, flt=flt,
                      overrides=overrides, worker_label=label.strip() or None)
st.markdown("**The same as a command**")
st.code(command, language="bash")

go, only = st.columns([1, 4])
if only.button("Export only", disabled=bool(filter_error), key="et_export_only",
               help="Build the snapshot without training (for another trainer, or to look at it first)."):
    try:
        job = enqueue_export(eng, user.id, name=name, kind=method, flt=flt, options=ExportOptions(), formats=None)
    except (ExportError, PermissionDenied, ValueError) as e:
        st.error(plain(e))
    else:
        st.session_state["et_export_job"] = job.id
if st.session_state.get("et_export_job"):
    job_panel(eng, st.session_state["et_export_job"])
if go.button("Export & train", type="primary", disabled=bool(filter_error), key="et_go"):
    try:
        run, job = export_and_train(eng, user_id=user.id, export_name=name, kind=method,
                                    filter=flt.to_dict(), base_model=base_model, preset=preset_arg,
                                    overrides=overrides, worker_label=label.strip() or None)
    except (RunError, ExportError, PermissionDenied, ValueError) as e:
        st.error(plain(e))
    else:
        st.success(f"Queued training run {run.id} (job {job.id}).")
        link_to(user.role, "runs.py", f"Follow run {run.id} on the Runs page")

st.subheader("Export snapshots")
snaps = list_exports(eng, limit=20)
if snaps:
    st.dataframe([{"id": s.id, "name": s.name, "kind": s.kind, "status": s.status, "rows": s.row_count,
                   "sha256": (s.sha256 or "")[:12], "contamination": s.contamination.get("contaminated_prompts", 0),
                   "created": s.created_at, "path": s.path or ""} for s in snaps], hide_index=True, width="stretch")
    ready = {s.id: s.name for s in snaps if s.status == "ready"}
    if ready:
        pick, dl = st.columns([3, 1], vertical_alignment="bottom")
        chosen = pick.selectbox("Download a snapshot (zip: HF dataset folder, JSONL, Parquet and the card)",
                                list(ready), format_func=ready.get, key="et_dl_pick")
        packed = st.session_state.get("et_zip")
        if packed and packed[0] == chosen:
            dl.download_button("Download zip", packed[2], file_name=packed[1], mime="application/zip", key="et_dl",
                               on_click="ignore")
        elif dl.button("Prepare zip", key="et_zip_go"):
            # Built on request only, for this user (the service checks the right to export each time).
            try:
                with st.spinner("Packing the snapshot…"):
                    st.session_state["et_zip"] = (chosen, *snapshot_archive(eng, user.id, chosen))
            except (ExportError, PermissionDenied) as e:
                st.error(plain(e))
            else:
                st.rerun()
else:
    st.info("No exports yet.")
