"""A self-contained HTML report of an evaluation run.

The aggregates, the outcome classes, plots (PNG in base64, the reliability diagram among them), the worst questions
of each class and every question in a table filtered by a few lines of inline script (no external files).
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from rag.evaluation.metrics import (
    ANSWERED_UNANSWERABLE,
    CORRECT,
    FALSE_REFUSAL,
    OUTCOMES,
    RETRIEVAL_MISS,
    WRONG_SENTENCE,
    EvaluationRun,
    QuestionResult,
)

# Worst questions shown per outcome class; the table of every question cuts long answers to keep the file small.
WORST = 5
TABLE_ANSWER_CHARS = 300
TABLE_REFERENCE_CHARS = 120
_MEANING = {
    RETRIEVAL_MISS: "answerable, answered wrong, and no gold document among the first k retrieved (k = the passages "
    "the answer read)",
    WRONG_SENTENCE: "answerable, a gold document retrieved, but the answer is wrong (no reference answer in it; "
    "without references, no citation of gold evidence)",
    FALSE_REFUSAL: "answerable but refused, whatever was retrieved",
    ANSWERED_UNANSWERABLE: "unanswerable but answered",
    CORRECT: "answerable and answered right, or unanswerable and refused",
}
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
    "ece",
    "ece_answered",
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

    calibrated = run.aggregates.get("calibration")
    if calibrated:
        images["Reliability diagram"] = _reliability_png(calibrated, plt)
    return images


def _reliability_png(calibrated: dict[str, Any], plt: Any) -> str:
    """Accuracy against mean confidence per bin (the diagonal is perfect calibration), above the bin counts."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], ls="--", color="#999", label="perfect calibration")
    for key, label, colour in (("bins", "all with a confidence", "#c44e52"), ("bins_answered", "answered", "#4c72b0")):
        full = [b for b in calibrated[key] if b["n"]]
        if full:
            top.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o-", color=colour, label=label)
    top.set_ylabel("observed accuracy")
    top.set_ylim(-0.02, 1.02)
    ece_answered = calibrated["ece_answered"]
    answered = "n/a" if ece_answered is None else f"{ece_answered:.3f}"
    top.set_title(f"Reliability: ECE {calibrated['ece']:.3f} (answered only: {answered})")
    top.legend(loc="upper left", fontsize=8)
    bins = calibrated["bins"]
    width = bins[0]["hi"] - bins[0]["lo"]
    bottom.bar([b["lo"] for b in bins], [b["n"] for b in bins], width=width, align="edge", color="#c44e52")
    bottom.bar(
        [b["lo"] for b in calibrated["bins_answered"]],
        [b["n"] for b in calibrated["bins_answered"]],
        width=width,
        align="edge",
        color="#4c72b0",
    )
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (10 equal-width bins)")
    bottom.set_ylabel("questions")
    return _png(fig)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) or abs(value) < 1 else f"{value:.1f}"
    return html.escape(str(value))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _question_block(result: QuestionResult) -> str:
    metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(result.metrics.items()))
    cites = "".join(
        f"<li class='{'gold' if c['gold'] else 'miss'}'>[{c['n']}] <code>{html.escape(c['doc_id'])}</code> "
        f"({c['start']}-{c['end']}): {html.escape(c['quote'])}</li>"
        for c in result.citations
    )
    refs = html.escape(" | ".join(result.references[:5])) or "n/a"
    return (
        f"<div class='q'><h4>{html.escape(result.id)}: {html.escape(result.question)}</h4>"
        f"<p><b>answer</b>{' (refused)' if result.no_answer else ''}: {html.escape(result.answer)}</p>"
        f"<p><b>references</b>: {refs}{' (unanswerable)' if result.unanswerable else ''}</p>"
        f"<p><b>gold docs</b>: {html.escape(', '.join(result.gold_doc_ids)) or 'n/a'}; "
        f"<b>retrieved</b>: {html.escape(', '.join(result.ranked_doc_ids[:5]))}</p>"
        f"<ul>{cites}</ul><p class='m'>{metrics}; confidence {_fmt(result.confidence)}; "
        f"latency {result.latency_ms:.0f} ms</p></div>"
    )


def worst_by_outcome(results: list[QuestionResult], per_class: int = WORST) -> dict[str, list[QuestionResult]]:
    """The worst questions of each outcome class: lowest containment first (those without one last), then badness."""

    def key(result: QuestionResult) -> tuple[float, float, str]:
        return (result.metrics.get("containment", 2.0), -result.badness, result.id)

    return {name: sorted((r for r in results if r.outcome == name), key=key)[:per_class] for name in OUTCOMES}


def _outcome_section(run: EvaluationRun, per_class: int) -> str:
    counts = run.aggregates.get("outcomes") or {}
    total = sum(counts.values()) or 1
    rows = "".join(
        f"<tr><td class='o-{name}'>{name}</td><td>{counts.get(name, 0)}</td>"
        f"<td>{counts.get(name, 0) / total:.1%}</td><td>{html.escape(_MEANING[name])}</td></tr>"
        for name in OUTCOMES
    )
    worst = []
    for name, chosen in worst_by_outcome(run.results, per_class).items():
        if chosen:
            blocks = "".join(_question_block(r) for r in chosen)
            worst.append(f"<h3 class='o-{name}'>{name} ({len(chosen)} of {counts.get(name, 0)})</h3>{blocks}")
    return (
        "<h2>Outcomes</h2><table><tr><th>class</th><th>questions</th><th>share</th><th>meaning</th></tr>"
        f"{rows}</table>"
        f"<h2>Worst questions per class</h2><p>Within each class, lowest containment first, then by 1 - mean(nDCG@10, "
        "F1, citation recall, refusal correct) over those that apply. Green citations point at gold evidence, red "
        f"ones do not.</p>{''.join(worst) or '<p>none</p>'}"
    )


def _calibration_section(run: EvaluationRun) -> str:
    calibrated = run.aggregates.get("calibration")
    if not calibrated:
        return "<h2>Calibration</h2><p>No answer carries a confidence: nothing to calibrate.</p>"
    rows = "".join(
        f"<tr><td>{b['lo']:.1f}-{b['hi']:.1f}</td><td>{b['n']}</td><td>{_fmt(b['confidence'])}</td>"
        f"<td>{_fmt(b['accuracy'])}</td></tr>"
        for b in calibrated["bins"]
    )
    return (
        f"<h2>Calibration</h2><p>{calibrated['questions']} questions carry a confidence ({calibrated['answered']} "
        f"answered): ECE <b>{_fmt(calibrated['ece'])}</b>, answered only {_fmt(calibrated['ece_answered'])}; mean "
        f"confidence {_fmt(calibrated['mean_confidence'])}, accuracy {_fmt(calibrated['accuracy'])}. Right means: "
        "answerable, answered, and containing a reference answer (citing gold evidence when it has no references); "
        "a refusal and any answer to an unanswerable question are not right. ECE = sum over the 10 bins of "
        "(n_bin / n) * |mean confidence - accuracy|.</p>"
        f"<table><tr><th>confidence</th><th>questions</th><th>mean confidence</th><th>accuracy</th></tr>{rows}</table>"
    )


def _table_row(result: QuestionResult) -> str:
    answer = "(refused)" if result.no_answer else _clip(result.answer, TABLE_ANSWER_CHARS)
    refs = "(unanswerable)" if result.unanswerable else _clip(" | ".join(result.references[:3]), TABLE_REFERENCE_CHARS)
    retrieved = {True: "yes", False: "no", None: ""}[result.gold_retrieved]
    cells = [
        html.escape(result.id),
        html.escape(result.outcome),
        html.escape(result.question),
        html.escape(answer),
        html.escape(refs),
        retrieved,
        _fmt(result.metrics.get("containment")),
        _fmt(result.metrics.get("f1")),
        _fmt(result.confidence),
        f"{result.latency_ms:.0f}",
    ]
    return f"<tr data-outcome='{html.escape(result.outcome)}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


# Filters the rows of #questions by the text box (any cell) and the class dropdown; inline, nothing fetched.
_FILTER_SCRIPT = """<script>
(function () {
  var box = document.getElementById("q-text"), pick = document.getElementById("q-class");
  var rows = document.querySelectorAll("#questions tbody tr"), shown = document.getElementById("q-shown");
  function apply() {
    var text = box.value.toLowerCase(), name = pick.value, n = 0;
    for (var i = 0; i < rows.length; i++) {
      var ok = (!name || rows[i].getAttribute("data-outcome") === name) &&
        (!text || rows[i].textContent.toLowerCase().indexOf(text) >= 0);
      rows[i].style.display = ok ? "" : "none";
      if (ok) n++;
    }
    shown.textContent = n + " of " + rows.length + " shown";
  }
  box.addEventListener("input", apply);
  pick.addEventListener("change", apply);
  apply();
})();
</script>"""


def _table_section(run: EvaluationRun) -> str:
    counts = run.aggregates.get("outcomes") or {}
    options = "".join(f"<option value='{n}'>{n} ({counts.get(n, 0)})</option>" for n in OUTCOMES)
    head = "".join(
        f"<th>{h}</th>"
        for h in ("id", "class", "question", "answer", "references", "gold in top k", "cont.", "F1", "conf.", "ms")
    )
    body = "\n".join(_table_row(r) for r in run.results)
    return (
        f"<h2>Every question</h2><p><input id='q-text' type='search' placeholder='filter: any text' size='30'> "
        f"<select id='q-class'><option value=''>every class</option>{options}</select> <span id='q-shown'></span>"
        f"</p><table id='questions'><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
        f"{_FILTER_SCRIPT}"
    )


def render_html(run: EvaluationRun, *, title: str = "Evaluation report", worst: int = WORST) -> str:
    """The whole report as one HTML string (no external files); ``worst`` questions are shown per outcome class."""
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
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}}
figure{{display:inline-block;margin:0 1em 1em 0}}.q{{border-top:1px solid #ddd;padding:.3em 0}}
li.gold{{color:#1a7f37}}li.miss{{color:#b42318}}.m{{color:#666;font-size:90%}}
#questions{{font-size:85%}}#questions td:nth-child(3),#questions td:nth-child(4){{max-width:28em}}
.o-correct{{color:#1a7f37}}.o-retrieval_miss,.o-wrong_sentence,.o-false_refusal,.o-answered_unanswerable{{color:#b42318}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Setup</h2><table>{setup}</table>
<h2>Aggregates ({agg.get("questions", 0)} questions)</h2>
<table><tr><th>metric</th><th>value</th><th>questions it applies to</th></tr>{rows}</table>
{_outcome_section(run, worst)}
<h2>Plots</h2>{images}
{_calibration_section(run)}
{_table_section(run)}
</body></html>
"""
