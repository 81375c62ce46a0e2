"""`rational judge score | eval | train | list`: the refusal judges from the shell."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from app.cli import common as cli
from app.cli.common import DataTable

judge_app = typer.Typer(no_args_is_help=True, help="Refusal judges: score files, measure them, retrain the learned "
                        "judge on reviewers' labels.")


def register(app: typer.Typer) -> None:
    app.add_typer(judge_app, name="judge")


def _rows(path: Path, *, need_label: bool) -> list[dict]:
    """JSONL rows with prompt and response (and a gold label); a bad row fails with file, line and field."""
    from core.vocabulary import JUDGE_LABELS

    if not path.is_file():
        cli.fail(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                cli.fail(f"{path}:{n}: not JSON ({e.msg})")
            if not isinstance(row, dict):
                cli.fail(f"{path}:{n}: a row must be a JSON object")
            for field in ("prompt", "response") + (("label",) if need_label else ()):
                if not isinstance(row.get(field), str):
                    cli.fail(f"{path}:{n}: field '{field}' is missing or not text")
            if need_label and row["label"] not in JUDGE_LABELS:
                cli.fail(f"{path}:{n}: field 'label' is '{row['label']}', not one of {', '.join(JUDGE_LABELS)}")
            rows.append(row)
    if not rows:
        cli.fail(f"{path}: no rows")
    return rows


def _judge(eng, name: str, model: Optional[str], backend: str, base_url: Optional[str], version: Optional[int]):
    from curation.judges.registry import get_judge

    be = None
    if name == "llm":
        if not model:
            cli.fail("--judge llm needs --model")
        from curation.backends import make_backend
        from curation.backends.catalog import resolve_model

        opts = {"base_url": base_url} if base_url else {}
        be = make_backend(backend, resolve_model(model) if backend != "openai" else model, **opts)
    try:
        return get_judge(name, engine=eng, backend=be, version=version), be
    except ValueError as e:
        cli.fail(str(e))


JUDGE_OPT = typer.Option("learned", "--judge", help="learned | rule | prefix | gcg | llm")
MODEL_OPT = typer.Option(None, "--model", help="the llm judge's model")
BACKEND_OPT = typer.Option("transformers", "--backend", help="the llm judge's backend: transformers | vllm | openai")
URL_OPT = typer.Option(None, "--base-url", help="the llm judge's OpenAI-compatible server")
VERSION_OPT = typer.Option(None, "--version", help="a learned judge version (default: the newest)")


@judge_app.command("score")
def score(file: Path = typer.Argument(..., help="JSONL rows with 'prompt' and 'response'"),
          out: Path = typer.Option(..., "--out", help="where to write the rows with label, score and judge"),
          judge: str = JUDGE_OPT, model: Optional[str] = MODEL_OPT, backend: str = BACKEND_OPT,
          base_url: Optional[str] = URL_OPT, version: Optional[int] = VERSION_OPT,
          overwrite: bool = typer.Option(False, "--overwrite", help="replace --out if it exists")) -> None:
    """Judge every row; each is written back with `label`, `score` and `judge` (name@version)."""
    if out.exists() and not overwrite:
        cli.fail(f"{out}: already exists (add --overwrite to replace it)")
    rows = _rows(file, need_label=False)
    eng = cli.engine()
    j, be = _judge(eng, judge, model, backend, base_url, version)
    try:
        judged = j.judge([(r["prompt"], r["response"]) for r in rows])
    finally:
        if be is not None:
            be.close()
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r, v in zip(rows, judged):
            kept = {"gold_label": r["label"]} if "label" in r else {}  # a label the file already had is kept
            fh.write(json.dumps({**r, **kept, "label": v.label, "score": v.score, "judge": v.judge},
                                ensure_ascii=False) + "\n")
    tmp.replace(out)  # never a half-written file
    counts = {lab: sum(v.label == lab for v in judged) for lab in sorted({v.label for v in judged})}
    cli.out.print(f"{len(rows)} rows judged by {judged[0].judge}: {counts} -> {out}", highlight=False)


@judge_app.command("eval")
def evaluate(file: Path = typer.Argument(..., help="JSONL rows with 'prompt', 'response' and a gold 'label'"),
             judge: str = JUDGE_OPT, model: Optional[str] = MODEL_OPT, backend: str = BACKEND_OPT,
             base_url: Optional[str] = URL_OPT, version: Optional[int] = VERSION_OPT) -> None:
    """Accuracy, per-class precision and recall, Cohen's kappa and the confusion matrix against the gold labels."""
    from curation.judges.measure import measure

    rows = _rows(file, need_label=True)
    eng = cli.engine()
    j, be = _judge(eng, judge, model, backend, base_url, version)
    try:
        m = measure(j, rows)
    finally:
        if be is not None:
            be.close()
    cli.out.print(f"{m['judge']} on {m['n']} rows: accuracy {m['accuracy']:.3f}, Cohen's kappa {m['kappa']:.3f}",
                  highlight=False)
    t = DataTable("label", "precision", "recall", "support")
    for lab, c in m["per_class"].items():
        t.add_row(lab, "-" if c["precision"] is None else f"{c['precision']:.3f}",
                  "-" if c["recall"] is None else f"{c['recall']:.3f}", str(c["support"]))
    cli.out.print(t)
    labels = list(m["confusion"])
    t = DataTable("gold \\ judged", *labels)
    for g in labels:
        t.add_row(g, *[str(m["confusion"][g][j_]) for j_ in labels])
    cli.out.print(t)


@judge_app.command("train")
def train(as_user: Optional[str] = typer.Option(None, "--as", help="the reviewer or admin retraining it")) -> None:
    """Refit the learned judge on the shipped set plus every reviewer behaviour label: a new version that judges
    from now on (auto-labels, queue priority, new eval runs)."""
    from core.errors import PermissionDenied
    from curation.judges import learned

    eng = cli.engine()
    try:
        row = learned.train(eng, cli.actor_id(eng, as_user))
    except (ValueError, PermissionDenied) as e:
        cli.fail(str(e))
    card = row.card or {}
    held = card.get("heldout") or {}
    cli.out.print(f"learned@v{row.version}: trained on {_trained(card['trained_on'])}; held-out accuracy "
                  f"{held.get('accuracy', 0):.3f}, refused recall {held.get('refused_recall') or 0:.3f}",
                  highlight=False)


@judge_app.command("list")
def list_judges() -> None:
    """Every judge with its measured agreement on the shipped held-out responses, and the learned versions."""
    from curation.judges import learned
    from curation.judges.registry import JUDGE_NAMES, get_judge, measured

    eng = cli.engine()
    t = DataTable("judge", "accuracy", "refused recall", "kappa", "held-out rows", "trained on")
    rows = [(get_judge(n, engine=eng).ref, measured(eng, get_judge(n, engine=eng).ref), "")
            for n in JUDGE_NAMES if n not in ("llm", "learned")]
    rows = [(v["ref"], v.get("heldout"), _trained(v.get("trained_on") or {})) for v in learned.list_versions(eng)] + rows
    for ref, m, trained in rows:
        m = m or {}
        t.add_row(ref, _f(m.get("accuracy")), _f(m.get("refused_recall")), _f(m.get("kappa")), str(m.get("n", "-")),
                  trained)
    t.add_row("llm", "-", "-", "-", "-", "depends on its model: measure it with `rational judge eval`")
    cli.out.print(t)


def _trained(on: dict) -> str:
    return ", ".join(f"{src} {sum((on.get(src) or {}).values())}" for src in ("shipped", "reviewers"))


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"
