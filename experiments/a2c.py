"""A2C experiment: python experiments/a2c.py [--env CartPole-v1] [--num-seeds 8] ...

Synchronous advantage actor-critic with baselines' defaults (16 envs x 5 steps, RMSProp
7e-4 decayed linearly). Any Config field can be overridden on the command line
(``--use-gae true``, ``--ent-coef 0``, ``--hidden-sizes 64,64``).
"""

import os
import sys

# One XLA host device per core, so the vmapped seed axis is sharded over all cores.
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import a2c  # noqa: E402

PRESETS = {
    # SB3 zoo's CartPole setting drops the entropy bonus (rl-baselines3-zoo hyperparams/a2c.yml).
    "CartPole-v1": dict(total_steps=1_000_000, ent_coef=0.0),
    "Acrobot-v1": dict(total_steps=1_000_000),
}

if __name__ == "__main__":
    sys.exit(experiment.main(a2c, PRESETS, default_env="CartPole-v1"))
