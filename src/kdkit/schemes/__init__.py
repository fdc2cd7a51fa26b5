"""Training schemes: who teaches whom in a step."""

from kdkit.schemes.base import Scheme
from kdkit.schemes.offline import OfflineDistillation
from kdkit.schemes.supervised import Supervised

__all__ = ["Scheme", "Supervised", "OfflineDistillation"]
