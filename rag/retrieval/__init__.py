"""Retrieval: BM25, hybrid dense + lexical fusion, follow-up question rewriting."""
