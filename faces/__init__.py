"""The data layer both packages share: RAF-DB, image folders, the embedded synthetic faces,
the uint8 tensor cache and provenance (real vs generated) per sample.

Names are imported lazily (PEP 562): `from faces import load_faces` works as usual, but
`import faces.io` or `import faces.runkit.workers` alone does not pull in torch. That keeps
worker processes (PNG writing, rendering), which import their task function through this
package, light and quick to start.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS = {
    "RAFDB_CLASSES": "classes",
    "RAFDB_OFFICIAL_COUNTS": "classes",
    "DATASETS": "data",
    "FaceData": "data",
    "list_source": "data",
    "load_faces": "data",
    "resolve_image_size": "data",
    "CheckpointError": "errors",
    "DatasetError": "errors",
    "EmptyGeneratedSetError": "errors",
    "FolderLockedError": "errors",
    "SyntheticLeakError": "errors",
    "MANIFEST_FILE": "generated",
    "SETTINGS_FILE": "generated",
    "check_generated_complete": "generated",
    "check_generated_sources": "generated",
    "generated_completion": "generated",
    "list_generated": "generated",
    "load_generated": "generated",
    "manifest_fingerprint": "generated",
    "read_generated_settings": "generated",
    "sample_ids_fingerprint": "generated",
    "folder_lock": "runkit.lock",
    "FaceSplit": "split",
    "require_real": "split",
    "stratified_split": "split",
    "GroupThresholds": "summary",
    "class_groups": "summary",
    "imbalance_ratio": "summary",
    "FaceTensorDataset": "torchdata",
}

__all__ = [
    "DATASETS",
    "MANIFEST_FILE",
    "RAFDB_CLASSES",
    "RAFDB_OFFICIAL_COUNTS",
    "SETTINGS_FILE",
    "CheckpointError",
    "DatasetError",
    "EmptyGeneratedSetError",
    "FaceData",
    "FaceSplit",
    "FaceTensorDataset",
    "FolderLockedError",
    "GroupThresholds",
    "SyntheticLeakError",
    "check_generated_complete",
    "check_generated_sources",
    "generated_completion",
    "class_groups",
    "folder_lock",
    "imbalance_ratio",
    "list_generated",
    "list_source",
    "load_faces",
    "load_generated",
    "manifest_fingerprint",
    "read_generated_settings",
    "require_real",
    "resolve_image_size",
    "sample_ids_fingerprint",
    "stratified_split",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:  # `import faces; faces.cache...` keeps working as when every submodule was imported eagerly
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
