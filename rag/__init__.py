"""Retrieval-augmented generation over a task's corpus."""
