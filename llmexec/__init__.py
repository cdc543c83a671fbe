"""The application: the ``llmexec`` command, the embedded all-in-one run, and the one place
that wires settings, buses, workers and services together (:mod:`llmexec.assembly`).

It sits above every other package of the platform; nothing imports it.
"""
