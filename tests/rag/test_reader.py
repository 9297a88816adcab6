"""The answer reader (MiniLM fine-tuned as a cross-encoder): its committed weights load into both runtimes and
agree, it reads a question against a sentence (not just their shared words), and the answerer uses it only with the
fit that says how."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.answering.extractive import ExtractiveAnswerer
from rag.answering.reader import WEIGHTS, Reader, default_reader, load_deltas, pair_ids
from rag.answering.scoring import READER_FEATURES, AnswerModel, combine, read_candidates, reader_features
from rag.embedding import adapted_encoder, onnx_available

QUESTION = "In what year did the company move its headquarters to Denver?"
SENTENCES = [
    "The company's headquarters in Denver is a glass tower with thirty floors.",
    "In 1998 the firm relocated its head office from Omaha to Denver.",
    "Denver is the capital of Colorado and its most populous city.",
]


def test_reader_weights_are_committed_with_their_fit() -> None:
    assert WEIGHTS.is_file(), "run make train-reader"
    assert WEIGHTS.stat().st_size < 3_000_000  # small enough to live in the repository
    model = AnswerModel.default()
    assert model.reader is not None, "answer_weights.READER is missing: run make train-answerer"
    assert model.reader.confidence.weights.shape[0] > len(READER_FEATURES)
    assert 0.0 < model.reader.min_confidence < 1.0
    assert model.reader.candidates >= 1


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime is not installed")
def test_reader_onnx_and_numpy_compute_the_same_logits() -> None:
    onnx = Reader(backend="onnx").logits(QUESTION, SENTENCES)
    numpy = Reader(backend="numpy").logits(QUESTION, SENTENCES)
    np.testing.assert_allclose(onnx, numpy, atol=2e-3)


def test_reader_prefers_the_sentence_that_answers_over_the_one_sharing_words() -> None:
    reader = default_reader()
    assert reader is not None
    logits = reader.logits(QUESTION, SENTENCES)
    assert int(np.argmax(logits)) == 1, logits


def test_pair_ids_cap_the_question_and_the_pair() -> None:
    ids = pair_ids("why " * 100, "because " * 300)
    assert len(ids) <= 96
    assert ids.count(ids[-1]) == 2  # [SEP] after the question and at the end


def test_adapted_encoder_rejects_a_delta_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="no weight"):
        adapted_encoder({"encoder.layer.0.attention.self.query.weight": np.zeros((3, 3), dtype=np.float32)})


def test_load_deltas_gives_full_size_low_rank_updates() -> None:
    deltas, head, _ = load_deltas(WEIGHTS)
    delta = deltas["encoder.layer.0.attention.self.query.weight"]
    assert delta.shape == (384, 384)
    assert np.linalg.matrix_rank(delta) <= 32
    assert head.shape == (384,)


def test_combine_chooses_among_the_read_sentences() -> None:
    logits = np.array([3.0, 2.0, 1.0, 0.5], dtype=np.float32)
    read = read_candidates(logits, 2)
    combined = combine(logits, read, np.array([-2.0, 4.0], dtype=np.float32), weight=1.0)
    assert int(np.argmax(combined)) == 1  # the reader overturned the scorer's first choice
    assert combined[2] < combined[read].min()  # an unread sentence cannot win
    row = reader_features(combined, read, np.array([-2.0, 4.0], dtype=np.float32))
    np.testing.assert_allclose(row, [4.0, 4.0, 6.0, -2.0])


def test_answerer_uses_the_reader_operating_point_only_with_the_reader(tmp_path: Path) -> None:
    model = AnswerModel.default()
    assert model.reader is not None
    without = ExtractiveAnswerer(embed=lambda texts: np.zeros((len(texts), 384), dtype=np.float32), reader=None)
    assert without.min_confidence == model.min_confidence
    with_reader = ExtractiveAnswerer(
        embed=lambda texts: np.zeros((len(texts), 384), dtype=np.float32), reader=default_reader()
    )
    assert with_reader.min_confidence == model.reader.min_confidence
