"""`rag eval` end to end (real model, real Chroma) and POST /eval over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from api.cli import main
from tests.conftest import ROOT, SEED_DOC_ID, LiveServer, copy_seeds
from tests.rag.test_evaluate import _tiny_beir


@pytest.mark.slow
def test_eval_cli_on_seed_reference_set_writes_json_and_html(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            str(ROOT / "seeds" / "questions.jsonl"),
            "--corpus",
            str(copy_seeds(tmp_path / "s")),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    run = json.loads((out / "eval.json").read_text())
    agg = run["aggregates"]
    assert agg["questions"] == len(run["results"]) == 16
    # The seeds' own set: every on-topic question answered from the right document, every off-topic one refused.
    assert agg["refusal_precision"] == 1.0 and agg["refusal_recall"] == 1.0
    assert agg["hit@1"] == 1.0 and agg["marker_error"] == 0.0 and agg["containment"] == 1.0
    assert agg["citation_recall"] >= 0.8
    why = next(r for r in run["results"] if r["id"] == "seed-why-attack")
    # A gold reason is cited (any further sentence counts against citation precision, as it should).
    assert sum(c["gold"] for c in why["citations"]) >= 1
    assert why["metrics"]["citation_recall"] > 0
    assert all(c["doc_id"] == SEED_DOC_ID for c in why["citations"])
    assert agg["latency_p95_ms"] >= agg["latency_p50_ms"] > 0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    # Every question is right: each one lands in the class "correct", and the table lists all 16.
    assert agg["outcomes"]["correct"] == sum(agg["outcomes"].values()) == 16
    assert "Latency histogram" in html and "Worst" in html and "seed-" in html
    assert html.count("<tr data-outcome='correct'>") == 16 and "id='q-class'" in html
    # Self-contained: the table's filter script is inline, nothing is fetched.
    assert "<script src" not in html and "http" not in html.split("<body>")[0].lower().replace("http-equiv", "")


def test_eval_cli_reads_beir_folder_as_its_own_corpus(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    root = _tiny_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    assert main(["eval", str(root), "--split", "test", "--out", str(out), "--data-dir", str(tmp_path / "d")]) == 0
    run = json.loads((out / "eval.json").read_text())
    assert [r["id"] for r in run["results"]] == ["q1", "q2"]
    assert run["aggregates"]["hit@1"] == 1.0
    assert run["results"][0]["ranked_doc_ids"][0] == "d1"
    # The store in --data-dir is reused: a second run embeds nothing new.
    assert main(["eval", str(root), "--out", str(out), "--data-dir", str(tmp_path / "d"), "--limit", "1"]) == 0
    assert len(json.loads((out / "eval.json").read_text())["results"]) == 1


def test_eval_cli_unknown_split_fails_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tiny_beir(tmp_path / "tiny")
    assert main(["eval", str(root), "--split", "dev", "--out", str(tmp_path / "o")]) == 1
    assert "no qrels for split 'dev'" in capsys.readouterr().err


def _items(n: int) -> list[dict[str, object]]:
    return [{"id": f"q{i}", "question": "Who heads the Special VRAEM Commando unit?"} for i in range(n)]


def test_eval_route_scores_inline_set(seeded_server: LiveServer) -> None:
    items = [
        {
            "id": "commander",
            "question": "Who heads the Special VRAEM Commando unit?",
            "answers": ["Leonardo Longa Lopez"],
            "gold_doc_ids": [SEED_DOC_ID],
        },
        {"id": "off", "question": "How do I bake sourdough bread at home?", "unanswerable": True},
    ]
    response = httpx.post(f"{seeded_server.url}/eval", json={"items": items}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["id"] for r in body["results"]] == ["commander", "off"]
    assert body["aggregates"]["containment"] == 1.0 and body["aggregates"]["hit@1"] == 1.0
    assert body["aggregates"]["refusal_recall"] == 1.0
    assert body["results"][1]["no_answer"] is True


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"items": _items(51)}, "at most 50"),
        ({"items": []}, "items"),
        ({"items": [{"id": "a", "question": "q?"}, {"id": "a", "question": "r?"}]}, "unique"),
        ({"items": [{"id": "a"}]}, "question: field required"),
    ],
)
def test_eval_route_bad_set_returns_422(seeded_server: LiveServer, payload: object, fragment: str) -> None:
    response = httpx.post(f"{seeded_server.url}/eval", json=payload, timeout=60)
    assert response.status_code == 422
    assert fragment in response.json()["detail"]["message"]
