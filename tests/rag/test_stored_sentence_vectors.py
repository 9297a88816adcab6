"""In-context sentence vectors: computed at ingestion, stored with each chunk in Chroma, and used by the answerer so
that answering runs the model over no sentence; chunks stored without them are embedded on demand."""

from __future__ import annotations

import json

import numpy as np

from rag.factory import build_service
from rag.store import decode_vectors, encode_vectors
from rag.text import sentence_spans
from tests.conftest import SEEDS


def _seed_questions(*, unanswerable: bool) -> list[str]:
    items = [json.loads(x) for x in (SEEDS / "questions.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    return [x["question"] for x in items if bool(x.get("unanswerable")) == unanswerable]


def _on_topic_questions() -> list[str]:
    return _seed_questions(unanswerable=False)


def test_encode_decode_round_trip_is_fp16_exact() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 384)).astype(np.float32)
    decoded = decode_vectors(encode_vectors(vectors))
    assert decoded.dtype == np.float32 and decoded.shape == (5, 384)
    np.testing.assert_array_equal(decoded, vectors.astype(np.float16).astype(np.float32))


def test_stored_vectors_round_trip_through_chroma(seeded_settings, embedder) -> None:  # type: ignore[no-untyped-def]
    service = build_service(seeded_settings, embedder=embedder)
    question = _on_topic_questions()[0]
    passages = service.retriever.retrieve(question, top_k=5, query_embedding=embedder.embed_query(question))
    assert passages
    for passage in passages:
        spans = sentence_spans(passage.text)
        stored = passage.sentence_vectors
        assert stored.shape == (len(spans), 384)
        # The same chunk embedded again gives the same in-context vectors, up to fp16 rounding.
        _, fresh = embedder.embed_chunks([passage.text], [spans])
        np.testing.assert_allclose(stored, fresh[0], atol=2e-3)
        np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=2e-3)
        # An in-context vector is about its own sentence: on average closer to that sentence embedded alone than to
        # the chunk's other sentences (it also absorbs its context, so not always; see README "Sentence vectors").
        alone = embedder.embed([passage.text[s:e] for s, e in spans])
        if len(spans) > 1:
            sims = stored @ alone.T
            off_diagonal = sims[~np.eye(len(spans), dtype=bool)]
            assert np.diag(sims).mean() > off_diagonal.mean() + 0.1


def test_answers_use_stored_vectors_without_embedding_sentences(seeded_settings, embedder) -> None:  # type: ignore[no-untyped-def]
    service = build_service(seeded_settings, embedder=embedder)
    store_text = {}
    for question in _on_topic_questions():
        answer = service.ask(question)
        assert not answer.no_answer, question
        assert answer.confidence is not None and answer.confidence >= service.answerer.min_confidence
        for c in answer.citations:
            if c.doc_id not in store_text:
                store_text[c.doc_id] = service.get_document(c.doc_id).text
            assert store_text[c.doc_id][c.start : c.end] == c.quote  # offsets stay exact
    for question in _seed_questions(unanswerable=True):
        answer = service.ask(question)
        assert answer.no_answer and answer.confidence is not None, question
        assert answer.confidence < service.answerer.min_confidence
    assert service.sentence_vectors.misses == 0  # every sentence vector came from the store


def test_passages_without_stored_vectors_are_embedded_on_demand(seeded_settings, embedder) -> None:  # type: ignore[no-untyped-def]
    service = build_service(seeded_settings, embedder=embedder)
    question = _on_topic_questions()[0]
    q_emb = embedder.embed_query(question)
    passages = service.retriever.retrieve(question, top_k=5, query_embedding=q_emb)
    lexical = service.retriever.lexical()
    stored = service.answerer.answer(question, passages, q_emb, idf=lexical.idf_of)
    stripped = [p.model_copy(update={"sentence_vectors": None}) for p in passages]
    on_demand = service.answerer.answer(question, stripped, q_emb, idf=lexical.idf_of)
    assert service.sentence_vectors.misses > 0  # an old index's chunks: the sentences were embedded now
    assert not on_demand.no_answer and on_demand.citations and stored.citations
