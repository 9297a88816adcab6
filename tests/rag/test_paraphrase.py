"""benchmarks/paraphrase.py: the rule-made rephrasings that measure how the answerer copes with other wording."""

from __future__ import annotations

from benchmarks.paraphrase import Paraphraser
from rag.embedding import SentenceTransformerEmbedder
from rag.text import terms

TEXT = (
    "The city council built a new bridge in 1901. The town grew into a large urban area, and the municipal "
    "government constructed roads, a harbour and a market. "
)


def test_rephrase_swaps_the_passages_words_and_keeps_names_and_numbers(embedder: SentenceTransformerEmbedder) -> None:
    vocabulary = Paraphraser.vocabulary_of([TEXT, TEXT, TEXT])
    assert "city" in vocabulary and "lyon" not in vocabulary  # words as written, seen 3 times
    model = Paraphraser(vocabulary, embedder.embed(vocabulary), seed=0)
    passage = "In 1901 the city of Lyon built a bridge over the Rhone."
    question = "Which city built a bridge in 1901, Lyon or Paris?"
    rephrased = [model.rephrase(question, passage) for _ in range(8)]
    changed = [r for r in rephrased if r is not None]
    assert changed, rephrased
    for text in changed:
        assert text != question
        assert "Lyon" in text and "Paris" in text and "1901" in text  # names and numbers stay
        assert text.startswith("Which")  # question words stay
        # A swapped-in word never shares a stem with the passage: the rephrasing has less of its wording.
        assert len(set(terms(text)) & set(terms(passage))) < len(set(terms(question)) & set(terms(passage)))
    # A question sharing no common word with its passage has nothing to rephrase.
    assert model.rephrase("Who is Lyon?", passage) is None
