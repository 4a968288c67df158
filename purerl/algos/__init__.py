"""Algorithm modules: each has Config, make(config, env_spec) -> Agent."""

from purerl.algos import a2c, actor_critic, offpac, ppo, reinforce, sac

__all__ = ["reinforce", "actor_critic", "a2c", "offpac", "ppo", "sac"]
