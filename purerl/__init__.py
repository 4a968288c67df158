"""purerl: reinforcement-learning algorithms as pure JAX functions.

    import jax, purerl
    from purerl.algos import ppo
    env = purerl.envs.make("CartPole-v1")
    train = purerl.make_train(ppo, env, ppo.Config())
    runner, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
"""

from purerl import algos, buffers, envs, loops, ops
from purerl.loops import make_train
from purerl.trainer import Trainer

__version__ = "0.1.0"
__all__ = ["make_train", "Trainer", "envs", "ops", "algos", "buffers", "loops"]
