"""`rational eval` / `rational compare --report` end to end on the tiny model, and the report's content."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.test_compare_logic import make_pair_runs

pytest.importorskip("peft")
runner = CliRunner()


def _run(*args):
    res = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    return res.exit_code, res.stdout + (res.stderr if res.stderr_bytes is not None else "")


def test_eval_then_compare_writes_report(tiny_model_dir, tmp_path):
    from tests.test_eval_runs import make_tiny_adapter

    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "adapter")
    common = ["--suite", "over_refusal", "--limit", "1", "--max-tokens", "4", "--wait"]
    code, out = _run("eval", "--model", tiny_model_dir, *common)
    assert code == 0, out
    assert re.search(r"eval run 1: 3 prompts, suite over_refusal@1:", out)
    assert "false-refusal rate" in out and "coconot_contrast" in out  # metrics table + used-for-both note
    assert "in the train split (set used for both)" in out
    assert "corrected for the judge's error" in out and "held-out" in out  # the judge's rate beside the corrected
    code, out = _run("eval", "--model", tiny_model_dir, "--adapter", adapter, *common)
    assert code == 0, out
    assert "eval run 2" in out and "adapter sha256" in out
    code, out = _run("eval-runs")
    assert code == 0 and "over_refusal@1" in out
    report = tmp_path / "out" / "cmp.md"
    code, out = _run("compare", "1", "2", "--report", report)
    assert code == 0, out
    text = report.read_text()
    assert "run #1 (A) vs run #2 (B)" in text and "none (base model)" in text
    from evaluation.runs import adapter_sha256

    assert adapter_sha256(adapter) in text
    assert "Sets used for both training and evaluation" in text and "coconot_contrast (1 prompts)" in text
    pngs = sorted(p.name for p in (tmp_path / "out" / "cmp_files").iterdir())
    assert "false_refusal_rate_set.png" in pngs
    for name in pngs:
        assert f"](cmp_files/{name})" in text
        assert (tmp_path / "out" / "cmp_files" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_eval_queues_a_job_by_default_and_names_bad_input(tiny_model_dir, tmp_path):
    code, out = _run("eval", "--model", tiny_model_dir, "--suite", "harmful", "--limit", "1")
    assert code == 0 and "queued job" in out
    code, out = _run("eval", "--model", tiny_model_dir, "--suite", "nope")
    assert code == 2 and "no eval suite 'nope'" in out
    code, out = _run("eval", "--model", tiny_model_dir, "--suite", "harmful", "--adapter", tmp_path, "--run", "1")
    assert code == 2 and "not both" in out
    code, out = _run("compare", "1", "99")
    assert code == 2 and "eval run 99 does not exist" in out


def test_report_keeps_model_text_inside_code_fences(sqlite_engine):
    from evaluation.report import build_report

    cases = [("Say ``` then # Heading | pipe", "hb", "refuse", "asr", True, False),
             ("benign", "xs", "comply", "false_refusal_rate", False, False)]
    a, b, _ = make_pair_runs(sqlite_engine, cases)
    md = build_report(sqlite_engine, a, b).markdown
    # the prompt holds a triple backtick: its fence must be longer, so the text cannot close it
    assert "````text\nSay ``` then # Heading | pipe\n````" in md
    assert "Regressions (B fails where A did not) — 1 in all" in md
    assert "| attack success rate | all | 1 | 0.0%" in md


def test_eval_accepts_only_a_succeeded_training_run(tiny_model_dir, tmp_path):
    """A run that did not finish (here: failed, with a real adapter folder as the earlier code left after a worker
    was killed) is refused; the same run once succeeded is accepted. The run row is written directly."""
    from sqlmodel import Session

    from db.models import TrainingRun
    from evaluation.runs import adapter_choices
    from tests.test_eval_runs import make_tiny_adapter
    from tests.test_export import _cli_engine

    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "adapter")
    eng = _cli_engine()
    with Session(eng) as s:
        tr = TrainingRun(base_model=str(tiny_model_dir), method="sft", status="failed", adapter_path=str(adapter))
        s.add(tr)
        s.commit()
        run_id = tr.id
    code, out = _run("eval", "--run", run_id, "--suite", "harmful", "--limit", "1")
    assert code == 2 and f"training run {run_id} is failed" in out, out
    assert adapter_choices(eng) == []
    with Session(eng) as s:
        s.get(TrainingRun, run_id).status = "succeeded"
        s.commit()
    code, out = _run("eval", "--run", run_id, "--suite", "harmful", "--limit", "1")
    assert code == 0 and "queued job" in out, out
    assert [c["id"] for c in adapter_choices(eng)] == [run_id]
