"""TRPO experiment: python experiments/trpo.py [--env CartPole-v1] [--num-seeds 8] ...

Trust-region policy optimisation with baselines' trpo_mpi defaults (max_kl 0.01, 10 CG
iterations, damping 0.1, backtracking line search). Any Config field can be overridden
on the command line (``--max-kl 0.02``, ``--kl-accept-factor 1.5``,
``--hidden-sizes 64,64``).
"""

import os
import sys

# One XLA host device per core, so the vmapped seed axis is sharded over all cores.
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import trpo  # noqa: E402

PRESETS = {
    "CartPole-v1": dict(total_steps=1_000_000, num_envs=8, num_steps=128,
                        hidden_sizes=(64, 64), normalize_obs=False),
    "Pendulum-v1": dict(total_steps=2_000_000, num_envs=16, num_steps=128, gamma=0.95,
                        gae_lambda=0.95, hidden_sizes=(64, 64), reward_scale=0.1,
                        vf_epochs=10),
}

if __name__ == "__main__":
    sys.exit(experiment.main(trpo, PRESETS, default_env="CartPole-v1"))
