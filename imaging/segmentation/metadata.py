"""Lesion metadata: what each label of a label map is (id, organ, nodal, target).

Format (a sidecar JSON or YAML file per patient, or the same mapping inside a config)::

    {
      "1": {"lesion_id": "L1", "organ": "lung", "nodal": false, "target": true},
      "2": {"lesion_id": "N1", "organ": "lymph node", "nodal": true}
    }

Keys are label values (integers >= 1, as strings in JSON). Fields:

- ``lesion_id`` (str, required): the lesion's stable name across time points.
- ``organ`` (str, default ``"unknown"``): for RECIST's at most two targets per organ.
- ``nodal`` (bool, default false): lymph nodes are measured by their short axis.
- ``target`` (bool or null, default null): the reader's choice of target lesion; null lets the
  response criteria choose among the measurable lesions.

Unknown fields and wrong types are errors that name the file, the label and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml


class LesionMetadataError(ValueError):
    """Invalid lesion metadata; the message names the source, the label and the field."""


@dataclass(frozen=True)
class LesionMetadata:
    """What one label value of a label map is."""

    lesion_id: str
    organ: str = "unknown"
    nodal: bool = False
    target: bool | None = None


_TYPES: dict[str, tuple[type, ...]] = {"lesion_id": (str,), "organ": (str,), "nodal": (bool,), "target": (bool, type(None))}


def lesion_metadata_from_mapping(mapping: Mapping[Any, Any], *, source: str = "lesion metadata") -> dict[int, LesionMetadata]:
    """Validate ``{label: {lesion_id, organ, nodal, target}}`` (the format above).

    Raises
    ------
    LesionMetadataError
        Naming ``source``, the label and the field at fault.
    """
    if not isinstance(mapping, Mapping):
        raise LesionMetadataError(f"{source}: expected a mapping of label values to objects, got {type(mapping).__name__}")
    out: dict[int, LesionMetadata] = {}
    allowed = {f.name for f in fields(LesionMetadata)}
    for key, value in mapping.items():
        try:
            label = int(key)
            if isinstance(key, float) or str(key).strip() != str(label):
                raise ValueError
        except (TypeError, ValueError):
            raise LesionMetadataError(f"{source}: key {key!r} is not a label value (an integer)") from None
        if label < 1:
            raise LesionMetadataError(f"{source}: label {label}: label values start at 1 (0 is background)")
        if label in out:
            raise LesionMetadataError(f"{source}: label {label} is given twice")
        if not isinstance(value, Mapping):
            raise LesionMetadataError(f"{source}: label {label}: expected an object with lesion_id, organ, nodal, target")
        extra = sorted(set(value) - allowed)
        if extra:
            raise LesionMetadataError(f"{source}: label {label}: {extra[0]}: unknown field (allowed: {', '.join(sorted(allowed))})")
        if "lesion_id" not in value:
            raise LesionMetadataError(f"{source}: label {label}: lesion_id: field required")
        for name, v in value.items():
            if not isinstance(v, _TYPES[name]) or (name == "lesion_id" and not str(v).strip()):
                expected = " or ".join("null" if t is type(None) else t.__name__ for t in _TYPES[name])
                raise LesionMetadataError(f"{source}: label {label}: {name}: expected {expected}, got {v!r}")
        out[label] = LesionMetadata(**dict(value))
    ids = [m.lesion_id for m in out.values()]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise LesionMetadataError(f"{source}: lesion_id {dup[0]!r} is given to more than one label")
    return out


def load_lesion_metadata(path: str | os.PathLike[str] | None) -> dict[int, LesionMetadata]:
    """Read a sidecar file (JSON, or YAML by its suffix) in the format above; ``{}`` when ``path`` is None or absent.

    Raises
    ------
    LesionMetadataError
        Unreadable file or invalid content (naming the file, label and field).
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        text = p.read_text(encoding="utf-8")
        raw = yaml.safe_load(text) if p.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise LesionMetadataError(f"{p}: unreadable lesion metadata ({exc})") from exc
    return lesion_metadata_from_mapping(raw if raw is not None else {}, source=str(p))
