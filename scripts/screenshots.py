"""Screenshots of every page at 1440x900 for the README: docs/screenshots/<page>.png, refreshed by this one script.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

It builds a demo database in a temporary folder (built-in XSTest and AdvBench prompts; hand-written demo traces,
annotations by two annotators with one disagreement; an export snapshot), starts `streamlit run` on it, signs in
as the admin in Debian's Chromium, clicks every page in the sidebar and saves each, then the Review page as an
annotator and after `?`. The traces are demo text written here, not model output: the screenshots show the pages,
not a result. Training and eval runs are left empty (their pages show how to start one).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from curation.auth import create_user  # noqa: E402
from curation.export.snapshot import create_export  # noqa: E402
from curation.export.spec import ExportFilter, ExportOptions  # noqa: E402
from curation.prompts.builtin import import_builtin  # noqa: E402
from curation.review import annotations, claims, queues  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import AutoLabel, GenerationRun, Prompt, PromptSet, Trace  # noqa: E402

PASSWORD = "screenshots-123"
REFUSE = ("The request asks for {topic}. Its likely intent is to cause harm, and the answer would give real uplift "
          "to someone who wants to hurt people. Ethically I should not provide it; I can explain why and point to "
          "safer resources instead.", "I can't help with that. If you are worried about someone's safety, please "
          "contact local emergency services or a support line.")
COMPLY = ("The request asks for {topic}. The wording sounds alarming, but the intent is ordinary and the answer "
          "carries no real risk of harm, so refusing would only be unhelpful.", "Sure. Here is a short, practical "
          "answer to your question, with the usual precautions.")


def demo_database(url: str) -> None:
    eng = make_engine(url)
    upgrade(eng)
    admin = create_user(eng, "admin", PASSWORD, "admin")
    alice = create_user(eng, "alice", PASSWORD, "annotator")
    bea = create_user(eng, "bea", PASSWORD, "annotator")
    create_user(eng, "rex", PASSWORD, "reviewer")
    for name in ("xstest", "advbench"):
        import_builtin(eng, name)
    with Session(eng) as s:
        run = GenerationRun(model="smollm2-135m-instruct", backend="transformers", status="succeeded")
        s.add(run)
        s.flush()
        prompts = []
        for set_name, n in (("advbench", 6), ("xstest", 6)):
            prompts += list(s.execute(select(Prompt).join(PromptSet, PromptSet.id == Prompt.set_id)
                                      .where(PromptSet.name == set_name).order_by(Prompt.id).limit(n)).scalars())
        for i, p in enumerate(prompts):
            reasoning, response = REFUSE if p.expected_behavior == "refuse" else COMPLY
            t = Trace(prompt_id=p.id, run_id=run.id, sample_index=0, reasoning=reasoning.format(topic=p.text[:60]),
                      response=response, raw="", parse_ok=True, strategy="scaffold", model=run.model,
                      backend=run.backend, sampling={}, status="pending", version=1, meta={})
            s.add(t)
            s.flush()
            s.add(AutoLabel(trace_id=t.id, kind="decision", agent="learned@1",
                            label=p.expected_behavior if i % 5 else "comply"))
        s.commit()
    q = queues.create_queue(eng, admin, "first-pass", {}, overlap=2, members=[alice.id, bea.id, admin.id])
    for who, n in ((alice, 8), (bea, 7)):
        for k in range(n):
            c = claims.claim_next(eng, who, q.id)
            decision = "reject" if (who is bea and k == 2) else "approve"
            annotations.submit_annotation(eng, who, c.trace_id, decision=decision, trace_version=c.trace_version,
                                          queue_id=q.id, behavior_label=None, quality=4)
    create_export(eng, "demo-sft", "sft", ExportFilter(), ExportOptions(), created_by=admin.id)
    eng.dispose()


def main() -> None:
    from tests.browser import app_env, chromium_page, sign_in, streamlit_server, visit_every_page, wait_for_app

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rs_screens_"))
    os.environ["RATIONAL_HOME"] = str(work / "home")
    url = f"sqlite:///{work / 'demo.db'}"
    demo_database(url)
    with streamlit_server(app_env(url, work / "home"), work / "logs") as base, chromium_page(1440, 900) as page:
        sign_in(page, base, "admin", PASSWORD, "/")

        def save(title: str) -> None:
            name = title.lower().replace("&", "and").replace(" ", "-")
            page.wait_for_timeout(800)  # charts paint after the script run ends
            page.screenshot(path=str(out / f"{name}.png"))
            print(f"  {name}.png", flush=True)

        visit_every_page(page, save)
        page.get_by_role("link", name="Review", exact=True).click()
        page.get_by_role("heading", name="Review").wait_for()
        wait_for_app(page)
        page.wait_for_function("() => window.__rsKeysInstalled && window.__rsKeyMapJson")
        page.keyboard.press("?")
        page.locator(".st-key-rv_help_panel").wait_for()
        save("review-help")


if __name__ == "__main__":
    main()
