"""Long-tail losses, one module per family, each registered by name (`LOSSES`) and built by `create_loss`.

Every function takes logits [N, C] and int64 targets [N]; class statistics come from the
*training* counts (what the model is fitted on, including generated samples if any).
"""

from . import ce, focal, ldam, logit_adjust, weighted_cluster  # noqa: F401  (each registers its losses)
from .focal import focal_loss
from .ldam import LDAMLoss, ldam_margins
from .logit_adjust import balanced_softmax_loss, logit_adjusted_cross_entropy, posthoc_logit_adjust, posthoc_logit_bias
from .registry import LOSSES, BalancingLoss, LossOption, create_loss, register_loss, sample_weighted_loss
from .weighted_cluster import WeightedClusterLoss, weighted_cluster_class_weights, weighted_cluster_loss
from .weights import class_prior, effective_number_weights, inverse_frequency_weights

__all__ = [
    "LOSSES",
    "BalancingLoss",
    "LDAMLoss",
    "LossOption",
    "WeightedClusterLoss",
    "balanced_softmax_loss",
    "class_prior",
    "create_loss",
    "effective_number_weights",
    "focal_loss",
    "inverse_frequency_weights",
    "ldam_margins",
    "logit_adjusted_cross_entropy",
    "posthoc_logit_adjust",
    "posthoc_logit_bias",
    "register_loss",
    "sample_weighted_loss",
    "weighted_cluster_class_weights",
    "weighted_cluster_loss",
]
