"""What other systems use to publish requests."""

from producers.client import RequestProducer

__all__ = ["RequestProducer"]
