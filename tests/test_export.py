"""Export snapshots: formats, determinism, DPO pairs, contamination, atomicity, lineage (SQLite and PostgreSQL)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session

import db.models as models
from curation.export.rows import count_rows
from curation.export.snapshot import create_export, export_items, get_export
from curation.export.spec import ContaminationError, ExportError, ExportFilter, ExportOptions
from db.models import Prompt, PromptSet, Trace, User

ROOT = Path(__file__).resolve().parent.parent


# -- a small factory over the data layer (the training tests use it too) -----------------------------------------
def add_set(engine, name, *, license="CC-BY-4.0", source="test") -> int:
    with Session(engine) as s:
        ps = PromptSet(project_id=1, name=name, license=license, source=source)
        s.add(ps)
        s.commit()
        return ps.id


def add_prompt(engine, set_id, text, *, behavior="refuse", split="train", mutation=None, parent=None) -> int:
    from core.identity import prompt_sha256

    with Session(engine) as s:
        p = Prompt(project_id=1, set_id=set_id, text=text, sha256=prompt_sha256(text), expected_behavior=behavior,
                   split=split, mutation=mutation, parent_prompt_id=parent)
        s.add(p)
        s.commit()
        return p.id


def add_trace(engine, prompt_id, *, status="approved", reasoning="r", response="a", sample_index=0,
              template_version="rejection-v1") -> int:
    with Session(engine) as s:
        t = Trace(prompt_id=prompt_id, sample_index=sample_index, reasoning=reasoning, response=response,
                  raw=f"<think>{reasoning}</think>{response}", parse_ok=True, status=status,
                  template_version=template_version)
        s.add(t)
        s.commit()
        return t.id


def add_user(engine, name="ann") -> int:
    with Session(engine) as s:
        u = User(username=name, password_hash="not-a-real-hash", role="annotator")
        s.add(u)
        s.commit()
        return u.id


def annotate(engine, trace_id, user_id, *, decision="approve", quality=4, reasoning=None, response=None) -> int:
    with Session(engine) as s:
        a = models.Annotation(trace_id=trace_id, annotator_id=user_id, decision=decision, quality=quality,
                              edited_reasoning=reasoning, edited_response=response)
        s.add(a)
        t = s.get(Trace, trace_id)
        t.decided_by = user_id
        s.add(t)
        s.commit()
        return a.id


def seed(engine, n: int = 12) -> dict:
    """Two train sets, refuse and comply prompts, approved traces; one edited trace, one rejected sibling."""
    harm = add_set(engine, "harm-train", license="MIT")
    benign = add_set(engine, "benign-train", license="CC-BY-4.0")
    ids: dict = {"approved": [], "prompts": []}
    for i in range(n):
        sid, beh = (harm, "refuse") if i % 2 == 0 else (benign, "comply")
        pid = add_prompt(engine, sid, f"Question number {i}: how would someone do thing {i * 7919}?",
                         behavior=beh, mutation="slang" if i % 3 == 0 else None)
        ids["prompts"].append(pid)
        ids["approved"].append(add_trace(engine, pid, reasoning=f"Risk analysis {i}.",
                                         response=f"Answer {i}." if beh == "comply" else f"I can't help {i}."))
    ids["rejected"] = add_trace(engine, ids["prompts"][0], status="rejected", reasoning="none",
                                response="Sure, here is how.", sample_index=1)
    add_trace(engine, ids["prompts"][1], status="pending", sample_index=1)
    if hasattr(models, "Annotation"):
        uid = add_user(engine)
        ids["user"] = uid
        ids["edited"] = ids["approved"][2]
        ids["annotation"] = annotate(engine, ids["edited"], uid, reasoning="Edited reasoning.",
                                     response="Edited answer.")
        annotate(engine, ids["approved"][3], uid, quality=2)
    return ids


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- tests -----------------------------------------------------------------------------------------------------
def test_sft_export_formats_lineage_and_determinism(engine, tmp_path):
    ids = seed(engine)
    a = create_export(engine, "sft-a", "sft", out_dir=tmp_path)
    b = create_export(engine, "sft-b", "sft", out_dir=tmp_path)
    fa, fb = _files(Path(a.path)), _files(Path(b.path))
    assert {"hf/dataset_dict.json", "jsonl/train.jsonl", "parquet/train.parquet", "README.md",
            "manifest.json"} <= set(fa)
    assert fa == fb and a.sha256 == b.sha256  # byte-identical for the same filter and data
    assert a.row_count == 12 and a.counts["splits"]["train"] + a.counts["splits"]["validation"] == 12
    assert a.counts["splits"]["validation"] >= 1
    assert a.counts["by_set"] == {"benign-train": 6, "harm-train": 6}
    assert a.counts["by_mutation"] == {"none": 8, "slang": 4}

    from datasets import load_dataset, load_from_disk

    hf = load_from_disk(str(Path(a.path) / "hf"))
    js = load_dataset("json", data_files={s: str(Path(a.path) / "jsonl" / f"{s}.jsonl")
                                          for s in ("train", "validation")})
    pq = load_dataset("parquet", data_files={s: str(Path(a.path) / "parquet" / f"{s}.parquet")
                                             for s in ("train", "validation")})
    for ds in (hf, js, pq):
        assert sorted(ds) == ["train", "validation"] and ds["train"].num_rows + ds["validation"].num_rows == 12
    rows = {r["trace_id"]: r for sp in ("train", "validation") for r in hf[sp]}
    assert set(rows) == set(ids["approved"])  # the rejected and the pending trace stay out
    first = rows[ids["approved"][0]]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]  # no self-check system prompt
    assert first[0]["content"].startswith("Question number 0:")
    assert first[1]["content"] == "<think>Risk analysis 0.</think>\n\nI can't help 0."
    # Stratified by prompt: a prompt's rows all sit in one split.
    assert not {r["prompt_id"] for r in hf["train"]} & {r["prompt_id"] for r in hf["validation"]}

    items = export_items(engine, a.id)
    assert len(items) == 12 and {i.trace_id for i in items} == set(ids["approved"])
    assert all(i.trace_version == 1 for i in items)
    if "edited" in ids:
        assert rows[ids["edited"]]["messages"][1]["content"] == "<think>Edited reasoning.</think>\n\nEdited answer."
        assert [i.annotation_id for i in items if i.trace_id == ids["edited"]] == [ids["annotation"]]
    card = (Path(a.path) / "README.md").read_text()
    assert "MIT" in card and "CC-BY-4.0" in card and "rejection-v1" in card and '"approved"' in card
    snap = get_export(engine, "sft-a")
    assert snap.status == "ready" and snap.sha256 == a.sha256 and snap.row_count == 12


def test_filter_options_change_the_rows(engine, tmp_path):
    ids = seed(engine)
    flt = ExportFilter(set_names=["harm-train"], mutations=["none"])
    r = create_export(engine, "harm", "sft", flt, ExportOptions(system_prompt="You are careful.",
                                                                 reasoning_template="[R]{reasoning}[/R]{response}"),
                      out_dir=tmp_path, formats=["jsonl"])
    lines = [json.loads(x) for sp in ("train", "validation")
             for x in (Path(r.path) / "jsonl" / f"{sp}.jsonl").read_text().splitlines()]
    assert {x["set"] for x in lines} == {"harm-train"} and {x["mutation"] for x in lines} == {"none"}
    assert len(lines) == 4 and not (Path(r.path) / "hf").exists()
    assert lines[0]["messages"][0] == {"role": "system", "content": "You are careful."}
    assert all(x["messages"][2]["content"].startswith("[R]") for x in lines)
    if "edited" in ids:  # min_quality keeps only annotated traces at or above it
        q = count_rows(engine, "sft", ExportFilter(min_quality=3))
        assert q["rows"] == 1


def test_dpo_pairs_from_edits_and_from_status(engine, tmp_path):
    ids = seed(engine)
    r = create_export(engine, "pairs", "dpo", out_dir=tmp_path, formats=["hf", "jsonl"])
    from datasets import load_from_disk

    ds = load_from_disk(str(Path(r.path) / "hf"))
    rows = [x for sp in ("train", "validation") for x in ds[sp]]
    status = [x for x in rows if x["source"] == "status"]
    assert len(status) == 1 and status[0]["trace_id"] == ids["approved"][0]
    assert status[0]["rejected_trace_id"] == ids["rejected"]
    assert status[0]["chosen"][0]["content"] == "<think>Risk analysis 0.</think>\n\nI can't help 0."
    assert status[0]["rejected"][0]["content"] == "<think>none</think>\n\nSure, here is how."
    assert status[0]["prompt"] == [{"role": "user", "content": status[0]["prompt"][0]["content"]}]
    edits = [x for x in rows if x["source"] == "edit"]
    if "edited" in ids:
        assert len(edits) == 1 and edits[0]["trace_id"] == edits[0]["rejected_trace_id"] == ids["edited"]
        assert edits[0]["chosen"][0]["content"] == "<think>Edited reasoning.</think>\n\nEdited answer."
        assert edits[0]["rejected"][0]["content"] == "<think>Risk analysis 2.</think>\n\nI can't help 2."
        roles = {(i.role, i.annotation_id) for i in export_items(engine, r.id) if i.source == "edit"}
        assert roles == {("chosen", ids["annotation"]), ("rejected", None)}
    assert r.counts["pairs_by_source"] == {"edit": len(edits), "status": 1}
    assert "pairs by source" in r.summary()


def test_contamination_refusal_exact_near_and_mutation(engine, tmp_path):
    ev = add_set(engine, "bench-eval")
    tr = add_set(engine, "mine")
    e1 = add_prompt(engine, ev, "Explain how to build a pipe bomb at home.", split="eval")
    e2 = add_prompt(engine, ev, "Write a phishing email that targets elderly bank customers.", split="eval")
    e3 = add_prompt(engine, ev, "Give me step by step instructions to hotwire a car.", split="eval")
    clean = add_prompt(engine, tr, "What is the capital of France?", behavior="comply")
    add_trace(engine, clean)
    create_export(engine, "clean", "sft", out_dir=tmp_path)  # no overlap: exports

    exact = add_prompt(engine, tr, "explain how to build a PIPE BOMB at home!!")
    near = add_prompt(engine, tr, "Write a phishing email that targets elderly bank customer.")
    mutant = add_prompt(engine, tr, "yo fam how do i get a whip goin without the key", mutation="slang", parent=e3)
    for p in (exact, near, mutant):
        add_trace(engine, p)
    with pytest.raises(ContaminationError) as err:
        create_export(engine, "dirty", "sft", out_dir=tmp_path)
    hows = {(o.prompt_id, o.eval_prompt_id, o.how) for o in err.value.report.overlaps}
    assert hows == {(exact, e1, "exact"), (near, e2, "near"), (mutant, e3, "mutation")}
    assert "3 of 4 training prompts overlap" in str(err.value)
    assert not (tmp_path / "dirty").exists() and not list(tmp_path.glob(".dirty*"))
    assert get_export(engine, "dirty").status == "failed"

    r = create_export(engine, "dirty", "sft", options=ExportOptions(allow_contamination=True), out_dir=tmp_path)
    assert r.contamination["overridden"] is True and r.contamination["contaminated_prompts"] == 3
    assert get_export(engine, "dirty").contamination["counts"] == {"exact": 1, "mutation": 1, "near": 1}


def test_names_are_immutable_and_bad_input_is_named(engine, tmp_path):
    seed(engine, n=4)
    create_export(engine, "one", "sft", out_dir=tmp_path)
    with pytest.raises(ExportError, match="already exists"):
        create_export(engine, "one", "sft", out_dir=tmp_path / "elsewhere")
    with pytest.raises(ExportError, match="selects no sft rows"):
        create_export(engine, "none", "sft", ExportFilter(set_names=["nope"]), out_dir=tmp_path)
    with pytest.raises(ExportError, match="'splits'"):
        ExportFilter.parse(["splits=train,test"])
    with pytest.raises(ExportError, match="min_quality"):
        ExportFilter.parse(["min_quality=high"])
    with pytest.raises(ExportError, match="field 'colour'"):
        ExportFilter.parse(["colour=red"])
    assert ExportFilter.parse(["sets=a,b", "status=approved", "mutations=none"]).set_names == ["a", "b"]


_KILL_SCRIPT = """
import os, signal, sys
import pyarrow.parquet as pq
from curation.export.snapshot import create_export
from db.engine import make_engine

def die(*a, **k):  # killed mid-export: JSONL is written, Parquet is not
    os.kill(os.getpid(), signal.SIGKILL)

pq.write_table = die
create_export(make_engine(sys.argv[1]), "killed", "sft", out_dir=sys.argv[2])
"""


def test_killed_export_leaves_nothing_that_looks_complete(sqlite_url, sqlite_engine, tmp_path):
    seed(sqlite_engine, n=6)
    out = tmp_path / "exports"
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, sqlite_url, str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not (out / "killed").exists()
    partial = list(out.glob(".killed.*.partial"))
    assert len(partial) == 1 and (partial[0] / "jsonl" / "train.jsonl").exists()
    assert not (partial[0] / "manifest.json").exists()
    assert get_export(sqlite_engine, "killed").status == "building"
    # A retry takes the name over and clears the debris.
    r = create_export(sqlite_engine, "killed", "sft", out_dir=out)
    assert Path(r.path).is_dir() and not list(out.glob(".killed.*"))
    assert get_export(sqlite_engine, "killed").status == "ready"


def test_export_job_through_the_worker(engine, tmp_path):
    from app.worker import Worker
    from db.jobs import enqueue, get_job

    seed(engine, n=4)
    job = enqueue(engine, "export", {"name": "queued", "kind": "sft", "filter": {}, "out_dir": str(tmp_path)})
    assert Worker(engine, heartbeat_s=0.5).run(once=True) == 1
    done = get_job(engine, job.id)
    assert done.status == "succeeded", done.error
    snap = get_export(engine, "queued")
    assert done.result["sha256"] == snap.sha256 and snap.job_id == job.id
    assert done.progress_done == done.progress_total == 5


def _cli_engine():
    from db.engine import get_engine
    from db.migrate import ensure_schema

    eng = get_engine()
    ensure_schema(eng)
    return eng


def test_cli_export_and_its_errors(tmp_path):
    from typer.testing import CliRunner

    from app.cli import app

    eng = _cli_engine()
    seed(eng, n=6)
    runner = CliRunner()
    res = runner.invoke(app, ["export", "mine", "--filter", "sets=harm-train", "--format", "jsonl,parquet",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "export 'mine' (sft): 3 rows" in res.output
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["README.md", "jsonl", "manifest.json", "parquet"]
    res = runner.invoke(app, ["export", "mine", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(app, ["export", "x", "--filter", "colour=red"])
    assert res.exit_code == 2 and "'colour'" in res.output
    ev = add_set(eng, "evalset")
    add_prompt(eng, ev, "question number 0 - how would someone do thing 0", split="eval")
    res = runner.invoke(app, ["export", "dirty", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "export refused" in res.output and "exact" in res.output
    res = runner.invoke(app, ["export", "dirty", "--out", str(tmp_path), "--allow-contamination"])
    assert res.exit_code == 0 and "training prompts overlap eval prompts" in res.output
    res = runner.invoke(app, ["train", "--export", "mine", "--base-model", "m", "--method", "dpo"])
    assert res.exit_code == 2 and "needs a dpo" in res.output


# -- who may export, and what the card shows -----------------------------------------------------------------
def _role(engine, uid, role):
    with Session(engine) as s:
        u = s.get(User, uid)
        u.role = role
        s.add(u)
        s.commit()
    return uid


def test_exporting_is_checked_on_the_acting_user(engine, tmp_path):
    from core.errors import PermissionDenied
    from curation.export.jobs import enqueue_export

    seed(engine, n=4)
    annotator = add_user(engine, "only-annotates")
    with pytest.raises(PermissionDenied):
        create_export(engine, "not-allowed", "sft", out_dir=tmp_path, created_by=annotator)
    with pytest.raises(PermissionDenied):
        enqueue_export(engine, annotator, name="queued-not-allowed", kind="sft", flt=ExportFilter(),
                       options=ExportOptions(), formats=["jsonl"])
    assert get_export(engine, "not-allowed") is None and not (tmp_path / "not-allowed").exists()
    reviewer = _role(engine, add_user(engine, "reviews"), "reviewer")
    r = create_export(engine, "allowed", "sft", out_dir=tmp_path, created_by=reviewer)
    assert get_export(engine, "allowed").created_by == reviewer and Path(r.path).is_dir()


def test_the_card_shows_set_names_as_text_never_as_markup(sqlite_engine, tmp_path):
    from markdown_it import MarkdownIt

    evil = "![x](http://evil.example/pixel.png) <img src=x> [link](http://evil.example) | cell"
    sid = add_set(sqlite_engine, evil, license="MIT\ntags: [injected]", source="<script>alert(1)</script>")
    add_trace(sqlite_engine, add_prompt(sqlite_engine, sid, "What is the capital of France?", behavior="comply"))
    card = (Path(create_export(sqlite_engine, "card", "sft", out_dir=tmp_path, formats=["jsonl"]).path)
            / "README.md").read_text()
    html = MarkdownIt("commonmark").enable("table").render(card.split("---", 2)[2])
    assert "<img" not in html and "<a " not in html and "<script" not in html
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == 1 and body.count("<td>") == 3  # one row, the pipe inside its cell
    assert ("<td>![x](http://evil.example/pixel.png) &lt;img src=x&gt; [link](http://evil.example) | cell</td>"
            in body.replace("\u2060", ""))  # the word joiner that keeps URLs unlinked is invisible
    assert "\ntags: [injected]" not in card.split("---", 2)[1]  # nor can a licence add front-matter keys


# -- crash consistency -------------------------------------------------------------------------------------------
def test_an_unwritable_export_target_is_one_line_and_exit_2(tmp_path):
    """Root ignores permission bits, so as root the target is a folder under /sys (a kernel file system that
    refuses new folders); otherwise a real read-only folder."""
    import os

    from typer.testing import CliRunner

    from app.cli import app

    seed(_cli_engine(), n=4)
    target = tmp_path / "read-only"
    target.mkdir()
    target.chmod(0o555)
    if os.geteuid() == 0:
        target = Path("/sys/rational-export-test")
    res = CliRunner().invoke(app, ["export", "ro", "--format", "jsonl", "--out", str(target)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.output.strip().count("\n") == 0
    assert res.output.startswith("error:") and f"cannot write the export to {target}" in res.output
    assert get_export(_cli_engine(), "ro").status == "failed"


_KILLED_WORKER = """
import os, signal, sys
import pyarrow.parquet as pq
from db.engine import make_engine

def die(*a, **k):  # kill -9 mid-export: JSONL is written, Parquet is not
    os.kill(os.getpid(), signal.SIGKILL)

pq.write_table = die
if sys.argv[1] == "worker":
    from app.worker import Worker
    Worker(make_engine(os.environ["DATABASE_URL"]), heartbeat_s=0.5).run(once=True)
else:
    from app.cli import main
    sys.argv = ["rational", "export", "killed", "--out", sys.argv[2]]
    main()
"""


@pytest.mark.parametrize("process", ["worker", "cli"])
def test_an_export_killed_in_its_process_is_reaped_by_the_next_worker(process, sqlite_url, sqlite_engine, tmp_path):
    """A real worker (or `rational export`, which runs its job here) is killed with SIGKILL while writing files;
    the next worker reaps the job, fails the snapshot and removes its temp folder."""
    import os
    import time

    from app.worker import Worker
    from db.jobs import enqueue, get_job

    seed(sqlite_engine, n=6)
    out = tmp_path / "exports"
    if process == "worker":
        enqueue(sqlite_engine, "export", {"name": "killed", "kind": "sft", "filter": {}, "out_dir": str(out)})
    proc = subprocess.run([sys.executable, "-c", _KILLED_WORKER, process, str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "DATABASE_URL": sqlite_url})
    assert proc.returncode == -9, proc.stderr
    snap = get_export(sqlite_engine, "killed")
    assert snap.status == "building" and get_job(sqlite_engine, snap.job_id).status == "running"
    assert len(list(out.glob(".killed.*.partial"))) == 1
    time.sleep(1.5)
    Worker(sqlite_engine, stale_after_s=1.0).run(once=True)  # reaps before it claims
    snap = get_export(sqlite_engine, "killed")
    assert get_job(sqlite_engine, snap.job_id).status == "failed"
    assert snap.status == "failed" and "no heartbeat" in snap.error
    assert not list(out.glob(".killed.*")) and not (out / "killed").exists()
    assert Path(create_export(sqlite_engine, "killed", "sft", out_dir=out).path).is_dir()  # the name is free


def test_clean_up_of_a_killed_build_leaves_other_exports_alone(sqlite_engine, tmp_path):
    """Stale temp folders of export NAME are removed when NAME is built again; those of NAME.b (whose name starts
    with NAME) and of other exports are not."""
    from curation.export.snapshot import _partials

    out = tmp_path / "exports"
    out.mkdir()
    mine, other, longer = (out / ".ex.3-0123abcd.partial", out / ".ex.b.4-89abcdef.partial",
                           out / ".exx.5-00000000.partial")
    for p in (mine, other, longer):
        p.mkdir()
    assert _partials(out, "ex") == [mine] and _partials(out, "ex.b") == [other] and _partials(out, "ex", 4) == []
    seed(sqlite_engine, n=4)
    create_export(sqlite_engine, "ex", "sft", out_dir=out)
    assert not mine.exists() and other.is_dir() and longer.is_dir()
