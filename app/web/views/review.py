"""Review: one trace at a time, keyboard first. a approve · r reject (with a reason) · e edit · 1-5 quality ·
d decision label · s skip · u undo · ? help. The trace always fits the screen: prompt, reasoning and response sit in
bounded, scrollable boxes beside the actions. Model text is shown as text, never as HTML or Markdown."""
from __future__ import annotations

import json
import time

import streamlit as st

from app.web.components.buttons import compact_top, decision_colours
from app.web.components.keys import keyboard_shortcuts
from app.web.components.trace_text import facts_line, text_box
from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import ConflictError, PermissionDenied
from core.vocabulary import BEHAVIORS, LabelKind
from curation.auth import can
from curation.generation import demos
from curation.review import annotations, claims, queues, reading

KEYS = {"a": "rv_approve", "r": "rv_reject", "e": "rv_edit", "s": "rv_skip", "u": "rv_undo", "d": "rv_cycle",
        "?": "rv_help", **{str(i): f"rv_q{i}" for i in range(1, 6)}}
# Ctrl+Enter inside the edit and reject boxes is the form's own submit key; here it serves focus outside them.
EDIT_KEYS = {"ctrl+enter": "rv_save", "escape": "rv_cancel"}
REJECT_KEYS = {"ctrl+enter": "rv_reject_confirm", "escape": "rv_cancel"}
HELP = [("a", "approve: the trace is good training data as it is"),
        ("r", "reject: choose a reason, add a comment if you like, Ctrl+Enter confirms"),
        ("e", "edit the reasoning or the response; Ctrl+Enter saves (counts as approved with your text), Esc "
              "cancels"),
        ("1–5", "quality of the trace (optional)"),
        ("d", "cycle the decision label: what the response does (refuse, comply, partial)"),
        ("s", "skip: the trace comes back at the end of your queue"),
        ("u", "undo your last action, whatever it was (a decision, an edit or a skip)"),
        ("?", "show or hide this help")]
REJECT_REASONS = ("harmful or unsafe response", "wrong decision for this prompt", "reasoning unsound or missing",
                  "low quality (repetitive, off-topic, cut off)", "other")
LEGEND = ("`a` approve · `r` reject · `e` edit · `1`–`5` quality · `d` decision label · `s` skip · `u` undo · "
          "`?` help")

user = page_user(__file__)
eng = engine()
ss = st.session_state
curates = can(user.role, "curate_demos")
if curates:
    KEYS["p"] = "rv_promote"
    HELP.append(("p", "make the last trace you approved or edited a worked example (demo) for generation"))


def _fetch(keep: tuple[int, ...] = ()):
    return claims.next_item(eng, user.id, ss.rv_queue_id, keep=keep)


def _suggestion(item) -> tuple[str | None, str | None]:
    """The deciding judge's behaviour label and the judge's name: where the decision label starts (never the
    prompt's expected behaviour, which would lead the annotator)."""
    for a in (item or {}).get("auto_labels", ()):
        if a["kind"] == LabelKind.DECISION and a["label"] in BEHAVIORS:
            return a["label"], a["agent"]
    return None, None


def _fresh_labels(item) -> None:
    ss.rv_label, ss.rv_label_from = _suggestion(item)
    ss.rv_quality = None
    ss.rv_mode = None  # None | "edit" | "reject"
    ss.rv_shown_at = time.monotonic()


def _advance() -> None:
    ss.rv_cur = ss.get("rv_next") or _fetch(keep=())
    ss.rv_next = None
    _fresh_labels(ss.rv_cur)


def _submit(decision: str, **fields) -> None:
    cur = ss.rv_cur
    ss.rv_conflict = None
    try:
        res = annotations.submit_annotation(eng, user.id, cur["trace_id"], decision=decision,
                                            trace_version=cur["trace_version"], queue_id=ss.rv_queue_id,
                                            behavior_label=ss.rv_label, quality=ss.rv_quality,
                                            seconds_spent=round(time.monotonic() - ss.rv_shown_at, 2), **fields)
    except ConflictError as e:
        ss.rv_conflict = {"message": str(e), "other": e.other_change, "mine": {"decision": decision, **fields}}
        ss.rv_mode = None  # back to the action row, where `s` moves on
        return
    except (ValueError, PermissionDenied) as e:
        ss.rv_flash = ("error", str(e))
        return
    ss.rv_last, ss.rv_last_skip = res.annotation_id, None
    ss.rv_last_trace = cur["trace_id"] if decision in ("approve", "needs_edit") else None
    ss.rv_flash = ("ok", f"trace {cur['trace_id']}: {decision} → {res.trace_status}")
    edits = [(k, fields.get(f"edited_{k}")) for k in ("reasoning", "response")]
    diff = "\n".join(reading.text_diff(cur[k], v) for k, v in edits if v)
    ss.rv_diff = (cur["trace_id"], diff) if diff else None
    _advance()


def on_approve():
    _submit("approve")


def on_reject():
    ss.rv_mode = "reject"
    ss.pop("rv_reason", None)  # no reason chosen for the reviewer: a quick Ctrl+Enter must not record one
    ss.pop("rv_reject_error", None)
    ss.rv_reject_comment = ""


def on_reject_confirm():
    reason, note = ss.get("rv_reason"), (ss.get("rv_reject_comment") or "").strip()
    if reason not in REJECT_REASONS:
        ss.rv_reject_error = "Choose why you reject it first (Esc cancels)."
        return
    ss.pop("rv_reject_error", None)
    _submit("reject", comment=f"{reason}: {note}" if note else reason,
            reasoning_sound=False if reason == REJECT_REASONS[2] else None)


def on_edit():
    cur = ss.rv_cur
    ss.rv_mode = "edit"
    ss.rv_edit_reasoning = cur["reasoning"]
    ss.rv_edit_response = cur["response"]


def on_save():
    _submit("needs_edit", edited_reasoning=ss.get("rv_edit_reasoning"), edited_response=ss.get("rv_edit_response"))


def on_cancel():
    ss.rv_mode = None


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
    ss.rv_last = ss.rv_last_skip = ss.rv_diff = None
    _fresh_labels(ss.rv_cur)
    ss.rv_flash = ("ok", f"undone: trace {tid} is back")


def on_cycle():
    i = BEHAVIORS.index(ss.rv_label) if ss.rv_label in BEHAVIORS else -1
    ss.rv_label, ss.rv_label_from = BEHAVIORS[(i + 1) % len(BEHAVIORS)], None


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


@st.cache_data(ttl=15, show_spinner=False)
def _queue_size_for(user_id: int, queue_id: int) -> int:
    """Traces this member decided plus those still open for them: the n of "x of n". Its count grows with the
    queue, so it is refreshed every 15 s (and on a new queue), not on every keypress."""
    mine = queues.my_progress(eng, user_id, queue_id)
    return mine["done"] + mine["open"]


def place_line(cur) -> str:
    mine = queues.my_progress(eng, user.id, ss.rv_queue_id, count_open=False)
    if cur is None:
        return f"{mine['done']:,} decided by you · nothing left"
    n = max(_queue_size_for(user.id, ss.rv_queue_id), mine["done"] + 1)
    line = f"**{mine['done'] + 1:,} of {n:,}** · {n - mine['done'] - 1:,} left after this one"
    return line + (f" · {mine['skipped']} skipped (they come back last)" if mine["skipped"] else "")


def label_line() -> str:
    if ss.rv_label is None:
        return "decision label: — (not set; d sets it)"
    source = f"suggested by {ss.rv_label_from}" if ss.rv_label_from else "yours"
    return f"decision label: {ss.rv_label} ({source}; d changes it)"


# -- page ------------------------------------------------------------------------------------------------------
decision_colours(("rv_approve", "rv_save"), ("rv_reject", "rv_reject_confirm"))
compact_top()
names = queues.my_queue_names(eng, user.id)
head_title, head_queue, head_place = st.columns([1, 2, 3], vertical_alignment="bottom")
head_title.subheader("Review", anchor=False)
if not names:
    st.info("You are not a member of any queue yet. An admin adds you on the Queues page.")
    st.stop()
qid = head_queue.selectbox("Queue", list(names), format_func=names.get, key="rv_pick")
if ss.get("rv_queue_id") != qid:
    ss.rv_queue_id, ss.rv_cur, ss.rv_next, ss.rv_last, ss.rv_conflict, ss.rv_diff = qid, None, None, None, None, None
    ss.rv_last_skip = None
    ss.rv_cur = _fetch()
    _fresh_labels(ss.rv_cur)
    _queue_size_for.clear()
cur = ss.get("rv_cur")
head_place.markdown(place_line(cur))

flash = ss.pop("rv_flash", None)
if flash and flash[0] == "ok":
    st.toast(flash[1], icon=":material/check:")  # feedback that does not push the next trace down
elif flash:
    st.error(plain(flash[1]))
if ss.get("rv_show_help"):
    with st.container(border=True, key="rv_help_panel"):
        st.markdown("**Keys** (they work anywhere on the page except while you type in a text box)")
        st.table([{"key": k, "does": v} for k, v in HELP])
        st.caption("The decision label starts from the deciding judge's suggestion where there is one (it says so), "
                   "never from the prompt's expected behaviour. Skipped traces come back at the end of your queue.")

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

mode = ss.get("rv_mode")
left, right = st.columns([3, 1])
with left:
    st.subheader(f"Trace {cur['trace_id']}", anchor=False)
    facts_line(cur, "set", "expected_behavior", "mutation", "category")
    hidden = cur["blur"]
    box = (st.expander(f"Content warning: {plain(cur['category'])} — click to show", expanded=False) if hidden
           else st.container())
    with box:
        prompt = cur["prompt"] + (f"\n\n(before mutation) {cur['parent_prompt']}" if cur["parent_prompt"] else "")
        text_box(prompt, 90, title="Prompt", key="rv_prompt_box")
        if mode == "edit":
            # A form: Ctrl+Enter in a text box submits both edits and the save in one rerun (Streamlit's own key).
            with st.form("rv_edit_form", border=False):
                st.text_area("Reasoning (edit)", key="rv_edit_reasoning", height=240)
                st.text_area("Response (edit)", key="rv_edit_response", height=160)
                st.form_submit_button("Save edit (Ctrl+Enter)", key="rv_save", on_click=on_save)
        else:
            text_box(cur["reasoning"] or "(none)", 240, title="Reasoning", key="rv_reasoning_box")
            text_box(cur["response"] or "(empty)", 160, title="Response", key="rv_response_box")
with right:
    if mode == "edit":
        st.button("Cancel (Esc)", key="rv_cancel", on_click=on_cancel, width="stretch")
    elif mode == "reject":
        with st.form("rv_reject_form", border=False):
            st.radio("Why reject?", REJECT_REASONS, key="rv_reason", index=None)
            if ss.get("rv_reject_error"):
                st.error(ss.rv_reject_error)
            st.text_area("Comment (optional)", key="rv_reject_comment", height=80)
            st.form_submit_button("Reject (Ctrl+Enter)", key="rv_reject_confirm", on_click=on_reject_confirm,
                                  width="stretch")
        st.button("Cancel (Esc)", key="rv_cancel", on_click=on_cancel, width="stretch")
    else:
        a1, a2 = st.columns(2)
        a1.button("Approve (a)", key="rv_approve", on_click=on_approve, width="stretch")
        a2.button("Reject (r)", key="rv_reject", on_click=on_reject, width="stretch")
        a1.button("Edit (e)", key="rv_edit", on_click=on_edit, width="stretch")
        a2.button("Skip (s)", key="rv_skip", on_click=on_skip, width="stretch")
        a1.button("Undo (u)", key="rv_undo", on_click=on_undo, width="stretch")
        a2.button("Help (?)", key="rv_help", on_click=on_help, width="stretch")
        if curates:
            st.button("Make it a demo (p)", key="rv_promote", on_click=on_promote, width="stretch",
                      help="Make the last trace you approved or edited a worked example for generation")
    st.text(label_line())
    st.button("Change label (d)", key="rv_cycle", on_click=on_cycle, width="stretch")
    st.text(f"quality: {ss.rv_quality or '—'}   (1–5)")
    qcols = st.columns(5)
    for i in range(1, 6):
        qcols[i - 1].button(str(i), key=f"rv_q{i}", on_click=on_quality, args=(i,), width="stretch")
    with st.expander("Auto-label suggestions"):
        if cur["auto_labels"]:
            st.dataframe([{k: a[k] for k in ("kind", "agent", "label", "score")} for a in cur["auto_labels"]],
                         hide_index=True)
        else:
            st.text("none")
    st.caption(LEGEND)

if ss.get("rv_diff"):
    tid, diff = ss.rv_diff
    changed = sum(1 for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---"))
    with st.expander(f"Your last edit (trace {tid}): {changed} lines changed against the model's original"):
        st.code(diff, language="diff")

keys = {"edit": {**KEYS, **EDIT_KEYS}, "reject": {**KEYS, **REJECT_KEYS}}.get(mode, KEYS)
keyboard_shortcuts(keys, focus={"edit": "rv_edit_response", "reject": "rv_reject_comment"}.get(mode),
                   scroll_top=str(cur["trace_id"]))

# Preload the next trace after this one is drawn, so "submit -> next shown" needs no claim round trip.
if ss.get("rv_next") is None:
    ss.rv_next = _fetch(keep=(cur["trace_id"],))
