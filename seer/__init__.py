"""seer: SEER (Self-Evolving Evaluator and Reprompter, arXiv 2601.20305) for unified multimodal models."""

__version__ = "0.1.0"
