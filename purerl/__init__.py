"""purerl: reinforcement-learning algorithms as pure JAX functions.

    import jax, purerl
    from purerl.algos import ppo
    env = purerl.envs.make("CartPole-v1")
    train = purerl.make_train(ppo, env, ppo.Config())
    runner, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
"""

import os

import jax

# JAX's asynchronous dispatch on the CPU backend can hang a process that keeps several
# computations in flight (jax-ml/jax#25861); we saw it hang training runs and tests
# here (jax 0.10.2, 2 cores). Our programs are few and large, so synchronous dispatch
# costs nothing measurable. Set PURERL_CPU_ASYNC_DISPATCH=1 to keep JAX's default.
if os.environ.get("PURERL_CPU_ASYNC_DISPATCH", "0") != "1":
    jax.config.update("jax_cpu_enable_async_dispatch", False)

from purerl import algos, envs, loops, ops  # noqa: E402
from purerl.loops import make_train  # noqa: E402
from purerl.trainer import Trainer  # noqa: E402

__version__ = "0.1.0"
__all__ = ["make_train", "Trainer", "envs", "ops", "algos"]
