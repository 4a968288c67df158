"""Algorithm modules: each has Config, make(config, env_spec) -> Agent."""

from purerl.algos import ppo

__all__ = ["ppo"]
