"""Core library: retrieval, answering, citations, evaluation. Never imports fastapi, api/ or index/."""
