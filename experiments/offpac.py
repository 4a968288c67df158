"""Off-PAC experiment: python experiments/offpac.py [--env CartPole-v1] [--num-seeds 8] ...

Off-policy actor-critic from replayed behaviour-policy segments with importance
ratios. Any Config field can be overridden on the command line (``--behaviour uniform``,
``--clip-rho inf``, ``--trace-lambda 0``).
"""

import os
import sys

# One XLA host device per core, so the vmapped seed axis is sharded over all cores.
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
)

from purerl import experiment  # noqa: E402
from purerl.algos import offpac  # noqa: E402

PRESETS = {
    "CartPole-v1": dict(total_steps=1_000_000),
    "Acrobot-v1": dict(total_steps=1_000_000),
}

if __name__ == "__main__":
    sys.exit(experiment.main(offpac, PRESETS, default_env="CartPole-v1"))
