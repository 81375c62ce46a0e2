"""Review: one trace at a time, keyboard first. a approve · r reject · e edit · 1-5 quality · d decision label ·
s skip · u undo · ? help. Model text is shown as text, never as HTML or Markdown."""
from __future__ import annotations

import json
import time

import streamlit as st

from app.web.components.keys import keyboard_shortcuts
from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import ConflictError, PermissionDenied
from core.vocabulary import BEHAVIORS
from curation.auth import can
from curation.generation import demos
from curation.review import annotations, claims, queues, reading

KEYS = {"a": "rv_approve", "r": "rv_reject", "e": "rv_edit", "s": "rv_skip", "u": "rv_undo", "d": "rv_cycle",
        "?": "rv_help", **{str(i): f"rv_q{i}" for i in range(1, 6)}}
EDIT_KEYS = {"ctrl+enter": "rv_save", "escape": "rv_cancel"}
LEGEND = ("`a` approve · `r` reject · `e` edit (Ctrl+Enter saves, Esc cancels) · `1`–`5` quality · "
          "`d` cycle decision label · `s` skip · `u` undo last · `?` help")

user = page_user(__file__)
eng = engine()
ss = st.session_state
curates = can(user.role, "curate_demos")
if curates:
    KEYS["p"] = "rv_promote"
    LEGEND += " · `p` make the last approved or edited trace a demo"


def _fetch(keep: tuple[int, ...] = ()):
    return claims.next_item(eng, user.id, ss.rv_queue_id, keep=keep)


def _fresh_labels(item) -> None:
    ss.rv_label = item["expected_behavior"] if item else None
    ss.rv_quality = None
    ss.rv_editing = False
    ss.rv_reveal = False
    ss.rv_shown_at = time.monotonic()


def _advance() -> None:
    ss.rv_cur = ss.get("rv_next") or _fetch(keep=())
    ss.rv_next = None
    _fresh_labels(ss.rv_cur)


def _submit(decision: str, **edits) -> None:
    cur = ss.rv_cur
    ss.rv_conflict = None
    try:
        res = annotations.submit_annotation(eng, user.id, cur["trace_id"], decision=decision,
                                   trace_version=cur["trace_version"], queue_id=ss.rv_queue_id,
                                   behavior_label=ss.rv_label, quality=ss.rv_quality,
                                   seconds_spent=round(time.monotonic() - ss.rv_shown_at, 2), **edits)
    except ConflictError as e:
        ss.rv_conflict = {"message": str(e), "other": e.other_change, "mine": {"decision": decision, **edits}}
        return
    except (ValueError, PermissionDenied) as e:
        ss.rv_flash = ("error", str(e))
        return
    ss.rv_last, ss.rv_last_skip = res.annotation_id, None
    ss.rv_last_trace = cur["trace_id"] if decision in ("approve", "needs_edit") else None
    ss.rv_flash = ("ok", f"trace {cur['trace_id']}: {decision} → {res.trace_status}")
    if edits:
        parts = [reading.text_diff(cur[k], v) for k, v in (("reasoning", edits.get("edited_reasoning")),
                                                        ("response", edits.get("edited_response"))) if v]
        ss.rv_diff = "\n".join(parts)
    else:
        ss.rv_diff = None
    _advance()


def on_approve():
    _submit("approve")


def on_reject():
    _submit("reject")


def on_edit():
    cur = ss.rv_cur
    ss.rv_editing = True
    ss.rv_edit_reasoning = cur["reasoning"]
    ss.rv_edit_response = cur["response"]


def on_save():
    _submit("needs_edit", edited_reasoning=ss.get("rv_edit_reasoning"), edited_response=ss.get("rv_edit_response"))


def on_cancel():
    ss.rv_editing = False


def on_skip():
    cur = ss.rv_cur
    ss.rv_conflict = None
    try:
        claims.skip(eng, user.id, cur["trace_id"])
        ss.rv_last, ss.rv_last_skip = None, cur["trace_id"]  # `u` now undoes the skip
    except ValueError:
        pass  # no claim left (decided meanwhile): just move on
    ss.rv_flash = ("ok", f"skipped trace {cur['trace_id']}: it comes back at the end of your queue")
    _advance()


def on_undo():
    """Undo the last action, a submission or a skip."""
    if not ss.get("rv_last") and not ss.get("rv_last_skip"):
        ss.rv_flash = ("error", "nothing to undo")
        return
    try:
        if ss.get("rv_last_skip"):
            tid = ss.rv_last_skip
            claims.unskip(eng, user.id, tid)
        else:
            tid = annotations.undo_annotation(eng, user.id, ss.rv_last)
    except (ConflictError, PermissionDenied, ValueError) as e:
        ss.rv_flash = ("error", f"undo not possible: {e}")
        return
    if ss.get("rv_next"):
        claims.release(eng, user.id, ss.rv_next["trace_id"])
    ss.rv_next = ss.rv_cur
    ss.rv_cur = reading.load_item(eng, user.id, tid)
    ss.rv_last = ss.rv_last_skip = None
    _fresh_labels(ss.rv_cur)
    ss.rv_flash = ("ok", f"undone: trace {tid} is back")


def on_cycle():
    i = BEHAVIORS.index(ss.rv_label) if ss.rv_label in BEHAVIORS else -1
    ss.rv_label = BEHAVIORS[(i + 1) % len(BEHAVIORS)]


def on_quality(n: int):
    ss.rv_quality = n


def on_promote():
    tid = ss.get("rv_last_trace")
    if not tid:
        ss.rv_flash = ("error", "approve or edit a trace first: `p` makes the last one a demo")
        return
    try:
        d = demos.promote(eng, user.id, tid)
    except (ValueError, PermissionDenied) as e:
        ss.rv_flash = ("error", f"not a demo: {e}")
        return
    ss.rv_flash = ("ok", f"trace {tid} is now demo {d['id']} ({d['behavior']}): the next generation runs show it")


def on_help():
    ss.rv_show_help = not ss.get("rv_show_help", False)


# -- page ------------------------------------------------------------------------------------------------------
st.title("Review")
names = queues.my_queue_names(eng, user.id)
if not names:
    st.info("You are not a member of any queue yet. An admin adds you on the Queues page.")
    st.stop()
qid = st.selectbox("Queue", list(names), format_func=names.get, key="rv_pick")
if ss.get("rv_queue_id") != qid:
    ss.rv_queue_id, ss.rv_cur, ss.rv_next, ss.rv_last, ss.rv_conflict, ss.rv_diff = qid, None, None, None, None, None
    ss.rv_last_skip = None
    ss.rv_cur = _fetch()
    _fresh_labels(ss.rv_cur)
st.caption(LEGEND)

flash = ss.pop("rv_flash", None)
if flash:
    (st.success if flash[0] == "ok" else st.error)(flash[1])
if ss.get("rv_diff"):
    with st.expander("Your last edit, as a diff against the model's original", expanded=True):
        st.code(ss.rv_diff, language="diff")
if ss.get("rv_show_help"):
    st.info("Keys work anywhere on the page except while typing in a text box. " + LEGEND)

cur = ss.get("rv_cur")
conflict = ss.get("rv_conflict")
if conflict:
    st.error(f"Not saved: {plain(conflict['message'])}")
    other = conflict.get("other")
    if other:
        st.write(f"The other change: **{other['action']}** by **{plain(other['actor'] or 'system')}** at {other['at']}")
        st.json({"before": other["before"], "after": other["after"]})
    st.write("Your unsaved input (copy it if you need it); press `s` to move on:")
    st.code(json.dumps(conflict["mine"], indent=2, ensure_ascii=False), language="json")

if cur is None:
    st.success("Nothing left for you in this queue. Thank you!")
    st.stop()

c1, c2 = st.columns([3, 1])
with c1:
    st.subheader(f"Trace {cur['trace_id']}")
    meta = [f"set: {cur['set']}", f"expected: {cur['expected_behavior']}",
            f"mutation: {cur['mutation'] or 'none'}", f"category: {cur['category'] or '—'}"]
    st.text(" · ".join(meta))
    hidden = cur["blur"] and not ss.get("rv_reveal")
    box = st.expander(f"Content warning: {plain(cur['category'])} — click to show", expanded=False) if hidden else st.container()
    with box:
        st.markdown("**Prompt**")
        st.text(cur["prompt"])
        if cur["parent_prompt"]:
            st.markdown("**Parent prompt** (before mutation)")
            st.text(cur["parent_prompt"])
        if ss.get("rv_editing"):
            st.text_area("Reasoning (edit)", key="rv_edit_reasoning", height=200)
            st.text_area("Response (edit)", key="rv_edit_response", height=200)
            b1, b2 = st.columns(2)
            b1.button("Save edit (Ctrl+Enter)", key="rv_save", on_click=on_save, type="primary")
            b2.button("Cancel (Esc)", key="rv_cancel", on_click=on_cancel)
        else:
            st.markdown("**Reasoning**")
            st.text(cur["reasoning"] or "(none)")
            st.markdown("**Response**")
            st.text(cur["response"] or "(empty)")
with c2:
    st.markdown("**Your labels**")
    st.text(f"decision label: {ss.rv_label}   (d)")
    st.text(f"quality: {ss.rv_quality or '—'}   (1–5)")
    st.markdown("**Auto-label suggestions**")
    if cur["auto_labels"]:
        st.dataframe([{k: a[k] for k in ("kind", "agent", "label", "score")} for a in cur["auto_labels"]],
                     hide_index=True)
    else:
        st.text("none")

cols = st.columns(8)
cols[0].button("Approve (a)", key="rv_approve", on_click=on_approve, type="primary")
cols[1].button("Reject (r)", key="rv_reject", on_click=on_reject)
cols[2].button("Edit (e)", key="rv_edit", on_click=on_edit)
cols[3].button("Skip (s)", key="rv_skip", on_click=on_skip)
cols[4].button("Undo (u)", key="rv_undo", on_click=on_undo)
cols[5].button("Label (d)", key="rv_cycle", on_click=on_cycle)
cols[6].button("Help (?)", key="rv_help", on_click=on_help)
if curates:
    cols[7].button("Demo (p)", key="rv_promote", on_click=on_promote,
                   help="Make the last trace you approved or edited a worked example for generation")
qcols = st.columns(10)
for i in range(1, 6):
    qcols[i - 1].button(str(i), key=f"rv_q{i}", on_click=on_quality, args=(i,))

editing = ss.get("rv_editing")
keyboard_shortcuts({**KEYS, **EDIT_KEYS} if editing else KEYS, focus="rv_edit_response" if editing else None)

# Preload the next trace after this one is drawn, so "submit -> next shown" needs no claim round trip.
if ss.get("rv_next") is None:
    ss.rv_next = _fetch(keep=(cur["trace_id"],))
