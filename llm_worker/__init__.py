"""The LLM worker: requests -> validated, routed execution commands."""
