"""Answering: the extractive and generated answerers, citation checking, the support judge, the model-server client."""
