"""Proto-RL experiment: python experiments/proto.py [--env Maze-Bottleneck-Goal-v0]
[--phase pretrain|finetune|both] [--snapshot DIR] [--num-seeds 8] ...

Pre-training on the intrinsic reward alone (``--phase pretrain``), then fine-tuning
on the task reward plus 0.2 times the intrinsic one from the pre-trained snapshot
(``--phase finetune --snapshot <pretrain out>/snapshot``), with the encoder,
projector, predictor and prototypes frozen; ``--phase both`` runs the two into
``<out>/pretrain`` and ``<out>/finetune``. On the maze ids (``Maze-<Layout>[-Goal][-Fourier]-v0``)
the whole run is one compiled program vmapped over seeds and results.json has the
``coverage`` and ``state_entropy`` of every evaluation; ``--env dmc:<domain>-<task>``
runs on the host, from states or with ``--pixels``.
"""

import os
import sys

os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import proto  # noqa: E402
from purerl.envs.maze import maze_ids  # noqa: E402

# The mazes' 2-d states on this 2-core CPU: smaller networks, batch and prototype set
# than the original's pixel agent (1024-wide heads, batch 512, 512 prototypes), and
# Adam at 3e-4. The encoder is the identity, as URLB's agents on states
# (rll-research/url_benchmark@bb98f0c, agent/ddpg.py): z is then a linear map of the
# position, normalised, which keeps mostly the position's angle about a point near the
# start, so it under-rates how novel the far room is (benchmarks/proto_reward_map.py
# measures it against the same reward on positions), yet covers more than uniform. An MLP
# encoder trained by the prototype loss spreads the visited states evenly over the
# sphere (Sinkhorn's equal partition) and maps unvisited ones among them: its reward was
# no higher in the unvisited corridor than in the start room, and its coverage was
# lower on Maze-Bottleneck and Maze-Rooms alike (commit 896def5 gives the runs).
MAZE = dict(total_steps=30_000, num_envs=1, num_evals=10, num_eval_envs=4,
            learning_starts=1000, hidden_sizes=(128, 128), batch_size=128, lr=3e-4,
            proto_lr=3e-4, proto_dim=32, predictor_hidden=128, num_prototypes=64,
            queue_size=256)
PRESETS = {env_id: MAZE for env_id in maze_ids()}  # -Fourier ids included
PRESETS["dmc:cartpole"] = dict(  # every dmc:cartpole-<task>
    # dm_control from states on the host (action repeat 8, as the SAC preset).
    total_steps=20_000, action_repeat=8, learning_starts=1000, num_eval_envs=5,
    hidden_sizes=(256, 256), batch_size=256, encoder="mlp", num_prototypes=128,
    queue_size=512,
    # --pixels: DrQ's encoder; a small replay and batch for this machine (see sac.py).
    pixels=dict(buffer_size=20_000, batch_size=128))

if __name__ == "__main__":
    sys.exit(experiment.main(proto, PRESETS, default_env="Maze-Bottleneck-Goal-v0"))
