"""Ingestion: load -> normalise -> chunk -> embed -> store. Imports rag only."""
