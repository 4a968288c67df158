"""``Trainer``: the ``make_train`` loop in jitted chunks, for long runs.

One chunk is one evaluation block (``iterations_per_eval`` iterations + evaluation),
the same function ``make_train`` scans, so progress, metrics and checkpoints happen
between chunks, and a run resumed from a checkpoint continues bit-identically.
With ``num_seeds`` the seed axis is vmapped and, when the host has several devices
(e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` on a 2-core CPU),
sharded across them: one program using every core. After
``purerl.distributed.initialize`` the devices are every process's, and so is the shard.
"""

import time
from collections.abc import Callable

import jax
import numpy as np

from purerl import checkpoint, distributed, loops
from purerl.config import RunConfig
from purerl.loops import make_block
from purerl.algos.base import spec_of


class Trainer:
    """Run an algorithm on a pure-JAX env in jitted chunks.

    Example:
      >>> trainer = Trainer(ppo, env, ppo.Config(), RunConfig(total_steps=100_000),
      ...                   num_seeds=8)
      >>> runner = trainer.init(jax.random.key(0))
      >>> runner, metrics = trainer.run(runner)      # all remaining blocks
    """

    def __init__(self, algo, env, config, run: RunConfig | None = None,
                 num_seeds: int | None = None, shard: bool = True, freeze=()):
        algo = spec_of(algo)
        loops.warn_bare_run(algo, run)
        self.run_config = algo.run if run is None else run
        init, block, self.schedule = make_block(algo, env, config, self.run_config, freeze)
        self.num_seeds = num_seeds
        self.num_blocks = self.schedule.num_evals
        self.sharding = None
        if num_seeds is not None:
            if num_seeds < 1:
                raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
            init, block = jax.vmap(init), jax.vmap(block)
            self.sharding = distributed.seed_sharding(num_seeds, shard)
        # init is cheap: it runs on one device and its result is resharded.
        self._init = jax.jit(init)
        if self.sharding is None:
            self._block = jax.jit(block, donate_argnums=0)
        else:
            self._block = jax.jit(
                block, in_shardings=self.sharding, out_shardings=self.sharding,
                donate_argnums=0,
            )
        self.compile_seconds = None

    def init(self, key):
        """A fresh runner (a batch of runners with ``num_seeds``)."""
        if self.num_seeds is not None:
            key = jax.random.split(key, self.num_seeds)
        runner = self._init(key)
        if self.sharding is not None:
            runner = distributed.to_global(runner, self.sharding)
        return runner

    def compile(self, runner):
        """Compile the chunk ahead of time; records ``compile_seconds``."""
        start = time.perf_counter()
        self._block = self._block.lower(runner).compile()
        self.compile_seconds = time.perf_counter() - start
        return self

    def run(
        self,
        runner,
        num_blocks: int | None = None,
        *,
        progress: bool = False,
        callback: Callable | None = None,
        checkpoint_dir: str | None = None,
    ):
        """Run ``num_blocks`` chunks (default: all that remain).

        Args:
          runner: from ``init`` or ``checkpoint.restore``.
          num_blocks: chunks to run; default up to the end of the schedule.
          progress: show a tqdm progress bar.
          callback: ``callback(block_index, metrics)`` after each chunk, with metrics
            as numpy (seed axis first with ``num_seeds``).
          checkpoint_dir: if set, save the runner there after each chunk.

        Returns:
          ``(runner, metrics)`` with metrics stacked over the chunks run: ``[K, ...]``.
        """
        done = int(np.asarray(distributed.to_host(runner.block)).reshape(-1)[0])
        remaining = self.num_blocks - done
        num_blocks = remaining if num_blocks is None else min(num_blocks, remaining)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.num_blocks, initial=done, unit="eval", dynamic_ncols=True)
        history = []
        for i in range(num_blocks):
            runner, metrics = self._block(runner)
            metrics = distributed.to_host(metrics)
            history.append(metrics)
            if checkpoint_dir is not None:
                checkpoint.save(checkpoint_dir, runner, step=done + i + 1)
            if callback is not None:
                callback(done + i, metrics)
            if bar is not None:
                bar.set_postfix(eval_return=f"{np.mean(metrics['eval/return']):.1f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        if not history:
            return runner, {}
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *history)
        return runner, stacked
