"""Online distillation by Deep Mutual Learning (Zhang, Xiang, Hospedales & Lu, CVPR 2018, "Deep Mutual Learning").

K = 1 + len(peers) networks train together from scratch, in the same step and with one optimiser. Network k
(k = 0 is the student) minimises

    L_k = alpha * CE(z_k, y) + (1 - alpha) * 1/(K-1) * sum_{j != k} T^2 * KL( softmax(z_j / T) || softmax(z_k / T) )

and the step minimises sum_k L_k. As in the paper, each other network's distribution p_j is a fixed target for
network k (z_j is detached), so L_k moves network k only; the mean over j (the paper's averaged KL for K > 2)
keeps the soft term on the same scale whatever K is. KL is summed over classes and averaged over the batch, as
in :func:`kdkit.losses.kd.soft_target_kl`; rows labelled -1 are left out of CE.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from kdkit.errors import ConfigError, ModelError
from kdkit.losses.kd import hard_label_ce, soft_target_kl
from kdkit.models.spec import ModelConfig
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.registry import DEFAULT_ALPHA_RANGE, DEFAULT_T_RANGE, SchemeOptions
from kdkit.taps import Taps
from kdkit.trainer.step import Scheme

# mutual learning's defaults, the only ones: MutualLearning takes them, and so do its options below
DEFAULT_T = 1.0
DEFAULT_ALPHA = 0.5


def check_mutual_options(T: float | None = None, alpha: float | None = None,
                         label_smoothing: float | None = None) -> None:
    """The ranges of the options given (None: not checked); MutualLearning and MutualOptions both check here."""
    if T is not None and not T > 0:
        raise ConfigError(f"MutualLearning temperature T must be > 0, got {T}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"MutualLearning alpha must be in [0, 1], got {alpha}")
    if label_smoothing is not None and not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"MutualLearning label_smoothing must be in [0, 1), got {label_smoothing}")


class MutualLearning(Scheme):
    """The student and its peers teach each other; all of them are trained.

    The peers live in ``self.extras``, so :func:`kdkit.fit` optimises them with the student and saves them apart
    from it (``checkpoints/<name>.extras.safetensors``, keys ``"<peer index>.<param>"``). :meth:`eval_logits`
    returns the first peer's logits as the "teacher" logits, so validation reports the student's agreement with
    (and predictive KL from) that peer.
    """

    def __init__(
        self, student: nn.Module, peers: Sequence[nn.Module], T: float = DEFAULT_T, alpha: float = DEFAULT_ALPHA,
        label_smoothing: float = 0.0,
    ) -> None:
        peers = list(peers)
        if not peers:
            raise ConfigError("MutualLearning needs at least one peer network besides the student; got none")
        check_mutual_options(T=T, alpha=alpha, label_smoothing=label_smoothing)
        if len({id(m) for m in [student, *peers]}) != 1 + len(peers):
            # the same module twice would be optimised twice per step and teach itself
            raise ConfigError("MutualLearning got the same module twice among student and peers; pass distinct models")
        super().__init__(student)
        self.peers = peers
        self.extras.extend(peers)  # trained with the student, checkpointed apart from it
        self.T, self.alpha, self.label_smoothing = float(T), float(alpha), float(label_smoothing)
        # Taps without paths only take the first tensor of outputs such as tuples or ModelOutput objects
        self._taps = [Taps(m) for m in [student, *peers]]

    @property
    def networks(self) -> list[nn.Module]:
        """The student first, then the peers in the order given."""
        return [self.student, *self.peers]

    def _check_widths(self, logits: list[Tensor]) -> None:
        width = logits[0].shape[-1]
        for k, z in enumerate(logits[1:]):
            if z.shape[-1] != width:
                raise ModelError(
                    f"peer {k} predicts {z.shape[-1]} classes but the student {width}; "
                    "give every network the same number of outputs (num_classes)"
                )

    def per_network(self, x: Tensor, y: Tensor | None) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """(logits, CE, soft term) of every network, student first; the soft term is already scaled by T^2 and
        averaged over the other networks, whose logits are detached targets."""
        logits = [taps(x)["logits"] for taps in self._taps]
        self._check_widths(logits)
        targets = [z.detach() for z in logits]
        ce, kl = [], []
        for k, z in enumerate(logits):
            ce.append(hard_label_ce(z, y, self.label_smoothing))
            others = [soft_target_kl(z, targets[j], self.T) for j in range(len(logits)) if j != k]
            kl.append(torch.stack(others).mean())
        return logits, ce, kl

    def losses(self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None):
        logits, ce, kl = self.per_network(x, y)
        total = [self.alpha * c + (1.0 - self.alpha) * k for c, k in zip(ce, kl, strict=True)]
        weighted = {"student": total[0], "peers": torch.stack(total[1:]).sum()}
        raw = {
            "ce": ce[0].detach(), "kl": kl[0].detach(),
            "peer_ce": torch.stack(ce[1:]).mean().detach(), "peer_kl": torch.stack(kl[1:]).mean().detach(),
        }
        return weighted, raw, logits[0]

    @torch.no_grad()
    def eval_logits(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Student logits and the first peer's, so validation measures how far the two agree."""
        return self.student(x), self.peers[0](x)


class MutualOptions(SchemeOptions):
    """mutual: the student and its peers train together, each taught by the others (Zhang et al. 2018); the
    teacher row is still trained, as the reference. T and alpha are the scheme's own: distill.losses is not read."""

    name: Literal["mutual"] = "mutual"
    peers: list[ModelConfig] = Field(default_factory=list, description="peers; none = one built like the student")
    T: float = Field(DEFAULT_T, description="temperature of the peers' soft targets")
    alpha: float = Field(DEFAULT_ALPHA, description="weight of the hard-label loss")
    reads_losses = False

    @field_validator("T", "alpha")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        try:
            check_mutual_options(**{info.field_name: value})
        except ConfigError as err:  # the value is shown by the config error line itself
            raise ValueError(str(err).rsplit(", got ", 1)[0]) from None
        return value

    def models(self) -> list[tuple[str, ModelConfig]]:
        return [("distill.scheme.peers", m) for m in self.peers]

    def tune_space(self, losses: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {"distill.scheme.T": dict(DEFAULT_T_RANGE), "distill.scheme.alpha": dict(DEFAULT_ALPHA_RANGE)}

    def plan(self, inputs: PlanInputs) -> SchemePlan:
        return MutualPlan(self, inputs)


class MutualPlan(SchemePlan):
    options: MutualOptions

    def __init__(self, options: MutualOptions, inputs: PlanInputs) -> None:
        super().__init__(options, inputs)
        for i, spec in enumerate(options.peers or [inputs.student_spec], start=1):
            self.extra_models[f"peer{i}"] = inputs.build(spec, inputs.seed + 300 + i)

    def scheme(self, distill_set: Dataset, run_dir: Path | None) -> MutualLearning:
        return MutualLearning(self.student, list(self.extra_models.values()), self.options.T, self.options.alpha)
