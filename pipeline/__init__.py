"""Shared runtime of every service: bus, processor, settings, observability, errors."""
