"""Degenerate training data, found once the data is loaded and before any model trains.

A training split with a single class trains without complaint and reports perfect accuracy, which says nothing;
it is refused. A batch larger than the training split is not wrong, but it makes every epoch a single step,
which a user who meant a smaller data set or a smaller batch would want to know: it is flagged in one line.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from kdkit.errors import DataError
from kdkit.run.rundir import LABELS

# a config's training stages, printed as the row each one trains
STAGES = {"teacher": LABELS["teacher"], "student": LABELS["student_alone"], "distill": LABELS["student_kd"]}


def _labels(dataset: Dataset) -> Any:
    """The label tensor of a dataset that keeps one (tensors, decoded images), else None (no pass over the data)."""
    labels = getattr(dataset, "labels", None)
    if labels is None and hasattr(dataset, "tensors") and len(dataset.tensors) > 1:
        labels = dataset.tensors[1]
    return labels


def check_classes(bundle: Any, where: str = "data") -> None:
    """DataError when the data has fewer than two classes, or its training split holds a single one."""
    if bundle.num_classes < 2:
        names = f" ({', '.join(map(str, bundle.class_names))})" if bundle.class_names else ""
        raise DataError(f"{where}: the training data has {bundle.num_classes} class{names}; classifying needs at least "
                        "two (add examples of another class)")
    labels = _labels(bundle.train)
    if labels is None or getattr(labels, "ndim", 1) != 1:  # per-token labels (tagging, LMs): nothing cheap to count
        return
    present = {int(v) for v in labels.unique().tolist()} - {-1}
    if len(present) == 1:
        name = bundle.class_names[present.pop()] if bundle.class_names else "one class"
        raise DataError(f"{where}: every training example has the same label ({name}); a model trained on it "
                        "learns nothing; add examples of the other classes")


def batch_warnings(cfg: Any, bundle: Any) -> list[str]:
    """One line per stage whose batch size exceeds its training examples (each epoch is then a single step)."""
    lines = []
    sizes = {"teacher": len(bundle.train), "student": len(bundle.train)}
    use_transfer = bundle.transfer is not None and cfg.distill.use_transfer
    sizes["distill"] = len(bundle.train) + (len(bundle.transfer) if use_transfer else 0)
    for stage, n in sizes.items():
        batch = cfg.settings(stage).batch_size
        if batch > n:
            lines.append(f"warning: the {STAGES[stage]}'s batch_size {batch} exceeds its {n} training examples, so "
                         f"every epoch is one step of {n}; lower batch_size (e.g. to {max(1, n // 8)}) for more steps")
    return lines
