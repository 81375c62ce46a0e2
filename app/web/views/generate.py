"""Generate: start self-check trace generation, mutations and auto-labelling as worker jobs; watch a run live
(samples as they finish, tokens/s, ETA, yield per behaviour, the newest traces, why samples were rejected)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.web.job_panel import job_panel, run_panel
from app.web.login import page_user
from app.web.navigation import link_to
from app.web.plain import plain
from app.web.state import engine
from core.errors import PermissionDenied
from core.vocabulary import BEHAVIORS, DEFAULT_MODEL
from curation.auth import can
from curation.generation.config import BACKEND_CHOICES, GenerationConfig, Selection
from curation.generation.demos import ensure_shipped, list_demos, set_active
from curation.generation.jobs import enqueue_generation
from curation.generation.runs import create_run, pending_work
from curation.generation.strategies import STRATEGIES
from curation.generation.yields import default_strategy, run_summaries
from curation.judges.jobs import enqueue_label
from curation.judges.registry import DEFAULT_JUDGE, JUDGE_NAMES
from curation.prompts.jobs import enqueue_mutation
from curation.prompts.mutations import JBB_METHODS, STYLES, MutationConfig
from curation.prompts.twins import TWIN_KINDS
from db.crud import list_sets

eng = engine()
user = page_user(__file__)
st.title("Generate")
st.caption("The model answers each prompt under a self-check system prompt: reasoning first, then the answer. "
           "Jobs run in the worker (`rational worker`); this page only starts and watches them.")
prompt_sets = [s for s in list_sets(eng) if s["kind"] == "prompts"]
sets = [s["name"] for s in prompt_sets]
newest = max(prompt_sets, key=lambda s: s["id"])["name"] if prompt_sets else None  # the one just imported
if not sets:
    st.info("No prompt sets yet: import one on the Import page (or `rational sets import xstest`).")
    st.stop()

tab_gen, tab_demos, tab_mut, tab_label = st.tabs(["Traces", "Demo library", "Mutations", "Auto-labels"])

with tab_gen:
    c1, c2, c3 = st.columns(3)
    model = c1.text_input("Model (name, HF id or folder)", value=DEFAULT_MODEL, key="gen_model").strip() \
        or DEFAULT_MODEL
    backend = c2.selectbox("Backend", list(BACKEND_CHOICES), key="gen_backend",
                           help="auto: the local engine measured fastest on this machine's CPU for the run's size "
                                "(measured once per CPU and model; the run shows which and why)")
    base_url = c3.text_input("Server URL (openai backend)", value="", key="gen_url")
    best, why = default_strategy(eng, model)
    names = list(STRATEGIES)
    with st.form("gen_new"):
        c1, c2, c3 = st.columns(3)
        set_name = c1.selectbox("Prompt set", sets, index=sets.index(newest), key="gen_set",
                                help="starts on the set imported last")
        split = c2.selectbox("Split", ["any", "train", "eval"], key="gen_split")
        behaviors = c3.multiselect("Expected behaviour", list(BEHAVIORS), key="gen_beh")
        c1, c2, c3, c4 = st.columns(4)
        strategy = c1.selectbox("Strategy", names, index=names.index(best), key="gen_strategy",
                                format_func=lambda n: f"{n} (default)" if n == best else n,
                                help=" · ".join(f"{s.name}: {s.description}" for s in STRATEGIES.values()))
        samples = c2.number_input("Samples per prompt (K)", 1, 64, 1, key="gen_k")
        temperature = c3.number_input("Temperature", 0.0, 2.0, 0.7, key="gen_temp")
        top_p = c4.number_input("Top-p", 0.05, 1.0, 0.95, key="gen_top_p")
        c1, c2, c3, c4 = st.columns(4)
        max_tokens = c1.number_input("Max new tokens", 8, 8192, 192, key="gen_max")
        rep = c2.number_input("Repetition penalty", 0.5, 3.0, 1.0, key="gen_rep",
                              help="> 1 stops the loops small models fall into; 1.0 = off")
        stop = c3.text_input("Stop strings (comma list, \\n allowed)", value="", key="gen_stop",
                             help="scaffold and few_shot stop on their own; a one-pass strategy on a small model "
                                  "may want \\n\\n (one paragraph per pass)")
        limit = c1.number_input("Prompts (0 = all)", 0, 1_000_000, 20, key="gen_limit")
        student = c4.text_input("Traces are for model (if a teacher writes them)", key="gen_student")
        st.caption(f"Default strategy **{best}**: {why}.")
        if st.form_submit_button("Start generation", type="primary"):
            cfg = GenerationConfig(model=model, backend=backend, strategy=strategy, samples=int(samples),
                                   temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_tokens),
                                   repetition_penalty=float(rep),
                                   stop=[x.encode().decode("unicode_escape") for x in stop.split(",") if x],
                                   student_model=student.strip() or None,
                                   backend_options={"base_url": base_url.strip()} if base_url.strip() else {})
            sel = Selection(set_names=[set_name], split=None if split == "any" else split, behaviors=behaviors,
                            limit=int(limit) or None)
            try:
                run = create_run(eng, cfg, sel, created_by=user.id)
                if pending_work(eng, run)[2] == 0:
                    raise ValueError("no prompts match this selection")
                st.session_state["gen_job"] = enqueue_generation(eng, user.id, run.id).id
                st.session_state["gen_pick"] = run.id  # show the new run
            except (ValueError, PermissionDenied) as e:
                st.error(plain(e))
    runs = run_summaries(eng)
    if runs:
        ids = [r["id"] for r in runs]
        if st.session_state.get("gen_pick") not in ids:
            st.session_state["gen_pick"] = ids[0]  # the newest run
        run_id = st.selectbox("Run", ids, key="gen_pick",
                              format_func=lambda i: next(f"#{r['id']} {r['name']} [{r['status']}]" for r in runs
                                                         if r["id"] == i))
        run_panel(eng, run_id)
        if next(r["status"] for r in runs if r["id"] == run_id) == "succeeded":
            st.session_state["queue_from_run"] = run_id  # the Queues form opens with this run picked
            link_to(user.role, "queues.py", f"Next: put run {run_id}'s traces in a review queue")
        st.subheader("All runs and their yield")
        st.dataframe(pd.DataFrame(runs), hide_index=True, width="stretch")
    else:
        st.info("No generation runs yet.")

with tab_demos:
    st.caption("Worked examples that few_shot and scaffold show the model, drawn per sample (seeded, balanced by "
               "behaviour, reviewers' demos first, never the sample's own prompt or an eval prompt). Grow it from "
               "Review: `p` makes the last approved or edited trace a demo.")
    ensure_shipped(eng)
    library = list_demos(eng, active_only=False)
    st.dataframe(pd.DataFrame(library, columns=["id", "behavior", "source", "trace_id", "is_active", "prompt",
                                                "reasoning", "response"]), hide_index=True, width="stretch")
    if can(user.role, "curate_demos") and library:
        c1, c2 = st.columns([3, 1])
        pick = c1.selectbox("Demo", [d["id"] for d in library], key="demo_pick",
                            format_func=lambda i: next(f"#{d['id']} [{d['behavior']}] {d['prompt'][:70]}"
                                                       + ("" if d["is_active"] else " (disabled)")
                                                       for d in library if d["id"] == i))
        active = next(d["is_active"] for d in library if d["id"] == pick)
        if c2.button("Disable" if active else "Enable", key="demo_toggle"):
            set_active(eng, user.id, pick, not active)
            st.rerun()

with tab_mut:
    with st.form("mut_new"):
        m_set = st.selectbox("Mutate the refuse prompts of", sets, key="mut_set")
        styles = st.multiselect("SORRY-Bench styles (LLM rewrite)", list(STYLES), key="mut_styles")
        jbb = st.multiselect("JailbreakBench stored attacks", list(JBB_METHODS), key="mut_jbb")
        twins = st.multiselect("Contrast twins (benign, same topic, expected comply)", list(TWIN_KINDS),
                               key="mut_twins", help="the request's topic with the intent stripped: how it is "
                               "prevented, its history, why it is dangerous, how people protect themselves")
        c1, c2 = st.columns(2)
        m_model = c1.text_input("Rewrite model", value=DEFAULT_MODEL, key="mut_model")
        m_limit = c2.number_input("Parent prompts (0 = all)", 0, 1_000_000, 20, key="mut_limit")
        if st.form_submit_button("Start mutation"):
            mcfg = MutationConfig(set_name=m_set, styles=styles, jbb_methods=jbb, twins=twins, model=m_model.strip(),
                                  limit=int(m_limit) or None)
            try:
                mcfg.validate()
            except ValueError as e:
                st.error(plain(e))
            else:
                st.session_state["mut_job"] = enqueue_mutation(eng, user.id, mcfg).id
    if st.session_state.get("mut_job"):
        job_panel(eng, st.session_state["mut_job"])

with tab_label:
    with st.form("label_new"):
        l_set = st.selectbox("Traces of set", sets, key="label_set")
        judge = st.radio("Deciding judge", list(JUDGE_NAMES), horizontal=True, key="label_judge",
                         format_func=lambda n: f"{n} (default)" if n == DEFAULT_JUDGE else n,
                         help="decides each trace's behaviour (and so matches-expected, usable and the review "
                              "queue's priority); prefix, rule and learned labels are always written beside it "
                              "· llm: the CoCoNot rubric on the model below")
        l_model = st.text_input("LLM judge model", value=DEFAULT_MODEL, key="label_model")
        if st.form_submit_button("Start auto-labelling"):
            try:
                st.session_state["label_job"] = enqueue_label(eng, user.id, set_name=l_set, judge=judge,
                                                              model=l_model.strip()).id
            except (ValueError, PermissionDenied) as e:
                st.error(plain(e))
    if st.session_state.get("label_job"):
        job_panel(eng, st.session_state["label_job"])
