"""Evaluation: reference sets, metrics, and the HTML report."""
