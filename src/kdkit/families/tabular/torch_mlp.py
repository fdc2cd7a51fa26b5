"""A small torch MLP classifier that can learn from soft targets, so a neural student can be distilled from a
boosted teacher's probabilities on tabular data.

Loss with soft targets q (rows sum to 1) and hard labels y (Hinton et al. 2015):

    L = (1 - alpha) * T^2 * KL( softmax(log q / T) || softmax(s / T) )  +  alpha * CE(s, y)

KL is summed over classes and averaged over the batch (``batchmean``): the loss is kdkit.losses.kd_loss with the
teacher logits log q, the same function as the image and text pipelines' ``kd``. Without soft targets it is plain
cross-entropy, so the same class serves as a hard-label baseline. Inputs must already be numeric (the
distiller's preprocessing imputes, scales and one-hot encodes for this family).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from torch import nn

from kdkit.errors import ConfigError, DataError
from kdkit.losses.kd import kd_loss, soft_target_kl


def _mlp(n_in: int, hidden: Sequence[int], n_out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU(), nn.Dropout(dropout)]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    """Feed-forward classifier; ``fit(X, y, soft_targets=Q)`` trains with the KD loss on Q.

    Every random thing (initialisation, dropout, batch order) comes from ``seed``, and training runs on CPU
    with a fixed thread count, so two fits with the same arguments give the same model.
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (128, 64),
        epochs: int = 60,
        lr: float = 3e-3,
        batch_size: int = 128,
        weight_decay: float = 1e-4,
        dropout: float = 0.1,
        temperature: float = 1.0,
        alpha: float = 0.0,
        seed: int = 0,
        n_threads: int = 1,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.temperature = temperature
        self.alpha = alpha
        self.seed = seed
        self.n_threads = n_threads

    def _check(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"mlp alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ConfigError(f"mlp temperature must be > 0, got {self.temperature}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("mlp epochs and batch_size must be >= 1")

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        soft_targets: np.ndarray | None = None,
    ) -> TorchMLPClassifier:
        """Train on hard labels ``y``; with ``soft_targets`` (n, n_classes) use the KD loss instead of CE.

        A 2-D ``y`` is taken as soft targets with labels argmax(y), which lets the class be used wherever an
        estimator is fitted on probabilistic labels.
        """
        self._check()
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if y.ndim == 2:
            soft_targets, y = y, y.argmax(axis=1)
        if soft_targets is None:
            encoder = LabelEncoder().fit(y)
            self.classes_, codes = encoder.classes_, encoder.transform(y)
        else:
            # with soft targets the columns define the classes; hard labels must be their indices
            soft_targets = np.asarray(soft_targets, dtype=np.float32)
            if soft_targets.ndim != 2 or len(soft_targets) != len(X):
                raise DataError(f"soft_targets must have shape (n_rows={len(X)}, n_classes)")
            self.classes_, codes = np.arange(soft_targets.shape[1]), y.astype(np.int64)
        self.n_features_in_ = X.shape[1]
        previous = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)  # small matrices: one thread is fastest and reproducible
        try:
            with torch.random.fork_rng(devices=[]):  # seed locally, leave the caller's global RNG untouched
                torch.manual_seed(self.seed)
                self._train(X, codes, soft_targets, sample_weight)
        finally:
            torch.set_num_threads(previous)
        return self

    def _train(self, X: np.ndarray, codes: np.ndarray, soft_targets: np.ndarray | None,
               sample_weight: np.ndarray | None) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        self.model_ = _mlp(X.shape[1], self.hidden, len(self.classes_), self.dropout)
        opt = torch.optim.AdamW(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xt, yt = torch.from_numpy(X), torch.from_numpy(codes.astype(np.int64))
        qt = None if soft_targets is None else torch.from_numpy(soft_targets).clamp_min(1e-8)
        wt = None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
        self.model_.train()
        for _ in range(self.epochs):
            for idx in torch.randperm(len(xt), generator=gen).split(self.batch_size):
                loss = self._loss(self.model_(xt[idx]), yt[idx], None if qt is None else qt[idx],
                                  None if wt is None else wt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.model_.eval()

    def _loss(
        self, logits: torch.Tensor, y: torch.Tensor, q: torch.Tensor | None, w: torch.Tensor | None
    ) -> torch.Tensor:
        """Hinton KD against soft targets q through kdkit.losses.kd_loss, the kernel every torch run uses: q
        enters as teacher logits log q, since softmax(log q / T) is q sharpened or softened by T. Sample weights
        weigh each row's KL and CE terms (the same kernel, given per-row weights)."""
        if q is None:
            ce = F.cross_entropy(logits, y, reduction="none")
            return ce.mean() if w is None else (ce * w).sum() / w.sum().clamp_min(1e-12)
        teacher_logits = q.log()
        if w is None:
            return kd_loss(logits, teacher_logits, y, self.temperature, self.alpha)
        total = w.sum().clamp_min(1e-12)
        kl = soft_target_kl(logits, teacher_logits, self.temperature, row_weights=w * (len(w) / total),
                            factor=1.0 - self.alpha)
        ce = (F.cross_entropy(logits, y, reduction="none") * w).sum() / total
        return kl + self.alpha * ce

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.model_(torch.from_numpy(np.asarray(X, dtype=np.float32)))
        return torch.softmax(logits, dim=1).numpy().astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
