"""purerl: reinforcement-learning algorithms as pure JAX functions.

    import jax, purerl
    from purerl.algos import ppo
    env = purerl.envs.make("CartPole-v1")
    train = purerl.make_train(ppo, env, ppo.Config())
    runner, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
"""

import os

# XLA's CPU runtime on jax 0.10.2 intermittently hangs vmapped programs on this 2-core
# class of machine: every worker of its Eigen intra-op thread pool parks while the
# execution waits for a task that never runs (seen here in training runs and in tests;
# also reported as PyAutoLabs/PyAutoFit#1530, which found this flag avoids it).
# Single-threaded Eigen costs nothing measurable for purerl's small matmuls, and seeds
# sharded over host devices still use every core. The flag must be set before JAX
# starts its CPU backend (its first computation). PURERL_KEEP_XLA_FLAGS=1 opts out.
if os.environ.get("PURERL_KEEP_XLA_FLAGS", "0") != "1":
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in _flags:
        os.environ["XLA_FLAGS"] = (_flags + " --xla_cpu_multi_thread_eigen=false").strip()

import jax  # noqa: E402

# JAX's asynchronous dispatch on the CPU backend can also hang a process that keeps
# several computations in flight (jax-ml/jax#25861). Our programs are few and large,
# so synchronous dispatch costs nothing measurable.
if os.environ.get("PURERL_KEEP_XLA_FLAGS", "0") != "1":
    jax.config.update("jax_cpu_enable_async_dispatch", False)

from purerl import algos, envs, loops, ops  # noqa: E402
from purerl.loops import make_train  # noqa: E402
from purerl.trainer import Trainer  # noqa: E402

__version__ = "0.1.0"
__all__ = ["make_train", "Trainer", "envs", "ops", "algos"]
