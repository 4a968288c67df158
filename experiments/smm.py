"""SMM experiment: python experiments/smm.py [--env Maze-Bottleneck-v0]
[--phase pretrain|finetune|both] [--snapshot DIR] [--num-seeds 8] ...

State Marginal Matching with skills: pre-training on r_z(s) = log p*(s) − log q(s|z)
+ log d(z|s) − log p(z) (``--phase pretrain``; ``--target corridor`` for the maze's
non-uniform p*, ``--discriminator-sign code`` for the reference code's sign), then
fine-tuning on the task reward from the pre-trained snapshot (``--phase finetune
--snapshot <pretrain out>/snapshot``); ``--phase both`` runs the two into
``<out>/pretrain`` and ``<out>/finetune``. ``--eval-policy mixture`` evaluates with
historical averaging (a stored actor snapshot drawn per episode). On the maze ids
the whole run is one compiled program vmapped over seeds and results.json has
``coverage``, ``state_entropy`` and the grid KLs (``kl_uniform``, ``kl_corridor``);
``--env dmc:<domain>-<task>`` runs on the host, from states or with ``--pixels``.
"""

import os
import sys

os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import smm  # noqa: E402
from purerl.envs.maze import maze_ids  # noqa: E402

# The mazes on this 2-core CPU, with the SAC settings of Proto-RL's maze preset (the
# same loop, heads, batch, learning rate, temperature, targets and log-std bound as
# the SAC and Proto arms of benchmarks/run_exploration.py): the reference's VAE
# (150 x 2, code 128), a 128 x 2 discriminator (the reference: 300 x 2), an actor
# snapshot every 2000 updates.
MAZE = dict(total_steps=30_000, num_envs=1, num_evals=10, num_eval_envs=4,
            learning_starts=1000, hidden_sizes=(128, 128), batch_size=128, lr=3e-4,
            init_alpha=0.1, tau=0.01, log_std_min=-10.0,
            discriminator_hidden=(128, 128), history_every=2000)
PRESETS = {env_id: MAZE for env_id in maze_ids()}  # -Fourier ids included
PRESETS["dmc:cartpole"] = dict(  # every dmc:cartpole-<task>
    # dm_control from states on the host (action repeat 8, as the SAC preset).
    total_steps=20_000, action_repeat=8, learning_starts=1000, num_eval_envs=5,
    hidden_sizes=(256, 256), batch_size=256,
    # --pixels: DrQ's encoder; a small replay and batch for this machine (see sac.py).
    pixels=dict(buffer_size=20_000, batch_size=128))

if __name__ == "__main__":
    sys.exit(experiment.main(smm, PRESETS, default_env="Maze-Bottleneck-v0"))
