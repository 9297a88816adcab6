"""Text inside a document that addresses a language model rather than its reader (a prompt injection).

One detector for both answerers: the generated answerer warns about passages that hold such text and drops its
model's sentences that echo it; the extractive answerer warns when it quotes such a sentence.
"""

from __future__ import annotations

import re

from rag.text import sentence_spans
from rag.types import Passage

INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.!?\n]{0,60}\b(instructions?|prompts?|rules|directions|guidelines)\b"
    r"|\b(you are now|system prompt|new instructions?|as an ai\b)"
    r"|\binstead[, ]+(say|reply|respond|answer|write|output|print)\b",
    re.I,
)


def reads_like_instruction(text: str) -> bool:
    """Whether ``text`` reads like an instruction to a model."""
    return INSTRUCTION.search(text) is not None


def instruction_sentences(passages: list[Passage]) -> list[tuple[int, str]]:
    """(passage number, sentence) for every sentence of the passages that reads like an instruction to a model."""
    found = []
    for n, passage in enumerate(passages, start=1):
        for start, end in sentence_spans(passage.text):
            if reads_like_instruction(passage.text[start:end]):
                found.append((n, passage.text[start:end]))
    return found
