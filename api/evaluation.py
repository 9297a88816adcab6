"""`rag eval`: index a corpus if asked, ask every reference question, write eval.json and report.html.

Lives in api/ beside the CLI because it needs both ingestion (index/) and the core (rag/).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import Settings

if TYPE_CHECKING:
    from rag.service import RAGService


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    """Run one evaluation as the CLI arguments describe; returns the exit code."""
    from rag.evaluation.metrics import evaluate, service_callables
    from rag.evaluation.references import is_beir, load_references
    from rag.evaluation.report import render_html

    progress = not args.quiet and sys.stderr.isatty()
    items = load_references(args.references, split=args.split, limit=args.limit)
    corpus = args.corpus or (args.references if is_beir(args.references) else None)
    with ExitStack() as stack:
        setup: dict[str, Any] = {
            "references": str(args.references),
            "split": args.split if is_beir(args.references) else "",
            "questions": len(items),
            "corpus": str(corpus or "(the configured index)"),
        }
        if corpus is not None:
            data_dir = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rag-eval-")))
            settings = settings.model_copy(update={"data_dir": Path(data_dir)})
            summary = index_for_eval(settings, Path(corpus), progress=progress)
            print(f"indexed {corpus}: {summary}", file=sys.stderr)
            setup["index"] = summary
        elif args.data_dir:
            settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
        service = _service(settings)
        ask, rank = service_callables(service, top_k=args.top_k)
        setup.update(
            top_k=args.top_k or settings.top_k,
            min_confidence=service.answerer.min_confidence,
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
            date=time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        run = evaluate(items, ask=ask, rank=rank, progress=progress, setup=setup)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(run.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "report.html").write_text(render_html(run, title=f"Evaluation: {args.references}"), encoding="utf-8")
    print(json.dumps(run.aggregates, indent=1))
    print(f"wrote {out / 'eval.json'} and {out / 'report.html'}", file=sys.stderr)
    return 0


def index_for_eval(settings: Settings, corpus: Path, *, progress: bool) -> str:
    """Index a BEIR corpus or a folder of files into the settings' store; returns the one-line summary."""
    from index.corpus import index_corpus
    from index.pipeline import build_indexer
    from rag.evaluation.references import is_beir
    from rag.factory import build_embedder, open_store

    indexer = build_indexer(settings, store=open_store(settings), embedder=build_embedder(settings))
    if (corpus / "corpus.jsonl").is_file() or is_beir(corpus):
        report = index_corpus(indexer, corpus, show_progress=progress)
    else:
        report = indexer.index_paths([corpus], show_progress=progress)
        for skipped in report.skipped:
            print(f"skipped: {skipped}", file=sys.stderr)
    return report.summary()


def _service(settings: Settings) -> RAGService:
    from rag.factory import build_service

    # The embedder's weights are cached per process, so indexing and asking share one copy. Warm up as the app's
    # lifespan does, so the first question's latency does not include loading the model or building BM25.
    service = build_service(settings)
    service.embedder.load()
    service.retriever.lexical()
    return service
