"""Support judge coefficients, written by benchmarks/train_judge.py --write (SciFact train). Do not edit."""

FEATURES = ("bias", "cosine", "term_recall", "pair_recall", "numbers_found", "numbers_missing", "negation_mismatch")
COEFFICIENTS = (-3.149240, 2.177365, 2.880549, -0.748751, -0.419387, -1.026579, -0.156077)
THRESHOLD = 0.23
