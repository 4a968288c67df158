"""Pure array primitives: no flax, no envs, no agents."""

from purerl.ops.returns import (
    discounted_returns,
    gae,
    lambda_returns,
    n_step_returns,
    vtrace,
)

__all__ = ["discounted_returns", "n_step_returns", "lambda_returns", "gae", "vtrace"]
