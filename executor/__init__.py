"""Gnomon's durable executor: ``from executor import workflow``."""

from executor import workflow

__all__ = ["workflow"]
