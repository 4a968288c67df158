"""Sinkhorn-Knopp: balanced soft assignments of samples to prototypes.

SwAV (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments", arXiv:2006.09882, §3.1) and Proto-RL (Yarats et al. 2021,
"Reinforcement Learning with Prototypical Representations", arXiv:2102.11271, §4.1)
turn the scores of ``B`` samples against ``K`` prototypes into codes ``Q`` whose
prototype marginal is uniform, so that no prototype collapses the batch onto itself.
With ``Q₀ = exp(logits)ᵀ / Σ exp(logits)`` (``K × B``), each iteration scales

    rows:    Q ← Q / (K · Q 1_B)       (each prototype gets mass 1/K)
    columns: Q ← Q / (B · 1_Kᵀ Q)      (each sample gets mass 1/B)

and the result is ``B · Qᵀ``: each sample's row is a distribution over prototypes.
This is the entropic optimal-transport plan between the uniform marginals for the
cost ``-logits`` (Cuturi 2013, arXiv:1306.0895), reached in the limit of many
iterations; SwAV and Proto-RL stop after 3, where the prototype marginal is balanced
only approximately. The order (rows first, then columns) is SwAV's
(``facebookresearch/swav`` ``main_swav.py``, ``distributed_sinkhorn``) and
Proto-RL's (``denisyarats/proto`` ``proto.py``, ``sinkhorn_knopp``).
"""

import jax
import jax.numpy as jnp

Array = jax.Array


def sinkhorn_knopp(logits: Array, num_iters: int = 3) -> Array:
    """Sinkhorn-Knopp codes for ``logits = scores / T``.

    Args:
      logits: ``[B, K]``, the scores of ``B`` samples against ``K`` prototypes
        divided by the temperature (Proto-RL and SwAV: cosine scores of
        L2-normalised embeddings and prototypes; unnormalised ones give overflow and
        NaNs). Any float dtype; computed in at least float32, in the log domain.
      num_iters: Sinkhorn iterations (static, >= 1). Proto-RL uses 3.

    Returns:
      ``[B, K]`` codes: every row sums to 1; every column sums to ``B / K`` when
      converged (approximately after 3 iterations). Gradients flow through; the
      callers (SwAV, Proto-RL) take ``jax.lax.stop_gradient`` of the codes.

    Raises:
      ValueError: if ``logits`` is not 2-D or ``num_iters < 1``.
    """
    logits = jnp.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, K] (samples x prototypes), got shape "
                         f"{logits.shape}; vmap for more batch axes")
    if int(num_iters) < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    b, k = logits.shape
    # In the log domain: the same iterates, but a prototype (row) whose every exp()
    # underflows, as with large logits, stays finite instead of becoming 0 / 0.
    log_q = logits.astype(jnp.promote_types(logits.dtype, jnp.float32)).T
    log_q = log_q - jax.nn.logsumexp(log_q)

    def iteration(_, log_q):
        log_q = log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - jnp.log(k)
        return log_q - jax.nn.logsumexp(log_q, axis=0, keepdims=True) - jnp.log(b)

    log_q = jax.lax.fori_loop(0, int(num_iters), iteration, log_q)
    return (b * jnp.exp(log_q)).T
