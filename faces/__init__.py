"""The data layer both packages share: RAF-DB, image folders, the embedded synthetic faces,
the uint8 tensor cache and provenance (real vs generated) per sample."""

from .classes import RAFDB_CLASSES, RAFDB_OFFICIAL_COUNTS
from .data import DATASETS, FaceData, list_source, load_faces, resolve_image_size
from .errors import CheckpointError, DatasetError, SyntheticLeakError
from .generated import MANIFEST_FILE, SETTINGS_FILE, list_generated, load_generated, manifest_fingerprint, read_generated_settings
from .split import FaceSplit, require_real, stratified_split
from .summary import GroupThresholds, class_groups, imbalance_ratio
from .torchdata import FaceTensorDataset

__all__ = [
    "DATASETS",
    "RAFDB_CLASSES",
    "RAFDB_OFFICIAL_COUNTS",
    "CheckpointError",
    "DatasetError",
    "FaceData",
    "FaceSplit",
    "FaceTensorDataset",
    "GroupThresholds",
    "MANIFEST_FILE",
    "SETTINGS_FILE",
    "SyntheticLeakError",
    "class_groups",
    "imbalance_ratio",
    "list_generated",
    "list_source",
    "load_generated",
    "load_faces",
    "manifest_fingerprint",
    "read_generated_settings",
    "require_real",
    "resolve_image_size",
    "stratified_split",
]
