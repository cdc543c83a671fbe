"""``kustomize build`` for the subset k8s/kustomization.yaml uses, in Python.

Used where no kustomize binary is installed (CI may have neither kustomize nor kubectl);
tests/unit/test_k8s_schemas.py compares it with the real one where one is. Supported:
``resources`` (files only) and ``labels`` with ``pairs`` (``includeSelectors`` and
``includeTemplates`` false: metadata labels only). Anything else is refused, so the
rendering is never silently wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "labels"}


def build(directory: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise NotImplementedError(f"kustomization fields not implemented here: {sorted(unknown)}")
    pairs: dict[str, str] = {}
    for entry in spec.get("labels") or []:
        if set(entry) - {"pairs"} or not isinstance(entry.get("pairs"), dict):
            raise NotImplementedError(f"labels entry not implemented here: {entry}")
        pairs.update(entry["pairs"])
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources") or []:
        path = directory / resource
        if path.is_dir():
            raise NotImplementedError(f"directory resource {resource}")
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                labels = doc.setdefault("metadata", {}).setdefault("labels", {})
                labels.update(pairs)
                docs.append(doc)
    return docs
