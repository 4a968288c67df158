"""Q actor-critic experiment: python experiments/actor_critic.py [--env CartPole-v1] ...

A SARSA critic Q(s,a) and an actor following Q(s,a)∇log π. Any Config field can be
overridden on the command line (``--advantage true``, ``--td-steps 5``).
"""

import os
import sys

# One XLA host device per core, so the vmapped seed axis is sharded over all cores.
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import actor_critic  # noqa: E402

PRESETS = {
    "CartPole-v1": dict(total_steps=1_000_000),
    "Acrobot-v1": dict(total_steps=1_000_000),
}

if __name__ == "__main__":
    sys.exit(experiment.main(actor_critic, PRESETS, default_env="CartPole-v1"))
