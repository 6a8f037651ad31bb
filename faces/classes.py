"""RAF-DB's basic expression set: names, label numbering, folder-name aliases, official counts."""

from __future__ import annotations

from .errors import DatasetError

# RAF-DB labels 1..7 in this order; index = label - 1 everywhere in this project.
RAFDB_CLASSES: tuple[str, ...] = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")

# The official basic-set counts (train / test), used by tests and the data summary to
# tell a user whether their copy is complete.
RAFDB_OFFICIAL_COUNTS: dict[str, tuple[int, ...]] = {
    "train": (1290, 281, 717, 4772, 1982, 705, 2524),
    "test": (329, 74, 160, 1185, 478, 162, 680),
}

# Folder names seen in re-packaged copies (Kaggle and lab exports), lower-cased.
_RAFDB_ALIASES: dict[str, int] = {
    **{str(label): label - 1 for label in range(1, 8)},
    "surprise": 0,
    "surprised": 0,
    "fear": 1,
    "fearful": 1,
    "afraid": 1,
    "disgust": 2,
    "disgusted": 2,
    "happiness": 3,
    "happy": 3,
    "sadness": 4,
    "sad": 4,
    "anger": 5,
    "angry": 5,
    "neutral": 6,
}


def rafdb_label_from_folder(name: str, *, where: str) -> int:
    """Map a re-packaged RAF-DB class folder ('4', 'happy', 'Happiness') to a 0-based index."""
    index = _RAFDB_ALIASES.get(name.strip().lower())
    if index is None:
        hint = ""
        if name.isdigit() and name == "0":
            hint = (
                " (RAF-DB labels are 1..7; a folder '0' suggests a 0-based export: rename to 1..7 or use data=folder)"
            )
        raise DatasetError(
            f"{where}: unknown RAF-DB class folder {name!r}{hint}. Expected one of 1..7 "
            f"({', '.join(f'{i + 1}={c}' for i, c in enumerate(RAFDB_CLASSES))}) or a class name "
            f"such as {', '.join(c.lower() for c in RAFDB_CLASSES)}."
        )
    return index
