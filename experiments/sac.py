"""SAC experiment: python experiments/sac.py [--env Pendulum-v1] [--num-seeds 8] ...

Soft actor-critic with twin Q networks and automatic temperature, the whole
off-policy loop (act, env step, replay, updates, evaluation) compiled in one program.
Any Config field can be overridden on the command line (``--lr 3e-4``,
``--gradient-steps 2``, ``--hidden-sizes 256,256``).
"""

import os
import sys

# One XLA host device per core, so the vmapped seed axis is sharded over all cores.
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import sac  # noqa: E402

PRESETS = {
    # SB3 zoo's Pendulum setting: lr 1e-3, 20k steps (ALGORITHMS.md §9: −157 ± 89).
    "Pendulum-v1": dict(total_steps=20_000, lr=1e-3),
    "MountainCarContinuous-v0": dict(total_steps=50_000),
    # dm_control from states on the host, PlaNet/DrQ's action repeat 8 for cartpole:
    # 25k agent steps = 200k env steps. DrQ's SAC settings: lr 1e-3, init α 0.1,
    # critic τ 0.01, 1000 random steps first; 5 eval episodes per seed.
    "dmc:cartpole-swingup": dict(total_steps=25_000, action_repeat=8, lr=1e-3,
                                 init_alpha=0.1, tau=0.01, learning_starts=1000,
                                 num_eval_envs=5),
}

if __name__ == "__main__":
    sys.exit(experiment.main(sac, PRESETS, default_env="Pendulum-v1"))
