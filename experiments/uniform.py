"""Uniform-random baseline: python experiments/uniform.py [--env Maze-Bottleneck-v0] ...

Actions drawn uniformly from the action space, nothing learned: the chance level of
a return, or of a maze's coverage and state entropy, through the same experiment
contract (results.json with ``coverage`` and ``state_entropy`` on the maze ids).
"""

import os
import sys

os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import uniform  # noqa: E402

if __name__ == "__main__":
    sys.exit(experiment.main(uniform, {}, default_env="Maze-Bottleneck-v0"))
