"""HTTP (and command-line) edge of the service. Imports rag, and index for ingestion."""
