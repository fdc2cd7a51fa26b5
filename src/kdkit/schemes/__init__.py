"""Training schemes: who teaches whom in a step."""

from kdkit.schemes.assistants import distill_through_assistants
from kdkit.schemes.base import Scheme
from kdkit.schemes.born_again import distill_born_again
from kdkit.schemes.data_free import SyntheticData, distill_data_free, synthesize
from kdkit.schemes.multi_teacher import MultiTeacherDistillation
from kdkit.schemes.mutual import MutualLearning
from kdkit.schemes.offline import OfflineDistillation
from kdkit.schemes.on_policy import OnPolicyDistillation
from kdkit.schemes.self_distill import SelfDistillation
from kdkit.schemes.sequence_level import distill_sequence_level, teacher_outputs
from kdkit.schemes.supervised import Supervised
from kdkit.schemes.topk_cache import TopKCacheDistillation

__all__ = [
    "MultiTeacherDistillation", "MutualLearning", "OfflineDistillation", "Scheme", "SelfDistillation", "Supervised",
    "SyntheticData", "distill_born_again", "distill_data_free", "distill_through_assistants", "synthesize",
    "OnPolicyDistillation", "TopKCacheDistillation", "distill_sequence_level", "teacher_outputs",
]
