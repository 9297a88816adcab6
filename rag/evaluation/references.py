"""Reference sets: our JSON Lines format, and the BEIR layout read as it is (no conversion).

Our format, one JSON object per line::

    {"id": "q1", "question": "...", "answers": ["..."], "gold_doc_ids": ["..."], "gold_quotes": ["..."]}
    {"id": "q2", "question": "...", "unanswerable": true}

Only ``id`` and ``question`` are required. The BEIR layout is a folder with ``corpus.jsonl`` ({_id, title, text}),
``queries.jsonl`` ({_id, text, metadata}) and ``qrels/<split>.tsv`` (query-id, corpus-id, score); reference answers
are read from a query's ``metadata.answers`` (SQuAD) when present.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import InvalidInput


class InvalidReferences(InvalidInput):
    code = "invalid_references"


@dataclass(frozen=True)
class ReferenceItem:
    """One question of a reference set, with whatever gold evidence it has."""

    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    gold_doc_ids: list[str] = field(default_factory=list)
    gold_quotes: list[str] = field(default_factory=list)
    unanswerable: bool = False
    # Graded relevance for nDCG (BEIR qrels); empty means every gold doc has relevance 1.
    relevance: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusDocument:
    """One document of a BEIR corpus."""

    doc_id: str
    title: str
    text: str

    def full_text(self) -> str:
        """What we index: the title, a blank line, the text (the title alone carries much of a query's words)."""
        return f"{self.title}\n\n{self.text}" if self.title.strip() else self.text


def item_from_dict(raw: dict[str, object], *, where: str = "item") -> ReferenceItem:
    """Validate one reference object; raise InvalidReferences saying what is wrong."""
    if not isinstance(raw, dict):
        raise InvalidReferences(f"{where}: expected a JSON object")
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InvalidReferences(f"{where}: 'question' must be a non-empty string")
    item_id = raw.get("id", "")
    if not isinstance(item_id, (str, int)) or str(item_id) == "":
        raise InvalidReferences(f"{where}: 'id' must be a non-empty string")
    lists: dict[str, list[str]] = {}
    for name in ("answers", "gold_doc_ids", "gold_quotes"):
        value = raw.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidReferences(f"{where}: '{name}' must be a list of strings")
        lists[name] = list(value)
    unanswerable = raw.get("unanswerable", False)
    if not isinstance(unanswerable, bool):
        raise InvalidReferences(f"{where}: 'unanswerable' must be true or false")
    return ReferenceItem(
        id=str(item_id),
        question=question,
        unanswerable=unanswerable,
        answers=lists["answers"],
        gold_doc_ids=lists["gold_doc_ids"],
        gold_quotes=lists["gold_quotes"],
    )


def load_jsonl(path: Path, *, limit: int | None = None) -> list[ReferenceItem]:
    """Read a reference set in our JSON Lines format."""
    items: list[ReferenceItem] = []
    ids: set[str] = set()
    with Path(path).open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidReferences(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            item = item_from_dict(raw, where=f"{path}:{lineno}")
            if item.id in ids:
                raise InvalidReferences(f"{path}:{lineno}: duplicate id {item.id!r}")
            ids.add(item.id)
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
    return items


def is_beir(path: Path) -> bool:
    """A BEIR folder: corpus.jsonl, queries.jsonl and a qrels folder."""
    path = Path(path)
    return path.is_dir() and (path / "queries.jsonl").is_file() and (path / "qrels").is_dir()


def beir_splits(folder: Path) -> list[str]:
    """The splits a BEIR folder has qrels for."""
    return sorted(p.stem for p in (Path(folder) / "qrels").glob("*.tsv"))


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {doc id: relevance} (only positive relevance)."""
    qrels: dict[str, dict[str, int]] = {}
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            score = int(float(row[2]))
            if score > 0:
                qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


def load_beir(folder: Path, *, split: str = "test", limit: int | None = None) -> list[ReferenceItem]:
    """The questions of one BEIR split that have qrels, in the order of queries.jsonl."""
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise InvalidReferences(f"{folder} has no qrels for split {split!r}; it has: {', '.join(beir_splits(folder))}")
    qrels = load_qrels(qrels_path)
    items: list[ReferenceItem] = []
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            raw = json.loads(line)
            qid = str(raw["_id"])
            if qid not in qrels:
                continue
            meta = raw.get("metadata") or {}
            answers = [a for a in meta.get("answers") or [] if isinstance(a, str)]
            items.append(
                ReferenceItem(
                    id=qid,
                    question=str(raw["text"]),
                    answers=list(dict.fromkeys(answers)),
                    gold_doc_ids=sorted(qrels[qid]),
                    relevance=dict(qrels[qid]),
                    unanswerable=bool(meta.get("is_impossible", False)),
                )
            )
            if limit is not None and len(items) >= limit:
                break
    return items


def iter_corpus(folder: Path) -> Iterator[CorpusDocument]:
    """The documents of a BEIR corpus.jsonl."""
    with (Path(folder) / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                raw = json.loads(line)
                yield CorpusDocument(
                    doc_id=str(raw["_id"]), title=str(raw.get("title") or ""), text=str(raw.get("text") or "")
                )


def load_references(path: Path, *, split: str = "test", limit: int | None = None) -> list[ReferenceItem]:
    """Our JSONL file, or a BEIR folder's split."""
    path = Path(path)
    if is_beir(path):
        return load_beir(path, split=split, limit=limit)
    if path.is_file():
        return load_jsonl(path, limit=limit)
    raise InvalidReferences(f"{path}: neither a JSON Lines reference file nor a BEIR folder (queries.jsonl + qrels/)")
