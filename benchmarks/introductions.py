"""Rule-made short questions about a name: "Who is X?" / "What is X?".

SQuAD's annotators wrote long questions that repeat their passage's words; questions of one or two terms are rare
there (471 of 10,817 in the tuning half) and mostly vague (a common term found in many articles), so a model fitted
on SQuAD alone reads "few terms" as "unreliable". A user's first question about a collection is often the opposite:
short and specific ("Who is Alipio?"), about a name that occurs once. These items give the fit such questions, from
the tuning articles alone: a name (one to three capitalised words, not opening a sentence) that occurs in exactly
one sentence of the whole tuning index is asked about; the answer is any sentence holding it (there is one). The same
names asked of an index without their article are off-topic questions of the same form, so shortness is not a label
in disguise.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable

from rag.text import STOPWORDS, sentence_spans

_NAME = re.compile(r"\b[A-Z][a-z][\w'-]*(?:\s+[A-Z][a-z][\w'-]*){0,2}\b")
_NOT_NAMES = frozenset(
    """january february march april may june july august september october november december monday tuesday wednesday
    thursday friday saturday sunday however although during after before while since when where there these those this
    that their then other many some most such english american british french german""".split()
)
# A name with one of these words is a thing or a place ("What is ..."); two or three words without one, a person.
_THING_WORDS = frozenset(
    """university college school institute academy museum library hospital church cathedral temple river lake sea
    ocean island islands mountain mountains valley park street road bridge station airport hall tower palace castle
    company corporation group bank party army navy council committee congress parliament senate court empire kingdom
    republic state states province county city act treaty war battle award prize cup league festival championship
    association society foundation agency department ministry office centre center system project program programme
    series network press times news journal review magazine records forest field railway railroad reformation
    architecture theory river county airport stadium""".split()
)
# A sentence with one of these words is about a person: its two-or-three-word names are asked with "Who".
_PERSON_CUES = frozenset(
    """he she his her him born died wife husband son daughter father mother mr dr sir king queen saint pope president
    professor emperor bishop general""".split()
)
PER_ARTICLE = 60


def names_in(sentence: str, common: frozenset[str] = frozenset()) -> list[str]:
    """Capitalised runs of one to three words, leaving out the sentence's first word, common capitalised words, and
    runs whose every word is also written in lower case somewhere (``common``: "Modern History", "Concert")."""
    out = []
    for match in _NAME.finditer(sentence):
        if match.start() == 0 or not sentence[: match.start()].strip():
            continue
        words = match.group().split()
        if "'" in match.group() or any(w.lower() in STOPWORDS or w.lower() in _NOT_NAMES for w in words):
            continue
        if all(w.lower() in common for w in words):
            continue
        out.append(match.group())
    return out


def question_for(name: str, sentence: str, rng: random.Random) -> str:
    words = name.split()
    about_person = bool(_PERSON_CUES & set(re.findall(r"[a-z]+", sentence.lower())))
    kind = "Who" if about_person and not any(w.lower() in _THING_WORDS for w in words) else "What"
    verb = rng.choice(("is", "was"))
    return f"{kind} {verb} {name}?"


def introductions(paragraphs: Iterable[tuple[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """(article, paragraph text) -> items {article, question, answer, passage}: at most PER_ARTICLE per article, for
    names that occur in exactly one sentence of all the paragraphs given."""
    rng = random.Random(seed)
    paragraphs = list(paragraphs)
    sentences = [(a, p, p[s:e]) for a, p in paragraphs for s, e in sentence_spans(p)]
    common = frozenset(w for _, p in paragraphs for w in re.findall(r"\b[a-z][\w'-]*", p))
    candidates: dict[str, tuple[str, str, str]] = {}  # name -> where it is first seen
    for article, passage, sentence in sentences:
        for name in names_in(sentence, common):
            candidates.setdefault(name, (article, passage, sentence))
    # Count each name in every sentence that holds it as words, inside a longer run too ("Quispe" in "Martin Quispe").
    pattern_hits: Counter[str] = Counter()
    for _, _, sentence in sentences:
        for name in candidates:
            if name in sentence and re.search(rf"\b{re.escape(name)}\b", sentence):
                pattern_hits[name] += 1
    by_article: dict[str, list[tuple[str, str, str]]] = {}
    for name, (article, passage, sentence) in sorted(candidates.items()):
        if pattern_hits[name] == 1:
            by_article.setdefault(article, []).append((name, passage, sentence))
    items = []
    for article in sorted(by_article):
        chosen = by_article[article]
        rng.shuffle(chosen)
        for name, passage, sentence in chosen[:PER_ARTICLE]:
            question = question_for(name, sentence, rng)
            items.append({"article": article, "question": question, "answer": name, "passage": passage})
    return items
