"""qrag: multi-step retrieval over very long texts (Q-RAG)."""

__version__ = "0.1.0"
