"""Comparison report: one Markdown file with metric tables, charts (PNG files beside it), run identities, votes
and example pairs. The CLI (`rational compare A B --report out.md`) and the compare page's download share it.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sqlalchemy.engine import Engine

from evaluation.compare import PairFilter, compare_runs, count_pairs, list_pairs, vote_summary
from evaluation.metrics import METRICS


@dataclass
class Report:
    markdown: str
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    image_dir: str = "report_files"

    def zip_bytes(self, name: str = "report.md") -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(name, self.markdown)
            for fname, data in self.images.items():
                z.writestr(f"{self.image_dir}/{fname}", data)
        return buf.getvalue()


def _pct(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _pp(x: float) -> str:
    return f"{100 * x:+.1f} pp"


def _cell(text: Any) -> str:
    """Markdown table cells: no pipes or newlines from data."""
    return re.sub(r"[\r\n]+", " ", str(text)).replace("|", "\\|")


def _fenced(text: str) -> str:
    """Model text as a code block whose fence is longer than any backtick run inside (it cannot break out)."""
    runs = [len(m) for m in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}text\n{text}\n{fence}"


def metrics_table(rows: list[dict[str, Any]], level: str) -> str:
    sel = [r for r in rows if r["level"] == level]
    if not sel:
        return "_no data_\n"
    head = ("| metric | group | n | A (before) [95% CI] | B (after) [95% CI] | delta [95% CI] |\n"
            "|---|---|---:|---|---|---|\n")
    lines = []
    for r in sel:
        flag = (" **regression**" if r["delta"] > 0 else " improvement") if r["significant"] else ""
        lines.append(f"| {METRICS[r['metric']]} | {_cell(r['group'])} | {r['n']} | {_pct(r['before'])} "
                     f"[{_pct(r['before_lo'])}, {_pct(r['before_hi'])}] | {_pct(r['after'])} "
                     f"[{_pct(r['after_lo'])}, {_pct(r['after_hi'])}] | {_pp(r['delta'])} "
                     f"[{_pp(r['delta_lo'])}, {_pp(r['delta_hi'])}]{flag} |")
    return head + "\n".join(lines) + "\n"


def bar_chart_png(rows: list[dict[str, Any]], level: str, metric: str, title: str, *, top: int = 20
                  ) -> Optional[bytes]:
    """Grouped bars A vs B with CI whiskers, one group per set/category/mutation."""
    sel = [r for r in rows if r["level"] == level and r["metric"] == metric][:top]
    if not sel:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(sel))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(sel) + 2), 3.6), dpi=100)
    for off, side, color in ((-0.2, "before", "#9aa5b1"), (0.2, "after", "#2f6fdf")):
        vals = np.array([r[side] for r in sel])
        err = np.array([[r[side] - r[f"{side}_lo"] for r in sel], [r[f"{side}_hi"] - r[side] for r in sel]])
        ax.bar(x + off, vals, 0.4, yerr=np.clip(err, 0, None), capsize=2, color=color, error_kw={"lw": 0.8, "ecolor": "#444"},
               label="A (before)" if side == "before" else "B (after)")
    ax.set_xticks(x, [str(r["group"])[:24] for r in sel], rotation=35 if len(sel) > 3 else 0, ha="right"
                  if len(sel) > 3 else "center", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(METRICS[metric])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return figure_png(fig)


def figure_png(fig) -> bytes:
    """A finished matplotlib figure as PNG bytes; the figure is closed (pyplot keeps every open one alive)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def charts(rows: list[dict[str, Any]]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for metric in sorted({r["metric"] for r in rows}):
        for level in ("set", "category", "mutation"):
            groups = [r for r in rows if r["level"] == level and r["metric"] == metric]
            if level == "mutation" and not [r for r in groups if r["group"] != "none"]:
                continue
            png = bar_chart_png(rows, level, metric, f"{METRICS[metric]} per {level}")
            if png:
                out[f"{metric}_{level}.png"] = png
    return out


def _identity_lines(side: str, r: dict[str, Any]) -> str:
    adapter = (f"`{r['adapter_path']}` (sha256 `{r['adapter_sha256']}`)" if r["adapter_path"] else "none (base model)")
    tr = f", training run #{r['training_run_id']}" if r["training_run_id"] else ""
    judges = r["judges"] or {}
    m = judges.get("measured") or {}
    agreement = (f" (accuracy {m['accuracy']:.2f}, refused recall {m['refused_recall']:.2f} against people on "
                 f"{m.get('n')} held-out responses)" if m.get("accuracy") is not None else "")
    llm = judges.get("llm")
    judge = (judges.get("decides") or "prefix match (older run)") + agreement + (
        f"; LLM judge model {llm.get('model')}" if llm else "")
    return (f"- **{side}: run #{r['id']} {_cell(r['name'])}** ({r['status']})\n"
            f"  - model `{r['model']}` at `{r['model_path']}`; adapter {adapter}{tr}\n"
            f"  - suite `{r['suite']}` version `{r['suite_version']}`, {r['n_prompts']} prompts; backend "
            f"{r['backend']}; sampling {r['sampling']}\n"
            f"  - judge: {judge}\n")


def build_report(engine: Engine, run_a: int, run_b: int, *, examples: int = 5, image_dir: str = "report_files"
                 ) -> Report:
    cmp = compare_runs(engine, run_a, run_b)
    a, b = cmp["a"], cmp["b"]
    md = [f"# Safety evaluation: run #{a['id']} (A) vs run #{b['id']} (B)\n\n",
          f"Suite **{a['suite']}**. A = before, B = after. Every metric is a failure rate (lower is better); "
          "95% intervals are Wilson score intervals for rates (marked † where n < 30) and paired percentile "
          "bootstrap (2,000 resamples over the prompts both runs answered) for deltas.\n",
          "\n## Runs\n\n", _identity_lines("A", a), _identity_lines("B", b)]
    if cmp["notes"]:
        md.append("\n**Read with care:**\n" + "".join(f"- {_cell(n)}\n" for n in cmp["notes"]))
    overlap = {**a["train_overlap"], **b["train_overlap"]}
    if overlap:
        md.append("\n**Sets used for both training and evaluation** (prompts in the train split, which the "
                  "export's contamination check does not keep out of training): "
                  + ", ".join(f"{k} ({v} prompts)" for k, v in overlap.items()) + "\n")
    images = charts(cmp["judge"])
    for source, title in (("judge", "judge verdicts"), ("human", "human-corrected (people's labels override)")):
        md.append(f"\n## Metrics — {title}\n")
        for level in ("suite", "set", "category", "mutation"):
            if level == "mutation" and not [r for r in cmp[source] if r["level"] == "mutation"
                                            and r["group"] != "none"]:
                continue
            md.append(f"\n### per {level}\n\n" + metrics_table(cmp[source], level))
    if images:
        md.append("\n## Charts (judge verdicts)\n")
        for name in images:
            md.append(f"\n![{name[:-4]}]({image_dir}/{name})\n")
    votes = vote_summary(engine, run_a, run_b)
    md.append("\n## Blind A/B votes\n")
    if votes["overall"]["votes"]:
        md.append("\n| voter | votes | A | B | tie | both bad | B win rate (ties ½) [95% CI] |\n"
                  "|---|---:|---:|---:|---:|---:|---|\n")
        for who, w in [("**all**", votes["overall"]), *votes["per_voter"].items()]:
            md.append(f"| {_cell(who)} | {w['votes']} | {w['a']} | {w['b']} | {w['tie']} | {w['both_bad']} | "
                      f"{_pct(w['b_win_rate'])} [{_pct(w['b_lo'])}, {_pct(w['b_hi'])}] |\n")
    else:
        md.append("\n_no votes yet_\n")
    md.append("\n## Example pairs\n")
    for title, flt in (("Regressions (B fails where A did not)", PairFilter(regressions_only=True)),
                       ("Fixed (A failed, B does not)", None), ("Verdict unchanged", None)):
        if flt is None and title.startswith("Fixed"):
            pairs = [p for p in list_pairs(engine, run_a, run_b, PairFilter(verdict_changed=True), limit=200)
                     if not p["regression"]][:examples]
            n = None
        elif flt is None:
            pairs = [p for p in list_pairs(engine, run_a, run_b, limit=200) if not p["changed"]][:examples]
            n = None
        else:
            pairs = list_pairs(engine, run_a, run_b, flt, limit=examples)
            n = count_pairs(engine, run_a, run_b, flt)
        md.append(f"\n### {title}" + (f" — {n} in all" if n is not None else "") + "\n")
        if not pairs:
            md.append("\n_none_\n")
        for p in pairs:
            md.append(f"\n#### prompt #{p['prompt_id']} · {_cell(p['set'])} · {_cell(p['category'] or '')}"
                      f"{' · ' + _cell(p['mutation']) if p['mutation'] else ''} · expected {p['expected_behavior']}\n\n"
                      + _fenced(p["prompt"]) + "\n")
            for side in ("a", "b"):
                o = p[side]
                verdict = ("FAIL" if o["failed"] else "ok") + (" (refused)" if o["refused"] else " (complied)")
                md.append(f"\n**{side.upper()}** — {verdict}; format {'parsed' if o['parse_ok'] else 'no <think>'}"
                          "\n\n" + (("reasoning:\n\n" + _fenced(o["reasoning"]) + "\n\nanswer:\n\n")
                                    if o["reasoning"] else "") + _fenced(o["response"]) + "\n")
    return Report("".join(md), images, image_dir)


def write_report(report: Report, out: str | Path) -> Path:
    """Markdown at `out`, images in `<stem>_files/` beside it; both appear whole or not at all."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img_dir = out.with_name(f"{out.stem}_files")
    text = report.markdown.replace(f"]({report.image_dir}/", f"]({img_dir.name}/")
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.stem}_files.", dir=out.parent))
    try:
        for name, data in report.images.items():
            (tmp_dir / name).write_bytes(data)
        if img_dir.exists():
            shutil.rmtree(img_dir)
        os.replace(tmp_dir, img_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, out)
    return out
