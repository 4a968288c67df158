"""Algorithm modules: each has Config, make(config, env_spec) -> Agent."""

from purerl.algos import (
    a2c,
    acktr,
    dreamer,
    actor_critic,
    npg,
    offpac,
    ppo,
    proto,
    reinforce,
    sac,
    smm,
    trpo,
    uniform,
)

__all__ = [
    "reinforce", "actor_critic", "a2c", "offpac", "npg", "trpo", "ppo", "acktr", "sac",
    "proto", "smm", "dreamer", "uniform",
]
