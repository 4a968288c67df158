"""REINFORCE experiment: python experiments/reinforce.py [--env CartPole-v1] [--num-seeds 8] ...

Monte-Carlo policy gradient over complete episodes, with a learned baseline by default
(``--baseline false`` for the plain estimator). Any Config field can be overridden on
the command line (``--lr 3e-4``, ``--normalize-returns true``, ``--hidden-sizes 64,64``).
"""

import os
import sys

# One XLA host device per core, so the vmapped seed axis is sharded over all cores.
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import reinforce  # noqa: E402

PRESETS = {
    "CartPole-v1": dict(total_steps=1_000_000, num_envs=8),
    "Acrobot-v1": dict(total_steps=1_000_000, num_envs=8),
    "ShortCorridor-v0": dict(total_steps=150_000, num_envs=64, hidden_sizes=(), gamma=1.0,
                             optimizer="sgd", lr=0.05, baseline=False),
}

if __name__ == "__main__":
    sys.exit(experiment.main(reinforce, PRESETS, default_env="CartPole-v1"))
