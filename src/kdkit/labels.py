"""The label of a row (or token) that has none: unlabelled transfer-set samples, boundary and synthetic inputs,
padding positions in sequence labelling and language modelling.

One constant for every module that writes or skips such labels: cross-entropy ignores it (``ignore_index``),
metrics and verdicts leave it out, data sources write it. It is an int below every class id, so ``y != UNLABELLED``
and a class-range check (``0 <= y < num_classes``) tell the cases apart. This module imports nothing, so the data
layer and the losses can both depend on it.
"""

UNLABELLED = -1

__all__ = ["UNLABELLED"]
