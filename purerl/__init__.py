"""purerl: reinforcement-learning algorithms as pure JAX functions.

    import jax, purerl
    from purerl.algos import ppo
    env = purerl.envs.make("CartPole-v1")
    train = purerl.make_train(ppo, env, ppo.Config(), purerl.RunConfig(total_steps=100_000))
    runner, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
"""

from purerl import prng, xla

# Straight-line threefry on CPU: the same random numbers, faster small draws (see
# purerl/prng.py; PURERL_ROLLED_THREEFRY=1 keeps jax's lowering).
prng.apply_default()
# No concurrency-optimised XLA scheduling on CPU: small kernels run faster in sequence
# (see purerl/xla.py; PURERL_XLA_DEFAULT_SCHEDULER=1 keeps XLA's default).
XLA_FLAG_APPLIED = xla.apply_default()

from purerl import algos, buffers, envs, host_loop, loops, memory, ops, snapshot  # noqa: E402
from purerl.algos.base import Agent, AlgoSpec, stateless  # noqa: E402
from purerl.config import RunConfig  # noqa: E402
from purerl.loops import make_train  # noqa: E402
from purerl.memory import Replay  # noqa: E402
from purerl.trainer import Trainer  # noqa: E402

__version__ = "0.1.0"
__all__ = ["make_train", "Trainer", "RunConfig", "AlgoSpec", "Agent", "stateless",
           "Replay", "envs", "ops", "algos", "buffers", "loops", "host_loop", "memory",
           "snapshot"]
