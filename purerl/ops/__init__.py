"""Pure array primitives: no flax, no envs, no agents."""

from purerl.ops.augment import random_shift, shift_images
from purerl.ops.kfac import (
    dense_factors,
    ema,
    fold_bias,
    kron_precondition,
    kron_precondition_eigen,
    symmetric_eigh,
    trust_region_scale,
    unfold_bias,
)
from purerl.ops.knn import knn_distances, knn_entropy
from purerl.ops.natural import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
)
from purerl.ops.returns import (
    discounted_returns,
    gae,
    lambda_returns,
    n_step_returns,
    vtrace,
)
from purerl.ops.sinkhorn import sinkhorn_knopp

__all__ = [
    "discounted_returns",
    "n_step_returns",
    "lambda_returns",
    "gae",
    "vtrace",
    "conjugate_gradient",
    "fisher_vector_product",
    "backtracking_line_search",
    "kron_precondition",
    "kron_precondition_eigen",
    "symmetric_eigh",
    "dense_factors",
    "ema",
    "fold_bias",
    "unfold_bias",
    "trust_region_scale",
    "random_shift",
    "shift_images",
    "sinkhorn_knopp",
    "knn_distances",
    "knn_entropy",
]
