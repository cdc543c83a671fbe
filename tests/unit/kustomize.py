"""``kustomize build`` for the subset our kustomizations use, in Python.

Used where no kustomize binary is installed (CI may have neither kustomize nor kubectl);
tests/unit/test_k8s_schemas.py compares it with the real one where one is. Supported:
``resources`` (files, and directories holding a kustomization), ``labels`` with ``pairs``
(``includeSelectors`` and ``includeTemplates`` false: metadata labels only), ``components``
(directories holding a ``kind: Component``), and ``patches`` given inline as JSON 6902
operations (``add``, ``remove``, ``replace``, ``test``) on a ``target`` named by kind and
name. Anything else is refused, so the rendering is never silently wrong.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "labels", "components", "patches"}


def build(directory: Path, components: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The objects ``directory``'s kustomization renders, with ``components`` added as if
    its kustomization listed them."""
    spec = _spec(directory)
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources") or []:
        path = directory / resource
        if path.is_dir():
            docs.extend(build(path))
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    pairs: dict[str, str] = {}
    for entry in spec.get("labels") or []:
        if set(entry) - {"pairs"} or not isinstance(entry.get("pairs"), dict):
            raise NotImplementedError(f"labels entry not implemented here: {entry}")
        pairs.update(entry["pairs"])
    for doc in docs:
        doc.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    for component in [*(directory / c for c in spec.get("components") or []), *components]:
        component_spec = _spec(component)
        if component_spec.get("kind") != "Component":
            raise NotImplementedError(f"{component} is not a kustomize Component")
        _apply_patches(docs, component_spec.get("patches") or [])
    _apply_patches(docs, spec.get("patches") or [])
    return docs


def _spec(directory: Path) -> dict[str, Any]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise NotImplementedError(f"kustomization fields not implemented here: {sorted(unknown)}")
    return dict(spec)


def _apply_patches(docs: list[dict[str, Any]], patches: list[dict[str, Any]]) -> None:
    for entry in patches:
        target = entry.get("target") or {}
        if set(entry) - {"target", "patch"} or set(target) - {"kind", "name"}:
            raise NotImplementedError(f"patch form not implemented here: {sorted(entry)}")
        matched = [d for d in docs if d.get("kind") == target.get("kind")
                   and d["metadata"].get("name") == target.get("name")]
        if not matched:
            raise ValueError(f"patch target not found: {target}")
        ops = yaml.safe_load(entry["patch"])
        if not isinstance(ops, list):
            raise NotImplementedError("only JSON 6902 patches (a list of operations)")
        for doc in matched:
            for op in ops:
                _json_patch(doc, op)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"not a JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: dict[str, Any], op: dict[str, Any]) -> None:
    """One RFC 6902 operation, in place; raises on a path that does not exist."""
    *parents, last = _pointer(op["path"])
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    kind = op["op"]
    if kind == "test":
        current = node[int(last)] if isinstance(node, list) else node[last]
        if current != op["value"]:
            raise ValueError(f"test failed at {op['path']}: {current!r} != {op['value']!r}")
    elif kind == "remove":
        del node[int(last) if isinstance(node, list) else last]
    elif kind in ("add", "replace"):
        value = copy.deepcopy(op["value"])
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, value)
            else:
                node[index] = value
        else:
            if kind == "replace" and last not in node:
                raise ValueError(f"replace of a missing member: {op['path']}")
            node[last] = value
    else:
        raise NotImplementedError(f"JSON patch op {kind!r}")
