"""`--target-count`: an integer, `max` (the majority class count), or per-class `Fear=2000,Disgust=1500`."""

from __future__ import annotations

from collections.abc import Sequence


def parse_target_count(
    spec: str | int | Sequence[int], *, class_names: Sequence[str], real_counts: Sequence[int]
) -> list[int]:
    """Target per class. Classes already at or above their target get no generated images.

    With a per-class spec, classes not named keep their real count (target = real count).
    """
    if isinstance(spec, (tuple, list)):  # one target per class, e.g. from Python
        if len(spec) != len(class_names):
            raise ValueError(f"--target-count: {len(spec)} targets for {len(class_names)} classes {list(class_names)}")
        return [_positive(str(value), what=f"--target-count for {name}") for name, value in zip(class_names, spec)]
    text = str(spec).strip()
    if text.lower() == "max":
        return [max(real_counts)] * len(class_names)
    if "=" not in text:
        return [_positive(text, what="--target-count")] * len(class_names)
    targets = list(real_counts)
    index = {name.lower(): i for i, name in enumerate(class_names)}
    given: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name.strip().lower() not in index:
            raise ValueError(
                f"--target-count: unknown class {name.strip()!r}; the dataset's classes are {list(class_names)}"
            )
        if name.strip().lower() in given:
            raise ValueError(
                f"--target-count: class {class_names[index[name.strip().lower()]]} is given twice ({given[name.strip().lower()]}, {item}); "
                "give each class once"
            )
        given[name.strip().lower()] = item
        targets[index[name.strip().lower()]] = _positive(value, what=f"--target-count for {name.strip()}")
    return targets


def _positive(value: str, *, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(
            f"{what}={value!r} must be a positive integer, 'max', or per-class 'Fear=2000,Disgust=1500'"
        ) from None
    if number < 1:
        raise ValueError(f"{what}={number} must be at least 1")
    return number
