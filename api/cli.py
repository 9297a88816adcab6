"""The `rag` command: index folders, ask a question, evaluate against references, serve the HTTP API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time: `rag --help` stays fast
    from rag.config import Settings


def main(argv: list[str] | None = None) -> int:
    """Entry point of `rag`."""
    parser = argparse.ArgumentParser(prog="rag", description="Cited answers from your documents.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_index = sub.add_parser("index", help="index files and folders (only new or changed files are embedded)")
    p_index.add_argument("paths", nargs="+", type=Path)
    p_index.add_argument("--quiet", action="store_true", help="no progress bar")
    p_index.add_argument("--tenant", default=None, help="index into this tenant's collection (with RAG_API_KEYS)")

    p_ask = sub.add_parser("ask", help="answer a question from the index")
    p_ask.add_argument("question")
    p_ask.add_argument("--top-k", type=int, default=None)
    p_ask.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p_ask.add_argument("--tenant", default=None, help="ask this tenant's collection (with RAG_API_KEYS)")

    p_eval = sub.add_parser("eval", help="evaluate answers against a reference set (JSONL or a BEIR folder)")
    p_eval.add_argument("references", type=Path, help="a reference JSONL file, or a BEIR folder (queries + qrels)")
    p_eval.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="documents to index first: a BEIR folder (corpus.jsonl) or a folder of files; a BEIR REFERENCES "
        "folder is its own corpus. Without it, the configured index is used as it is.",
    )
    p_eval.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    p_eval.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p_eval.add_argument("--out", type=Path, default=Path("eval-results"), help="where eval.json and report.html go")
    p_eval.add_argument(
        "--data-dir", type=Path, default=None, help="store to index the corpus into and reuse (default: a temp dir)"
    )
    p_eval.add_argument("--top-k", type=int, default=None, help="passages per answer (default: RAG_TOP_K)")
    p_eval.add_argument("--quiet", action="store_true", help="no progress bars")

    p_serve = sub.add_parser("serve", help="serve the HTTP API")
    p_serve.add_argument("--host", default=None)
    p_serve.add_argument("--port", type=int, default=None)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from rag.config import TENANT_PATTERN, describe_settings_error, get_settings
    from rag.errors import RAGError

    try:
        settings = get_settings()
    except Exception as exc:  # pydantic's ValidationError: a bad RAG_* value fails the start, with its message
        print(f"error: bad settings: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    tenant = getattr(args, "tenant", None)
    if tenant is not None and not TENANT_PATTERN.match(tenant):
        print("error: --tenant must be 1-32 letters, digits, '-' or '_'", file=sys.stderr)
        return 2
    try:
        if args.command == "index":
            return _index(settings, args.paths, quiet=args.quiet, tenant=tenant)
        if args.command == "ask":
            return _ask(settings, args.question, top_k=args.top_k, as_json=args.json, tenant=tenant)
        if args.command == "eval":
            from api.evaluation import run_eval

            return run_eval(settings, args)
        return _serve(settings, host=args.host, port=args.port)
    except RAGError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1


def _index(settings: Settings, paths: list[Path], *, quiet: bool, tenant: str | None) -> int:
    from index.pipeline import build_indexer
    from rag.factory import build_embedder, open_store

    indexer = build_indexer(settings, store=open_store(settings, tenant=tenant), embedder=build_embedder(settings))
    report = indexer.index_paths(paths, show_progress=not quiet and sys.stderr.isatty())
    for skipped in report.skipped:
        print(f"skipped: {skipped}", file=sys.stderr)
    print(report.summary())
    return 0 if report.indexed > 0 or not report.skipped else 1


def _ask(settings: Settings, question: str, *, top_k: int | None, as_json: bool, tenant: str | None) -> int:
    from rag.factory import build_service

    answer = build_service(settings, tenant=tenant).ask(question, top_k=top_k)
    if as_json:
        print(json.dumps(answer.model_dump(), ensure_ascii=False, indent=2))
        return 0
    print(answer.answer)
    if answer.citations:
        print()
        for c in answer.citations:
            verdict = "" if c.supported is None else ", supported" if c.supported else ", NOT supported"
            page = "" if c.page is None else f"page {c.page}, "
            print(f"[{c.n}] {c.source} ({page}chars {c.start}-{c.end}{verdict})")
            print(f"    \u201c{c.quote}\u201d")
    if answer.mode == "generated" and answer.supported_share is not None:
        print(f"\ngenerated; {answer.supported_share:.0%} of the model's sentences supported by their citations")
    for warning in answer.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    import uvicorn

    from api.app import create_app
    from api.logs import configure_logging
    from rag.config import LOOPBACK_HOSTS

    host = host or settings.host
    if not settings.api_keys and host not in LOOPBACK_HOSTS:
        print(
            f"error: refusing to serve on {host} without API keys: anyone who can reach it could read and change "
            "every document. Set RAG_API_KEYS='tenant:key,...' (keys of 16+ characters) or serve on 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_format)
    uvicorn.run(create_app(settings), host=host, port=port or settings.port, log_level="info", log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
