"""A self-contained HTML report of an evaluation run: aggregates, plots (PNG in base64) and the worst questions."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from rag.evaluation.metrics import EvaluationRun, QuestionResult

WORST = 15
_ORDER = [
    "hit@1",
    "hit@5",
    "hit@10",
    "mrr@10",
    "ndcg@10",
    "recall@100",
    "exact_match",
    "f1",
    "containment",
    "citation_recall",
    "citation_precision",
    "marker_error",
    "refusal_precision",
    "refusal_recall",
    "refused",
    "latency_p50_ms",
    "latency_p95_ms",
]


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(run: EvaluationRun) -> dict[str, str]:
    """Base64 PNGs: the latency histogram and the per-question score distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, str] = {}
    latencies = [r.latency_ms for r in run.results]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(latencies, bins=min(40, max(5, len(latencies) // 3 or 1)), color="#4c72b0")
    ax.set_xlabel("latency per question (ms)")
    ax.set_ylabel("questions")
    ax.set_title("Latency")
    images["Latency histogram"] = _png(fig)

    names = [n for n in ("ndcg@10", "mrr@10", "f1", "containment", "citation_recall", "citation_precision")]
    present = [n for n in names if any(n in r.metrics for r in run.results)]
    if present:
        fig, ax = plt.subplots(figsize=(6, 3))
        data = [[r.metrics[n] for r in run.results if n in r.metrics] for n in present]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(present) + 1), present, rotation=20)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title("Per-question scores (box: quartiles, triangle: mean)")
        images["Score distributions"] = _png(fig)

        fig, ax = plt.subplots(figsize=(6, 3))
        means = [run.aggregates.get(n) or 0.0 for n in present]
        ax.barh(present, means, color="#55a868")
        ax.set_xlim(0, 1)
        for y, value in enumerate(means):
            ax.text(min(value + 0.01, 0.9), y, f"{value:.3f}", va="center")
        ax.set_title("Means")
        images["Means"] = _png(fig)
    return images


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) or abs(value) < 1 else f"{value:.1f}"
    return html.escape(str(value))


def _question_block(result: QuestionResult) -> str:
    metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(result.metrics.items()))
    cites = "".join(
        f"<li class='{'gold' if c['gold'] else 'miss'}'>[{c['n']}] <code>{html.escape(c['doc_id'])}</code> "
        f"({c['start']}-{c['end']}): {html.escape(c['quote'])}</li>"
        for c in result.citations
    )
    refs = html.escape(" | ".join(result.references[:5])) or "n/a"
    return (
        f"<div class='q'><h3>{html.escape(result.id)}: {html.escape(result.question)}</h3>"
        f"<p><b>answer</b>{' (refused)' if result.no_answer else ''}: {html.escape(result.answer)}</p>"
        f"<p><b>references</b>: {refs}{' (unanswerable)' if result.unanswerable else ''}</p>"
        f"<p><b>gold docs</b>: {html.escape(', '.join(result.gold_doc_ids)) or 'n/a'}; "
        f"<b>retrieved</b>: {html.escape(', '.join(result.ranked_doc_ids[:5]))}</p>"
        f"<ul>{cites}</ul><p class='m'>{metrics}; latency {result.latency_ms:.0f} ms</p></div>"
    )


def render_html(run: EvaluationRun, *, title: str = "Evaluation report", worst: int = WORST) -> str:
    """The whole report as one HTML string (no external files)."""
    agg = run.aggregates
    counts = agg.get("counts", {})
    rows = "".join(
        f"<tr><td>{name}</td><td>{_fmt(agg[name])}</td><td>{counts.get(name, '')}</td></tr>"
        for name in _ORDER
        if name in agg
    )
    setup = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in run.setup.items())
    images = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'><figcaption>{html.escape(name)}"
        "</figcaption></figure>"
        for name, data in plots(run).items()
    )
    ranked = sorted(run.results, key=lambda r: (-r.badness, r.id))[:worst]
    worst_html = "".join(_question_block(r) for r in ranked)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
figure{{display:inline-block;margin:0 1em 1em 0}}.q{{border-top:1px solid #ddd;padding:.3em 0}}
li.gold{{color:#1a7f37}}li.miss{{color:#b42318}}.m{{color:#666;font-size:90%}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Setup</h2><table>{setup}</table>
<h2>Aggregates ({agg.get("questions", 0)} questions)</h2>
<table><tr><th>metric</th><th>value</th><th>questions it applies to</th></tr>{rows}</table>
<h2>Plots</h2>{images}
<h2>Worst {len(ranked)} questions</h2>
<p>Ordered by 1 - mean(nDCG@10, F1, citation recall, refusal correct) over those that apply.
Green citations point at gold evidence, red ones do not.</p>
{worst_html}
</body></html>
"""
