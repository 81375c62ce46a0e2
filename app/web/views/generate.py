"""Generate: start self-check trace generation, mutations and auto-labelling as worker jobs; watch live progress
(done/total, tokens/s); see each run's yield per expected behaviour."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.web.job_panel import job_panel
from app.web.login import page_user
from app.web.state import engine
from core.vocabulary import BEHAVIORS
from curation.generation.backends import BACKENDS
from curation.generation.catalog import DEFAULT_MODEL
from curation.generation.config import GenerationConfig, Selection
from curation.generation.jobs import enqueue_generation
from curation.generation.runs import create_run, pending_work, run_summaries
from curation.generation.strategies import STRATEGIES
from curation.judges.jobs import enqueue_label
from curation.prompts.jobs import enqueue_mutation
from curation.prompts.mutations import JBB_METHODS, STYLES, MutationConfig
from db.crud import list_sets

eng = engine()
user = page_user(__file__)
st.title("Generate")
st.caption("The model answers each prompt under a self-check system prompt: reasoning first, then the answer. "
           "Jobs run in the worker (`rational worker`); this page only starts and watches them.")
sets = [s["name"] for s in list_sets(eng) if s["kind"] == "prompts"]
if not sets:
    st.info("No prompt sets yet: import one on the Import page (or `rational sets import xstest`).")
    st.stop()

tab_gen, tab_mut, tab_label = st.tabs(["Traces", "Mutations", "Auto-labels"])

with tab_gen:
    with st.form("gen_new"):
        c1, c2, c3 = st.columns(3)
        set_name = c1.selectbox("Prompt set", sets, key="gen_set")
        split = c2.selectbox("Split", ["any", "train", "eval"], key="gen_split")
        behaviors = c3.multiselect("Expected behaviour", list(BEHAVIORS), key="gen_beh")
        c1, c2, c3 = st.columns(3)
        model = c1.text_input("Model (name, HF id or folder)", value=DEFAULT_MODEL, key="gen_model")
        backend = c2.selectbox("Backend", list(BACKENDS), key="gen_backend")
        base_url = c3.text_input("Server URL (openai backend)", value="", key="gen_url")
        c1, c2, c3, c4 = st.columns(4)
        strategy = c1.selectbox("Strategy", list(STRATEGIES), index=STRATEGIES.index("two_pass"),
                                key="gen_strategy",
                                help="single: one pass · prefill: the answer starts with the reasoning tag · "
                                     "two_pass: a reasoning call, then an answer conditioned on it (the default: "
                                     "small models like SmolLM2 never follow the format in one pass)")
        samples = c2.number_input("Samples per prompt (K)", 1, 64, 1, key="gen_k")
        temperature = c3.number_input("Temperature", 0.0, 2.0, 0.7, key="gen_temp")
        top_p = c4.number_input("Top-p", 0.05, 1.0, 0.95, key="gen_top_p")
        c1, c2, c3, c4 = st.columns(4)
        max_tokens = c1.number_input("Max new tokens", 8, 8192, 512, key="gen_max")
        rep = c2.number_input("Repetition penalty", 0.5, 3.0, 1.0, key="gen_rep",
                              help="> 1 stops the loops small models fall into; 1.0 = off")
        stop = c3.text_input("Stop strings (comma list, \\n allowed)", value="\\n\\n", key="gen_stop",
                             help="SmolLM2 never ends on its own; one paragraph per pass keeps its traces complete")
        limit = c1.number_input("Prompts (0 = all)", 0, 1_000_000, 20, key="gen_limit")
        student = c4.text_input("Traces are for model (if a teacher writes them)", key="gen_student")
        if st.form_submit_button("Start generation", type="primary"):
            cfg = GenerationConfig(model=model.strip() or DEFAULT_MODEL, backend=backend, strategy=strategy,
                                   samples=int(samples), temperature=float(temperature), top_p=float(top_p),
                                   max_tokens=int(max_tokens), repetition_penalty=float(rep),
                                   stop=[x.encode().decode("unicode_escape") for x in stop.split(",") if x],
                                   student_model=student.strip() or None,
                                   backend_options={"base_url": base_url.strip()} if base_url.strip() else {})
            sel = Selection(set_names=[set_name], split=None if split == "any" else split, behaviors=behaviors,
                            limit=int(limit) or None)
            try:
                run = create_run(eng, cfg, sel, created_by=user.id)
            except ValueError as e:
                st.error(str(e))
            else:
                _, _, total = pending_work(eng, run)
                if total == 0:
                    st.warning("No prompts match this selection.")
                else:
                    st.session_state["gen_job"] = enqueue_generation(eng, user.id, run.id).id
    if st.session_state.get("gen_job"):
        job_panel(eng, st.session_state["gen_job"])
    st.subheader("Runs and their yield")
    runs = run_summaries(eng)
    if runs:
        st.dataframe(pd.DataFrame(runs), hide_index=True, width="stretch")
    else:
        st.info("No generation runs yet.")

with tab_mut:
    with st.form("mut_new"):
        m_set = st.selectbox("Mutate the refuse prompts of", sets, key="mut_set")
        styles = st.multiselect("SORRY-Bench styles (LLM rewrite)", list(STYLES), key="mut_styles")
        jbb = st.multiselect("JailbreakBench stored attacks", list(JBB_METHODS), key="mut_jbb")
        c1, c2 = st.columns(2)
        m_model = c1.text_input("Rewrite model", value=DEFAULT_MODEL, key="mut_model")
        m_limit = c2.number_input("Parent prompts (0 = all)", 0, 1_000_000, 20, key="mut_limit")
        if st.form_submit_button("Start mutation"):
            mcfg = MutationConfig(set_name=m_set, styles=styles, jbb_methods=jbb, model=m_model.strip(),
                                  limit=int(m_limit) or None)
            try:
                mcfg.validate()
            except ValueError as e:
                st.error(str(e))
            else:
                st.session_state["mut_job"] = enqueue_mutation(eng, user.id, mcfg).id
    if st.session_state.get("mut_job"):
        job_panel(eng, st.session_state["mut_job"])

with tab_label:
    with st.form("label_new"):
        l_set = st.selectbox("Traces of set", sets, key="label_set")
        judge = st.radio("Judge", ["strmatch", "llm"], horizontal=True, key="label_judge",
                         help="strmatch: refusal substrings/prefixes, decision, consistency, format · llm: adds the "
                              "CoCoNot rubric judge")
        l_model = st.text_input("LLM judge model", value=DEFAULT_MODEL, key="label_model")
        if st.form_submit_button("Start auto-labelling"):
            st.session_state["label_job"] = enqueue_label(eng, user.id, set_name=l_set, judge=judge,
                                                          model=l_model.strip()).id
    if st.session_state.get("label_job"):
        job_panel(eng, st.session_state["label_job"])
