"""The learned extractive answerer: its fitted models load, its confidence gates refusals, its choices keep every
invariant (exact offsets, markers by first appearance), and a pronoun brings its antecedent."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rag.answering.features import ANSWER_FEATURES, SENTENCE_FEATURES, question_kind
from rag.answering.scoring import AnswerModel, Layer
from rag.config import Settings
from rag.embedding import SentenceTransformerEmbedder
from rag.factory import build_service
from tests.conftest import index_text

PEOPLE = (
    "The observatory was founded in 1881 on the hill above the harbour.\n\n"
    "Margaret Holloway directed it from 1902 to 1931. She discovered the comet that now carries her name in 1911, "
    "while photographing the southern sky.\n\n"
    "The main telescope is a 60-centimetre refractor built in Hamburg. It was restored in 1998.\n"
)


@pytest.fixture(scope="module")
def people_settings(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Settings:
    return index_text(tmp_path_factory.mktemp("people"), embedder, {"observatory.txt": PEOPLE})


def test_answer_model_default_matches_the_features() -> None:
    model = AnswerModel.default()
    assert model.sentence.weights.shape[0] == len(SENTENCE_FEATURES)
    assert model.confidence_layer.weights.shape[0] == len(ANSWER_FEATURES)
    assert 0.0 < model.min_confidence < 1.0
    assert 0.0 < model.extra_sentence_ratio <= 1.0


def test_layer_linear_and_hidden_forms() -> None:
    linear = Layer.from_dict({"mean": [1.0, 0.0], "scale": [2.0, 1.0], "weights": [1.0, -1.0], "bias": 0.5})
    np.testing.assert_allclose(linear(np.array([[3.0, 2.0]], dtype=np.float32)), [1.0 - 2.0 + 0.5])
    hidden = Layer.from_dict(
        {
            "mean": [0.0],
            "scale": [1.0],
            "weights": [[1.0, 2.0]],
            "bias": [0.0, 0.0],
            "out_weights": [1.0, 1.0],
            "out_bias": 0.0,
        }
    )
    np.testing.assert_allclose(hidden(np.array([[0.5]], dtype=np.float32)), [np.tanh(0.5) + np.tanh(1.0)], rtol=1e-6)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Why did the VRAEM faction attack in February?", "why"),
        ("What led to the strike?", "why"),
        ("When was the base attacked?", "when"),
        ("In what year was it restored?", "when"),
        ("What year was it restored?", "when"),
        ("How many guerrillas took part?", "number"),
        ("Who directed the observatory?", "who"),
        ("Where was the telescope built?", "where"),
        ("How does photosynthesis work?", "how"),
        ("Was the telescope restored?", "yesno"),
        ("What is the capital of France?", "other"),
    ],
)
def test_question_kind(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_confidence_gates_the_refusal(people_settings: Settings, embedder: SentenceTransformerEmbedder) -> None:
    service = build_service(people_settings, embedder=embedder)
    on_topic = service.ask("Who directed the observatory?")
    assert not on_topic.no_answer
    assert on_topic.confidence is not None and on_topic.confidence >= service.answerer.min_confidence
    off_topic = service.ask("How do I reverse a list in Python?")
    assert off_topic.no_answer and off_topic.citations == []
    assert off_topic.confidence is not None and off_topic.confidence < service.answerer.min_confidence
    # The operating point is a setting: at 0 nothing is refused, at 1 everything is.
    always = build_service(people_settings.model_copy(update={"min_confidence": 0.0}), embedder=embedder)
    assert not always.ask("How do I reverse a list in Python?").no_answer
    never = build_service(people_settings.model_copy(update={"min_confidence": 1.0}), embedder=embedder)
    refused = never.ask("Who directed the observatory?")
    assert refused.no_answer and refused.confidence == on_topic.confidence


def test_pronoun_answer_brings_its_antecedent(people_settings: Settings, embedder: SentenceTransformerEmbedder) -> None:
    service = build_service(people_settings, embedder=embedder)
    answer = service.ask("Which comet did she discover while photographing the southern sky?")
    assert not answer.no_answer
    quotes = [c.quote for c in answer.citations]
    she = next(i for i, q in enumerate(quotes) if q.startswith("She discovered the comet"))
    # The sentence naming "she" comes with it, before it (one document: reading order).
    assert she > 0 and quotes[she - 1] == "Margaret Holloway directed it from 1902 to 1931."
    text = service.get_document("observatory.txt").text or ""
    for c in answer.citations:
        assert text[c.start : c.end] == c.quote
    markers = [int(m) for m in re.findall(r"\[(\d+)\]", answer.answer)]
    assert markers == list(range(1, len(answer.citations) + 1))


def test_one_sentence_setting_gives_one_citation(
    people_settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    service = build_service(people_settings.model_copy(update={"max_answer_sentences": 1}), embedder=embedder)
    answer = service.ask("Which comet did she discover while photographing the southern sky?")
    assert len(answer.citations) == 1 and answer.citations[0].quote.startswith("She discovered")


def test_answer_margins_hold_whatever_the_score_scale() -> None:
    """The confidence reads retrieval and sentence scores relative to the question's own candidates, so a collection
    whose chunks all score lower (long chunks, one document) keeps the margins SQuAD's paragraphs taught it."""
    from rag.answering.features import analyse_question, answer_features

    question = analyse_question("Who directed the observatory?", lambda term: 2.0)
    features = np.zeros((3, len(SENTENCE_FEATURES)), dtype=np.float32)
    features[:, SENTENCE_FEATURES.index("cosine")] = [0.6, 0.3, 0.2]
    features[:, SENTENCE_FEATURES.index("lexical")] = [1.0, 0.5, 0.0]
    logits = np.array([2.0, 0.5, 0.1], dtype=np.float32)

    def row(dense: list[float], bm25: list[float], shift: float = 0.0) -> dict[str, float]:
        shifted = features.copy()
        shifted[:, SENTENCE_FEATURES.index("cosine")] += shift
        values = answer_features(
            question, shifted, logits, passages_text=["x"], dense=dense, bm25=bm25, top_score=0.5, agree=1.0
        )
        return dict(zip(ANSWER_FEATURES, values.tolist(), strict=True))

    base = row([0.6, 0.4, 0.3], [9.0, 3.0, 1.5])
    lower = row([0.35, 0.15, 0.05], [3.0, 1.0, 0.5], shift=-0.25)  # every dense score 0.25 lower, BM25 a third
    assert lower["top_dense"] < base["top_dense"] and lower["top_bm25"] < base["top_bm25"]
    for name, expected in (("dense_margin", 0.2), ("bm25_margin", 6.0 / 9.0), ("cosine_margin", 0.3)):
        assert base[name] == pytest.approx(expected, abs=1e-6)
        assert lower[name] == pytest.approx(expected, abs=1e-6)
    assert base["lexical_margin"] == pytest.approx(0.5)
    # No passages: margins are 0, not an error.
    assert row([], [])["dense_margin"] == 0.0


def test_confidence_is_labelled_by_the_sentences_the_answer_cites(
    people_settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    """train_answerer labels each question by the sentences the service would cite (answer_sentences), so the
    confidence estimates whether the answer the user gets is right: a second cited sentence that holds the answer
    counts, one left out does not."""
    from benchmarks.answerer_data import Example
    from benchmarks.train_answerer import answer_label
    from rag.answering.extractive import answer_sentences

    service = build_service(people_settings.model_copy(update={"min_confidence": 0.0}), embedder=embedder)
    question = "Who directed the observatory?"
    q_emb = service.embedder.embed_query(question)
    passages = service.retriever.retrieve(question, top_k=service.default_top_k, query_embedding=q_emb)
    found = service.answerer.featurize(question, passages, q_emb, idf=service.retriever.lexical().idf_of)
    logits = service.answerer.model.sentence_logits(found.features)
    ratio, most = service.answerer.model.extra_sentence_ratio, service.answerer.max_sentences
    cited = answer_sentences(found, logits, ratio, most)
    # The service cites exactly these sentences.
    answer = service.ask(question)
    assert sorted(c.quote for c in answer.citations) == sorted(found.sentences[i].text for i in cited)
    assert len(cited) >= 2  # the scorer is torn between two sentences here, and the answer gives both

    def label(holds: int, at: float) -> float:
        labels = np.zeros(len(found.sentences))
        labels[holds] = 1.0
        example = Example("q", question, "a", "validation", "answerable", [], found, labels)
        return answer_label(example, logits, at)

    second = cited[1]
    assert label(second, ratio) == 1.0  # the answer cites it
    assert label(second, 1.01) == 0.0  # at a ratio no second sentence reaches, only the best sentence is cited
    assert label(cited[0], 1.01) == 1.0
    outside = next(i for i in range(len(found.sentences)) if i not in cited)
    assert label(outside, ratio) == 0.0
    unanswerable = Example("q", question, "a", "validation", "adversarial", [], found, np.ones(len(found.sentences)))
    assert answer_label(unanswerable, logits, ratio) == 0.0
