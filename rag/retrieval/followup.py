"""Follow-up questions without a language model: turn "when was he killed?" into a standalone query.

A chat message often leans on the turns before it: a pronoun ("when was *he* killed?"), an ellipsis ("what about
Gabriel?", "and the funding?") or a bare question word ("why?"). The default answerer has no language model to
rewrite such a message, so we resolve it with plain rules over the earlier turns' questions and cited quotes:

- a pronoun is replaced by the key entity of the previous turn (the first proper noun of its question, else its
  topic: the question without its question words), so "when was he killed?" after "Who is Alipio?" becomes "when was Alipio killed?";
- "what about X?" / "and X?" / "how about X?" asks the previous question again about X: the previous question
  with its key entity swapped for X ("Who is Gabriel?"), or with X appended when it had none;
- a message with no content term of its own ("why?", "when?") is asked of the previous question's topic.

The new message keeps the upper hand: the rewritten query is the message with a few words added, and the earlier
turns only enter as ``context``, which retrieval blends into the query embedding at a small weight
(``CONTEXT_WEIGHT``). A message that stands on its own is left untouched, so a change of topic is not dragged
back to the old one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.text import STOPWORDS, terms

# Share of the dense query vector that comes from the earlier turns (the message itself keeps the rest).
CONTEXT_WEIGHT = 0.25
# Cited quotes of the previous turn added to the context, at most.
CONTEXT_QUOTES = 2

_PRONOUNS = frozenset("he she him it they them".split())
_POSSESSIVES = frozenset("his her hers its their theirs".split())
_ELLIPSIS = re.compile(
    r"^\s*(?:and\s+)?(?:what|how)\s+about\s+(?P<x>.+?)\s*[?.!]*\s*$|"
    r"^\s*(?:and|also)\s+(?P<y>.+?)\s*[?.!]*\s*$|"
    r"^\s*(?:same|the same)\s+(?:for|with)\s+(?P<z>.+?)\s*[?.!]*\s*$",
    re.I,
)
_QUESTION_WORDS = frozenset(
    "who whom whose what which when where why how is are was were do does did can could".split()
)
# A run of capitalised words ("Alejandro Borda Casafranca", "VRAEM", "El Comercio"), joined by de/del/of/the.
_ENTITY = re.compile(
    r"\b(?:[A-Z][\w\u00c0-\u024f'-]*)(?:\s+(?:(?:de|del|la|of|the)\s+)?[A-Z][\w\u00c0-\u024f'-]*)*",
)
_TOKEN = re.compile(r"[\w\u00c0-\u024f'-]+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class PriorTurn:
    """An earlier turn of the conversation, as far as follow-ups need it."""

    question: str
    query: str = ""  # the standalone query it was resolved to ("" when it stood on its own)
    quotes: Sequence[str] = field(default_factory=tuple)  # the sentences its answer cited (or its answer text)

    @property
    def standalone(self) -> str:
        return self.query or self.question


@dataclass(frozen=True)
class ResolvedQuery:
    """What to retrieve and answer with: ``text`` is standalone; ``context`` is blended in at a small weight."""

    text: str
    context: str = ""
    followup: bool = False


def resolve_followup(message: str, history: Sequence[PriorTurn]) -> ResolvedQuery:
    """Rewrite ``message`` into a standalone query using the earlier turns (the last one matters most)."""
    message = message.strip()
    if not history:
        return ResolvedQuery(text=message)
    previous = history[-1]
    base = previous.standalone
    context = " ".join([base, *list(previous.quotes)[:CONTEXT_QUOTES]])

    ellipsis = _ELLIPSIS.match(message)
    subject = next((g for g in ellipsis.groups() if g), "") if ellipsis else ""
    if subject and subject.split()[0].lower() in _QUESTION_WORDS:
        # "and when was he killed?" is a question of its own after the "and".
        message, subject = subject, ""
    if subject:
        subject = _resolve_pronoun(subject, previous) or subject
        return ResolvedQuery(text=_ask_again_about(base, subject), context=context, followup=True)
    if not terms(message):
        # "why?", "when was it?": the question word is the message; the topic is the previous question's.
        return ResolvedQuery(text=f"{message.rstrip('?.! ')} {_topic(base)}?".strip(), context=context, followup=True)
    resolved = _resolve_pronoun(message, previous)
    if resolved is not None:
        return ResolvedQuery(text=resolved or f"{message} {_topic(base)}", context=context, followup=True)
    return ResolvedQuery(text=message)


def history_from_exchanges(exchanges: Sequence[tuple[str, Sequence[str]]]) -> list[PriorTurn]:
    """Resolve a list of (question, cited quotes) in order, so that each follow-up builds on the resolved one."""
    history: list[PriorTurn] = []
    for question, quotes in exchanges:
        resolved = resolve_followup(question, history)
        query = resolved.text if resolved.followup else ""
        history.append(PriorTurn(question=question, query=query, quotes=tuple(quotes)))
    return history


def _resolve_pronoun(message: str, previous: PriorTurn) -> str | None:
    """``message`` with its first pronoun replaced by the previous turn's key entity; None without a pronoun,
    "" when there is a pronoun but no entity to put in its place."""
    tokens = _TOKEN.findall(message)
    if not any(t.lower() in _PRONOUNS or t.lower() in _POSSESSIVES for t in tokens):
        return None
    # The previous question's entity, else its topic: "what are they doing about it?" after a question on funding.
    entity = _key_entity(previous.standalone) or _topic(previous.standalone)
    return _replace_pronoun(tokens, entity) if entity else ""


def _entities(text: str) -> list[str]:
    found = []
    for match in _ENTITY.finditer(text):
        words = match.group().split()
        # A capitalised question word opening the sentence ("Who", "What") is not a name.
        while words and words[0].lower() in _QUESTION_WORDS | STOPWORDS:
            words = words[1:]
        if words:
            found.append(" ".join(words))
    return found


def _key_entity(text: str) -> str:
    entities = _entities(text)
    return entities[0] if entities else ""


def _replace_pronoun(tokens: list[str], entity: str) -> str:
    out = []
    replaced = False
    for token in tokens:
        low = token.lower()
        if not replaced and low in _PRONOUNS:
            out.append(entity)
            replaced = True
        elif not replaced and low in _POSSESSIVES:
            out.append(f"{entity}'s")
            replaced = True
        else:
            out.append(token)
    return _detokenize(out)


def _ask_again_about(base: str, subject: str) -> str:
    entity = _key_entity(base)
    if entity and entity in base:
        return base.replace(entity, subject, 1)
    return f"{base.rstrip('?.! ')} {subject}?"


def _topic(question: str) -> str:
    """The previous question without its question words: the part a bare "why?" refers to."""
    tokens = _TOKEN.findall(question)
    while tokens and tokens[0].lower() in _QUESTION_WORDS:
        tokens = tokens[1:]
    return _detokenize([t for t in tokens if t not in "?!."]).strip()


def _detokenize(tokens: list[str]) -> str:
    text = " ".join(tokens)
    return re.sub(r"\s+([?.!,;:])", r"\1", text)
