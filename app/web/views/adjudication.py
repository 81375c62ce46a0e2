"""Adjudication (reviewers, admins): one disputed trace at a time, keyboard first, like Prodigy's review recipe.
The annotators' verdicts sit side by side, each under its annotator's name; the final text is the model's original,
one annotator's edit, or the reviewer's own edit. a approve · r reject · 0 model's text · 1-9 an annotator's edit ·
e own edit · n next · ? help."""
from __future__ import annotations

import streamlit as st

from app.web.components.buttons import compact_top, decision_colours
from app.web.components.keys import keyboard_shortcuts
from app.web.components.trace_text import facts_line, text_box
from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import ConflictError, PermissionDenied
from curation.review import annotations, reading

ORIGINAL, OWN = "original", "own"
KEYS = {"a": "adj_approve", "r": "adj_reject", "n": "adj_next", "e": "adj_pick_own", "0": "adj_pick_original",
        "?": "adj_help", **{str(i): f"adj_pick_{i}" for i in range(1, 10)}}
EDIT_KEYS = {"ctrl+enter": "adj_approve", "escape": "adj_pick_original"}

user = page_user(__file__)
eng = engine()
ss = st.session_state


def _load(after_id: int) -> None:
    ss.adj_waiting, items = reading.adjudication_items(eng, user.id, limit=1, after_id=after_id)
    ss.adj_item = items[0] if items else None
    ss.adj_final = ORIGINAL
    ss.adj_comment = ""


def on_next() -> None:
    _load(ss.adj_item["trace_id"] if ss.get("adj_item") else 0)


def on_pick(choice) -> None:
    item = ss.adj_item
    if choice == OWN:
        base = _text_of(item, ss.adj_final)
        ss.adj_own_reasoning, ss.adj_own_response = base
    ss.adj_final = choice


def on_settle(status: str) -> None:
    item = ss.adj_item
    final = ss.adj_final
    kwargs = {}
    if final == OWN and status == "approved":  # a rejected trace has no final text, whoever wrote it
        kwargs = {"edited_reasoning": ss.get("adj_own_reasoning"), "edited_response": ss.get("adj_own_response")}
    elif final != ORIGINAL and status == "approved":
        kwargs = {"final_annotation_id": final}
    try:
        annotations.adjudicate(eng, user.id, item["trace_id"], status, item["trace_version"],
                               comment=(ss.get("adj_comment") or "").strip(), **kwargs)
    except (ConflictError, PermissionDenied, ValueError) as e:
        ss.adj_flash = ("error", str(e))
        return
    ss.adj_flash = ("ok", f"trace {item['trace_id']} {status}")
    _load(item["trace_id"])


def on_help() -> None:
    ss.adj_show_help = not ss.get("adj_show_help", False)


def _edits(item) -> list[dict]:
    """The annotations whose text differs from the model's, numbered 1, 2, … in the order shown."""
    return [a for a in item["annotations"] if a["edited_reasoning"] or a["edited_response"]]


def _text_of(item, choice) -> tuple[str, str]:
    if choice in (ORIGINAL, OWN):
        if choice == OWN and "adj_own_response" in ss:
            return ss.adj_own_reasoning, ss.adj_own_response
        return item["reasoning"], item["response"]
    a = next(x for x in item["annotations"] if x["id"] == choice)
    return a["edited_reasoning"] or item["reasoning"], a["edited_response"] or item["response"]


# -- page ------------------------------------------------------------------------------------------------------
decision_colours(("adj_approve",), ("adj_reject",))
compact_top()
if "adj_item" not in ss:
    _load(0)
item = ss.adj_item
st.subheader("Adjudication", anchor=False)
flash = ss.pop("adj_flash", None)
if flash and flash[0] == "ok":
    st.toast(flash[1], icon=":material/gavel:")
elif flash:
    st.error(plain(flash[1]))
if item is None:
    st.success("Nothing waits for adjudication.")
    st.button("Check again", key="adj_reload", on_click=_load, args=(0,))
    st.stop()

edits = _edits(item)
st.markdown(f"**{ss.adj_waiting:,} disputed trace{'s' if ss.adj_waiting != 1 else ''}** waiting · `a` approve · "
            "`r` reject · `0` model's text · `1`–`9` an annotator's edit · `e` your own edit · `n` next · `?` help")
if ss.get("adj_show_help"):
    with st.container(border=True, key="adj_help_panel"):
        st.table([{"key": k, "does": v} for k, v in (
            ("a", "approve with the chosen final text (Ctrl+Enter while editing your own)"),
            ("r", "reject the trace (no final text)"),
            ("0", "final text: the model's original"),
            ("1–9", "final text: that annotator's edit (numbered in their column)"),
            ("e", "final text: your own edit, starting from the text chosen now"),
            ("n", "leave this trace for later and show the next one"),
            ("?", "show or hide this help"))])

st.subheader(f"Trace {item['trace_id']}", anchor=False)
facts_line(item, "set", "expected_behavior", "mutation", "category")
st.markdown("**Prompt**")
text_box(item["prompt"], 70, key="adj_prompt_box")

cols = st.columns(1 + len(item["annotations"]))
with cols[0]:
    st.markdown("**Model's original** · `0`")
    st.caption("reasoning")
    text_box(item["reasoning"] or "(none)", 140, key="adj_model_reasoning")
    st.caption("response")
    text_box(item["response"] or "(empty)", 100, key="adj_model_response")
for col, a in zip(cols[1:], item["annotations"]):
    number = next((i for i, e in enumerate(edits, 1) if e["id"] == a["id"]), None)
    with col:
        st.markdown(f"**{plain(a['annotator'])}** · {a['decision']}" + (f" · `{number}`" if number else ""))
        st.caption(f"label {a['behavior_label'] or '—'} · quality {a['quality'] or '—'}"
                   + (f" · {plain(a['comment'])}" if a["comment"] else ""))
        if number:
            for part, height in (("reasoning", 140), ("response", 100)):
                st.caption(f"{part} (edited)" if a[f"edited_{part}"] else f"{part} (as the model's)")
                text_box(a[f"edited_{part}"] or item[part] or "", height, key=f"adj_{a['id']}_{part}")
        else:
            st.caption("no edit: the model's text")

choices = [ORIGINAL, *[e["id"] for e in edits], OWN]
names = {ORIGINAL: "the model's original (0)", OWN: "my own edit (e)",
         **{e["id"]: f"{plain(e['annotator'])}'s edit ({i})" for i, e in enumerate(edits, 1)}}
left, right = st.columns([3, 1])
with left:
    st.markdown(f"**Final text:** {names[ss.adj_final]}")
    if ss.adj_final == OWN:
        st.text_area("Reasoning (your edit)", key="adj_own_reasoning", height=120)
        st.text_area("Response (your edit)", key="adj_own_response", height=100)
    st.text_input("Comment (optional, kept in the audit log)", key="adj_comment")
with right:
    st.button("Approve (a)", key="adj_approve", on_click=on_settle, args=("approved",), width="stretch")
    st.button("Reject (r)", key="adj_reject", on_click=on_settle, args=("rejected",), width="stretch")
    st.button("Next (n)", key="adj_next", on_click=on_next, width="stretch")
    st.button("Help (?)", key="adj_help", on_click=on_help, width="stretch")
# The choice buttons exist for the keys (and for the mouse); one row, in the order of the numbers.
pick = st.columns(len(choices))
for col, c in zip(pick, choices):
    key = "adj_pick_original" if c == ORIGINAL else "adj_pick_own" if c == OWN else \
        f"adj_pick_{next(i for i, e in enumerate(edits, 1) if e['id'] == c)}"
    col.button(names[c], key=key, on_click=on_pick, args=(c,), width="stretch",
               type="primary" if ss.adj_final == c else "secondary")

keyboard_shortcuts({**KEYS, **EDIT_KEYS} if ss.adj_final == OWN else KEYS,
                   focus="adj_own_response" if ss.adj_final == OWN else None, scroll_top=str(item["trace_id"]))
