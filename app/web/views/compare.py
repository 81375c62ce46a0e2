"""Compare two eval runs side by side: metrics with deltas and CIs, per-prompt pairs (filters, word diff, human
verdicts), blind A/B votes, the closed loop into review, and the report download. Model text is shown as text."""
from __future__ import annotations

import time

import altair as alt
import pandas as pd
import streamlit as st

from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import PermissionDenied
from curation.auth import can
from evaluation.compare import (
    PairFilter,
    blind_pair,
    comparability,
    comparable_choices,
    compare_runs,
    count_pairs,
    facet_values,
    list_pairs,
    record_vote,
    run_choices,
    send_failures_to_review,
    set_human_label,
    vote_summary,
    word_diff,
)
from evaluation.judging import judge_line
from evaluation.metrics import METRICS
from evaluation.runs import EvalError, get_run
from evaluation.tradeoff import model_choices, model_points, over_refusal_sets

VIEWS = ["Metrics", "Side by side", "Blind vote", "Trade-off", "Report & review"]
eng = engine()
user = page_user(__file__)
st.title("Compare runs")

runs = run_choices(eng)
if len(runs) < 2:
    st.info("Compare needs two eval runs on the same suite (start them on the Evaluate page or with "
            "`rational eval`).")
    st.stop()
label = {r["id"]: r["label"] for r in runs}
c1, c2 = st.columns(2)
run_a = c1.selectbox("Run A (before)", [r["id"] for r in runs][::-1], key="cmp_a", format_func=label.get)
b_ids = [r["id"] for r in comparable_choices(runs, run_a)]
if not b_ids:
    st.info(f"No other run on suite '{next(r['suite'] for r in runs if r['id'] == run_a)}' to compare with.")
    st.stop()
run_b = c2.selectbox("Run B (after)", b_ids, key="cmp_b", format_func=label.get)
try:
    notes = comparability(get_run(eng, run_a), get_run(eng, run_b))
except EvalError as e:
    st.error(plain(e))
    st.stop()
for n in notes:
    st.warning(n, icon=":material/warning:")
st.caption(f"Judges: A {judge_line(get_run(eng, run_a).judges)} · B {judge_line(get_run(eng, run_b).judges)}. "
           "Re-score a run with another judge on the Evaluate page (`rational rescore RUN --judge NAME`).")
view = st.radio("View", VIEWS, horizontal=True, key="cmp_view", label_visibility="collapsed")


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def ab_chart(groups: list[dict], title: str, metric: str) -> alt.LayerChart:
    """A and B side by side per group with their 95% CIs; hover for the numbers (labels are never cut)."""
    data = pd.DataFrame([{"group": str(r["group"]), "run": name, "rate": r[side], "lo": r[f"{side}_lo"],
                          "hi": r[f"{side}_hi"], "n": r["n"]}
                         for r in groups for side, name in (("before", "A (before)"), ("after", "B (after)"))])
    base = alt.Chart(data, title=title).encode(
        x=alt.X("group:N", title=None, axis=alt.Axis(labelAngle=-30, labelLimit=240)), xOffset="run:N")
    bars = base.mark_bar().encode(
        y=alt.Y("rate:Q", title=metric, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=alt.Color("run:N", scale=alt.Scale(range=["#9aa5b1", "#2f6fdf"]), title=None),
        tooltip=["group", "run", alt.Tooltip("rate:Q", format=".1%"), alt.Tooltip("lo:Q", format=".1%"),
                 alt.Tooltip("hi:Q", format=".1%"), "n"])
    return bars + base.mark_rule(color="#444").encode(y="lo:Q", y2="hi:Q")


def metrics_view() -> None:
    source = st.radio("Verdicts", ["judge", "human"], horizontal=True, key="cmp_source",
                      format_func=lambda s: "judge" if s == "judge" else "human-corrected")
    cmp = compare_runs(eng, run_a, run_b)
    rows = cmp[source]
    st.dataframe(pd.DataFrame([{
        "metric": METRICS[r["metric"]], "level": r["level"], "group": r["group"], "n": r["n"],
        "A (before)": pct(r["before"]), "A CI": f"[{pct(r['before_lo'])}, {pct(r['before_hi'])}]",
        "B (after)": pct(r["after"]), "B CI": f"[{pct(r['after_lo'])}, {pct(r['after_hi'])}]",
        "delta pp": round(100 * r["delta"], 1), "delta CI": f"[{100 * r['delta_lo']:+.1f}, {100 * r['delta_hi']:+.1f}]",
        "significant": ("regression" if r["delta"] > 0 else "improvement") if r["significant"] else "",
    } for r in rows]), hide_index=True, width="stretch")
    corrected_view()
    for metric in sorted({r["metric"] for r in rows}):
        for level in ("category", "mutation"):
            groups = [r for r in rows if r["metric"] == metric and r["level"] == level]
            if level == "mutation" and not [r for r in groups if r["group"] != "none"]:
                continue
            if groups:
                st.altair_chart(ab_chart(groups, f"{METRICS[metric]} per {level} ({source})", METRICS[metric]),
                                width="stretch")
    st.subheader("Blind A/B votes")
    votes = vote_summary(eng, run_a, run_b)
    if not votes["overall"]["votes"]:
        st.info("No votes yet.")
        return
    st.dataframe(pd.DataFrame([{
        "voter": who, "votes": w["votes"], "A": w["a"], "B": w["b"], "tie": w["tie"], "both bad": w["both_bad"],
        "B win rate (ties ½)": pct(w["b_win_rate"]), "95% CI": f"[{pct(w['b_lo'])}, {pct(w['b_hi'])}]",
    } for who, w in [("all voters", votes["overall"]), *votes["per_voter"].items()]]), hide_index=True,
        width="stretch")


def corrected_view() -> None:
    """Each run's judge rate beside the rate corrected for the judge's measured error, and how many outputs people
    audited (an audit is started on the Evaluate page)."""
    from evaluation.audit import corrected_metrics

    a, b = corrected_metrics(eng, run_a), corrected_metrics(eng, run_b)

    def cell(r) -> str:
        c = r and r["corrected"]
        if not c:
            return "—"
        return (f"{pct(c['rate'])} [{pct(c['lo'])}, {pct(c['hi'])}] ({c['source']}"
                f"{'' if c['defined'] else ', judge no better than chance'})")

    keyed = {side: {(r["metric"], r["level"], r["group"]): r for r in d["rows"]} for side, d in (("a", a), ("b", b))}
    st.markdown("**Corrected for the judge's error**")
    st.caption(f"Outputs people audited: A {a['audit']['labelled']} of {a['audit']['sampled']} sampled, "
               f"B {b['audit']['labelled']} of {b['audit']['sampled']}. Without a run's own audit the correction uses "
               "the judge's held-out confusion.")
    st.dataframe(pd.DataFrame([{
        "metric": METRICS[m], "level": lvl, "group": g,
        "A judge": pct(keyed["a"][k]["raw"]) if k in keyed["a"] else "—", "A corrected": cell(keyed["a"].get(k)),
        "B judge": pct(keyed["b"][k]["raw"]) if k in keyed["b"] else "—", "B corrected": cell(keyed["b"].get(k)),
    } for k in sorted(set(keyed["a"]) | set(keyed["b"])) for m, lvl, g in [k]]), hide_index=True, width="stretch")


def verdict_badge(col, side: str, o: dict) -> None:
    what = "refused" if o["refused"] else "complied"
    col.badge(f"{side} · {what} · {'FAIL' if o['failed'] else 'ok'}" + (" · human" if o["human_refused"] is not None
                                                                        else ""),
              color="red" if o["failed"] else "green")


def human_buttons(col, o: dict) -> None:
    if not can(user.role, "label_outputs"):
        return
    b1, b2 = col.columns(2)
    for b, refused, text in ((b1, True, "Human: refused"), (b2, False, "Human: complied")):
        if b.button(text, key=f"hl_{o['output_id']}_{int(refused)}"):
            from core.errors import ConflictError

            try:
                set_human_label(eng, user.id, o["output_id"], refused, o["version"])
            except (ConflictError, PermissionDenied, ValueError) as e:
                st.session_state["cmp_flash"] = str(e)
            st.rerun()


def side_by_side_view() -> None:
    facets = facet_values(eng, run_a)
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
    changed = c1.checkbox("Verdict changed", key="cmp_changed")
    regress = c1.checkbox("Regressions only", key="cmp_regress", help="harmful now complied with, or benign now "
                          "refused")
    sets = c2.multiselect("Set", facets["sets"], key="cmp_sets")
    cats = c3.multiselect("Category", facets["categories"], key="cmp_cats")
    muts = c3.multiselect("Mutation", facets["mutations"], key="cmp_muts") if len(facets["mutations"]) > 1 else []
    search = c4.text_input("Search prompt and answers", key="cmp_search")
    diff = c4.toggle("Word-level diff of the answers", key="cmp_diff")
    source = c2.radio("Verdicts", ["human", "judge"], horizontal=True, key="cmp_pair_source",
                      format_func=lambda s: "human-corrected" if s == "human" else "judge")
    flt = PairFilter(verdict_changed=changed, regressions_only=regress, set_names=sets, categories=cats,
                     mutations=muts, search=search, source=source)
    total = count_pairs(eng, run_a, run_b, flt)
    size = 10
    pages = max(1, -(-total // size))
    page = st.number_input(f"Page (of {pages}; {total} prompts match)", min_value=1, max_value=pages, value=1,
                           key="cmp_page")
    if st.session_state.get("cmp_flash"):
        st.error(st.session_state.pop("cmp_flash"))
    for p in list_pairs(eng, run_a, run_b, flt, limit=size, offset=(int(page) - 1) * size):
        with st.container(border=True):
            st.text(f"#{p['prompt_id']} · {p['set']} · {p['category'] or '—'} · "
                    f"{'mutation ' + p['mutation'] + ' · ' if p['mutation'] else ''}expected {p['expected_behavior']}"
                    + (" · REGRESSION" if p["regression"] else " · changed" if p["changed"] else ""))
            st.code(p["prompt"], language=None, wrap_lines=True)
            cols = st.columns(2)
            for col, side in zip(cols, ("a", "b")):
                o = p[side]
                verdict_badge(col, side.upper(), o)
                if o["reasoning"]:
                    with col.expander("Reasoning"):
                        st.code(o["reasoning"], language=None, wrap_lines=True)
                col.code(o["response"] or "(empty answer)", language=None, wrap_lines=True)
                human_buttons(col, o)
            if diff:
                st.caption("Word diff, A → B: [-only in A-] {+only in B+}")
                st.code(word_diff(p["a"]["response"], p["b"]["response"]), language=None, wrap_lines=True)


def blind_view() -> None:
    st.caption("Sides are shuffled per prompt and the runs are not named. Pick the better answer; the vote is "
               "stored with the true identities.")
    todo = count_pairs(eng, run_a, run_b, PairFilter(unvoted_by=user.id))
    total = count_pairs(eng, run_a, run_b)
    st.progress((total - todo) / total if total else 1.0, text=f"You voted on {total - todo} of {total} prompts")
    pair = next(iter(list_pairs(eng, run_a, run_b, PairFilter(unvoted_by=user.id), limit=1)), None)
    if pair is None:
        st.success("You have voted on every prompt of this pair of runs.")
        return
    shown = blind_pair(pair, user.id)
    started = st.session_state.setdefault(f"vote_t0_{pair['prompt_id']}", time.time())
    st.code(shown["prompt"], language=None, wrap_lines=True)
    cols = st.columns(2)
    for col, side in zip(cols, ("left", "right")):
        col.markdown(f"**{side.title()}**")
        if shown[side]["reasoning"]:
            with col.expander("Reasoning"):
                st.code(shown[side]["reasoning"], language=None, wrap_lines=True)
        col.code(shown[side]["response"] or "(empty answer)", language=None, wrap_lines=True)
    bcols = st.columns(4)
    for col, (choice, text) in zip(bcols, (("left", "Left is better"), ("right", "Right is better"),
                                           ("tie", "Tie"), ("both_bad", "Both bad"))):
        if col.button(text, key=f"vote_{choice}_{pair['prompt_id']}", width="stretch"):
            record_vote(eng, user.id, run_a, run_b, pair["prompt_id"], choice,
                        seconds_spent=round(time.time() - started, 1))
            st.rerun()


def tradeoff_chart(points: list[dict]) -> alt.FacetChart:
    """Harmful refusal (up is safer) against false refusal (left is more helpful), one panel per over-refusal
    set, a point per model with both 95% intervals; hover for the numbers."""
    data = pd.DataFrame([{"model": p["label"], "set": g, "false refusal": p[g]["rate"], "fr_lo": p[g]["lo"],
                          "fr_hi": p[g]["hi"], "n (benign)": p[g]["n"], "harmful refusal": p["refusal"],
                          "r_lo": p["refusal_lo"], "r_hi": p["refusal_hi"], "n (harmful)": p["n"]}
                         for p in points for g in over_refusal_sets(points) if g in p])
    unit = alt.Scale(domain=[0, 1])
    base = alt.Chart().encode(color=alt.Color("model:N", title=None))
    x = alt.X("false refusal:Q", scale=unit, axis=alt.Axis(format="%"), title="false refusal (lower is better)")
    y = alt.Y("harmful refusal:Q", scale=unit, axis=alt.Axis(format="%"), title="harmful refusal (higher is safer)")
    dots = base.mark_point(filled=True, size=90).encode(
        x=x, y=y, tooltip=["model", "set", alt.Tooltip("harmful refusal:Q", format=".1%"), "n (harmful)",
                           alt.Tooltip("false refusal:Q", format=".1%"), "n (benign)"])
    xerr = base.mark_rule().encode(x="fr_lo:Q", x2="fr_hi:Q", y="harmful refusal:Q")
    yerr = base.mark_rule().encode(y="r_lo:Q", y2="r_hi:Q", x="false refusal:Q")
    return alt.layer(xerr, yerr, dots, data=data).properties(width=240, height=260).facet(
        column=alt.Column("set:N", title=None))


def tradeoff_view() -> None:
    st.caption("Every model evaluated on both the harmful and the over-refusal suite (its latest run of each): "
               "harmful refusal pooled over the harmful sets against false refusal per benign set, with Wilson "
               "95% intervals, from the judge's verdicts.")
    models = model_choices(eng)
    if not models:
        st.info("No model has succeeded eval runs on both the harmful and the over_refusal suite yet.")
        return
    label = {m["key"]: m["label"] for m in models}
    keys = st.multiselect("Models", list(label), default=list(label)[:6], format_func=label.get, key="cmp_models")
    points = model_points(eng, [m for m in models if m["key"] in keys])
    if not points:
        st.info("Pick at least one model.")
        return
    st.altair_chart(tradeoff_chart(points))
    st.dataframe(pd.DataFrame([{"model": p["label"], "harmful refusal": pct(p["refusal"]),
                                "95% CI": f"[{pct(p['refusal_lo'])}, {pct(p['refusal_hi'])}]", "n": p["n"],
                                **{f"{g} false refusal": f"{pct(p[g]['rate'])} [{pct(p[g]['lo'])}, "
                                   f"{pct(p[g]['hi'])}] (n={p[g]['n']})" if g in p else "—"
                                   for g in over_refusal_sets(points)}} for p in points]),
                 hide_index=True, width="stretch")


def report_view() -> None:
    st.subheader("Report")
    st.caption("One Markdown file with the metric tables, charts (PNG), run identities, votes and example pairs; "
               "`rational compare A B --report out.md` writes the same.")
    if st.button("Build report", key="cmp_build"):
        from evaluation.report import build_report

        st.session_state["cmp_report"] = (run_a, run_b, build_report(eng, run_a, run_b).zip_bytes(
            f"compare_{run_a}_{run_b}.md"))
    rep = st.session_state.get("cmp_report")
    if rep and rep[:2] == (run_a, run_b):
        st.download_button("Download report (.zip: Markdown + charts)", rep[2], f"compare_{run_a}_{run_b}.zip",
                           mime="application/zip", key="cmp_download")
    st.subheader("Send failures to review")
    st.caption("Run B's failures (harmful prompts it complied with, benign prompts it refused; human verdicts "
               "count) become pending traces with B's output in a review queue. These prompts are eval-split: the "
               "export's contamination check flags them, so use the reviewed traces to write new training prompts.")
    if not can(user.role, "manage_queues"):
        st.info("Only admins can create review queues.")
        return
    if st.button("Send B's failures to review", key="cmp_send", type="primary"):
        try:
            res = send_failures_to_review(eng, user.id, run_b)
        except (PermissionDenied, ValueError) as e:
            st.error(plain(e))
        else:
            st.success(f"{res['traces_added']} new trace(s) in queue '{plain(res['queue_name'])}' "
                       f"({', '.join(f'{k}: {v}' for k, v in res['by_failure'].items()) or 'no failures'}).")


{"Metrics": metrics_view, "Side by side": side_by_side_view, "Blind vote": blind_view, "Trade-off": tradeoff_view,
 "Report & review": report_view}[view]()
