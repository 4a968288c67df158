"""The driver's carry, ``first`` flags and env-reported metrics, in the in-jit loop and
the host loop, with a toy recurrent agent on the memory probe.

``Probe-Memory-v0`` shows a cue only on an episode's first step and asks for it four
steps later; a policy can answer only from what its carry kept. The toy agent below
keeps the cue in its carry (reset where ``first`` is True) and learns a linear
softmax policy on [obs, carry]; with ``use_carry=False`` the same agent, blind to its
carry, cannot beat chance. The counting agent checks the carry/first bookkeeping
exactly: its carry counts the steps since the episode started.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np

import purerl
from purerl import host_loop, loops
from purerl.algos.base import Agent, AlgoSpec
from purerl.config import RunConfig, config
from purerl.envs.host import HostEnv
from purerl.ops import discounted_returns
from purerl.types import Discrete, EnvSpec


@config
class ToyConfig:
    lr: float = 1.0
    gamma: float = 0.9
    reward_scale: float = 1.0
    use_carry: bool = True


def _features(obs, mem):
    return jnp.concatenate([obs, mem[..., None], (mem * obs[..., 1])[..., None]], -1)


def _make_toy(cfg: ToyConfig, spec: EnvSpec) -> Agent:
    """A recurrent toy agent: carry = the episode's first observation's cue."""

    def init(key):
        del key
        return {"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)}

    def act(state, carry, obs, first, key, eval=False):
        mem = jnp.where(first, obs[..., 0], carry) if cfg.use_carry else jnp.zeros_like(carry)
        logits = _features(obs, mem) @ state["w"] + state["b"]
        action = (jnp.argmax(logits, -1) if eval
                  else jax.random.categorical(key, logits)).astype(jnp.int32)
        return action, mem, {"mem": mem}

    def update(state, batch, key):
        del key
        returns = discounted_returns(batch.reward, batch.discount,
                                     jnp.zeros_like(batch.bootstrap_value))
        adv = returns - returns.mean()

        def loss(p):
            logits = _features(batch.obs, batch.extras["mem"]) @ p["w"] + p["b"]
            logp = jax.nn.log_softmax(logits)
            taken = jnp.take_along_axis(logp, batch.action[..., None], -1)[..., 0]
            return -(adv * taken).mean()

        grads = jax.grad(loss)(state)
        state = jax.tree.map(lambda p, g: p - cfg.lr * g, state, grads)
        return state, {"loss/actor": loss(state)}

    return Agent(init=init, act=act, update=update,
                 init_carry=lambda n: jnp.zeros(n, jnp.float32))


toy = AlgoSpec(
    name="toy_recurrent", config=ToyConfig, make=_make_toy, action_spaces=("Discrete",),
    run=RunConfig(total_steps=8 * 20 * 60, num_envs=8, num_steps=20, num_evals=3,
                  num_eval_envs=64))


@config
class CountConfig:
    gamma: float = 0.9
    reward_scale: float = 1.0


def _make_count(cfg, spec) -> Agent:
    """carry = steps since the episode started (0 on its first step)."""

    def act(state, carry, obs, first, key, eval=False):
        count = jnp.where(first, 0, carry + 1)
        return jnp.zeros(obs.shape[0], jnp.int32), count, {"count": count}

    def update(state, batch, key):
        # Probe-Memory-v0 queries on the 5th step of each episode (count 4).
        wrong = (batch.extras["count"] == 4) != (batch.obs[..., 1] == 1.0)
        return state, {"count_error": wrong.sum().astype(jnp.float32)}

    return Agent(init=lambda key: jnp.zeros(()), act=act, update=update,
                 init_carry=lambda n: jnp.zeros(n, jnp.int32))


count_algo = AlgoSpec(
    name="count_steps", config=CountConfig, make=_make_count,
    run=RunConfig(total_steps=3 * 7 * 6, num_envs=3, num_steps=7, num_evals=2,
                  num_eval_envs=2))


class MemoryHost(HostEnv):
    """``Probe-Memory-v0`` in numpy, as a host env."""

    delay = 3

    def __init__(self, num_envs, seed=0):
        spec = EnvSpec((2,), "float32", Discrete(2), max_episode_steps=20,
                       name="host-memory")
        super().__init__(spec, num_envs, seed)

    def _obs(self):
        cue = np.where(self.t == 0, self.cue, 0.0)
        return np.stack([cue, self.t == self.delay + 1], -1).astype(np.float32)

    def _new_cues(self, done):
        self.cue = np.where(done, self.rng.choice([-1.0, 1.0], self.num_envs), self.cue)

    def _reset(self, seed):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = np.zeros(self.num_envs, np.int64)
        self.cue = np.zeros(self.num_envs)
        self._new_cues(np.ones(self.num_envs, bool))
        return self._obs()

    def _step(self, actions):
        query = self.t == self.delay + 1
        right = actions == (self.cue > 0)
        reward = np.where(query, np.where(right, 1.0, -1.0), 0.0)
        self.t = self.t + 1
        final = self._obs()
        self.t = np.where(query, 0, self.t)
        self._new_cues(query)
        obs = self._obs()
        return obs, reward, query, np.zeros(self.num_envs, bool), final, {
            "recall": (query & right).astype(np.float32)}


def test_memory_probe_needs_the_carry_in_jit():
    env = purerl.envs.make("Probe-Memory-v0")
    keys = jax.random.split(jax.random.key(0), 2)
    _, with_carry = jax.jit(jax.vmap(loops.make_train(toy, env, ToyConfig())))(keys)
    _, blind = jax.jit(jax.vmap(loops.make_train(toy, env, ToyConfig(use_carry=False))))(keys)
    final = np.asarray(with_carry["eval/return"])[:, -1]
    assert np.all(final >= 0.9), final
    assert np.all(np.abs(np.asarray(blind["eval/return"])[:, -1]) <= 0.5)
    # The env's own metric, averaged per block: recall at 1 of the 5 steps per episode.
    recall = np.asarray(with_carry["env/recall"])[:, -1]
    np.testing.assert_allclose(recall, 0.2, atol=0.03)
    assert np.all(np.asarray(with_carry["env/recall/last"])[:, -1] >= 0.0)
    assert np.all(np.asarray(blind["env/recall"])[:, -1] < 0.15)


def test_memory_probe_needs_the_carry_on_the_host():
    def train(cfg, seed):
        loop = host_loop.HostLoop(toy, MemoryHost(toy.run.num_envs * 2, seed), cfg,
                              num_seeds=2, eval_env=MemoryHost(toy.run.num_eval_envs * 2,
                                                               seed + 1))
        runner = loop.init(jax.random.key(seed))
        for _ in range(loop.schedule.num_evals):
            runner, metrics = loop.block(runner)
        return metrics

    metrics = train(ToyConfig(), 0)
    assert np.all(metrics["eval/return"] >= 0.9), metrics["eval/return"]
    np.testing.assert_allclose(metrics["env/recall"], 0.2, atol=0.03)
    blind = train(ToyConfig(use_carry=False), 0)
    assert np.all(np.abs(blind["eval/return"]) <= 0.5)


def test_carry_and_first_follow_episodes_in_jit():
    env = purerl.envs.make("Probe-Memory-v0")
    _, metrics = jax.jit(loops.make_train(count_algo, env, CountConfig()))(jax.random.key(0))
    # Every update saw count == 4 exactly at the query steps (obs [0, 1]).
    assert np.all(np.asarray(metrics["count_error"]) == 0.0)


def test_carry_and_first_follow_episodes_on_the_host():
    loop = host_loop.HostLoop(count_algo, MemoryHost(3), CountConfig())
    runner = loop.init(jax.random.key(0))
    runner, history = loop.run(runner, 4)
    assert np.all(history["count_error"] == 0.0)
    # A restart (as after a resume) begins new episodes: first is True again.
    loop.reset(seed=5)
    runner, history = loop.run(runner, 2)
    assert np.all(history["count_error"] == 0.0)


def test_non_finite_guard_names_the_metric_or_parameter_and_the_seed():
    from purerl.run_loop import first_non_finite

    params = {"actor": {"w": jnp.ones((3, 2, 2))}, "step": jnp.zeros(3, jnp.int32)}
    state = types.SimpleNamespace(params=params)
    row = {"block": 2, "env_steps": np.array([5, 5, 5]),
           "loss/critic": np.array([0.1, 0.2, 0.3]),
           "env/state_entropy": np.array([np.nan, np.nan, np.nan]),  # not measured yet
           "eval/return": np.array([1.0, 2.0, 3.0])}
    assert first_non_finite(row, state) is None
    assert first_non_finite({**row, "loss/critic": np.array([0.1, np.inf, 0.3])},
                            state) == ("loss/critic", 1)
    bad = {"actor": {"w": params["actor"]["w"].at[2, 0, 1].set(jnp.nan)},
           "step": params["step"]}
    assert first_non_finite(row, types.SimpleNamespace(params=bad)) == (
        "parameter ['actor']['w']", 2)


def _make_noisy(cfg, spec) -> Agent:
    """Acts at random in eval mode too: its actions show the keys it is given."""

    def act(state, carry, obs, first, key, eval=False):
        return jax.random.bernoulli(key, 0.5, obs.shape[:1]).astype(jnp.int32), carry, {}

    return Agent(init=lambda key: jnp.zeros(()), act=act,
                 update=lambda state, batch, key: (state, {}),
                 init_carry=lambda n: jnp.zeros(n, jnp.int32))


noisy_algo = AlgoSpec(
    name="noisy_eval", config=CountConfig, make=_make_noisy,
    run=RunConfig(total_steps=2 * 5 * 2, num_envs=2, num_steps=5, num_evals=2,
                  num_eval_envs=16))


class RecordingHost(MemoryHost):
    def __init__(self, num_envs, seed=0):
        super().__init__(num_envs, seed)
        self.actions = []

    def step(self, action):
        self.actions.append(np.array(action))
        return super().step(action)


def test_host_evaluation_draws_fresh_keys_per_step_and_per_evaluation():
    # Each eval step of 16 envs x 2 seeds draws 32 random bits: with one key for every
    # step (the bug fixed here) all 20 steps of an evaluation were the same draw.
    evaluation = RecordingHost(2 * 16)
    loop = host_loop.HostLoop(noisy_algo, MemoryHost(2 * 2), CountConfig(), num_seeds=2,
                              eval_env=evaluation)
    runner = loop.init(jax.random.key(0))
    loop.evaluate(runner)
    first = np.stack(evaluation.actions)
    assert len({a.tobytes() for a in first}) == len(first), "eval steps repeat a draw"
    assert not np.array_equal(first[0, :16], first[0, 16:]), "seeds share eval keys"
    evaluation.actions.clear()
    loop.evaluate(runner)
    np.testing.assert_array_equal(np.stack(evaluation.actions), first)  # deterministic
    runner, _ = loop.block(runner)  # the next evaluation draws anew
    evaluation.actions.clear()
    loop.evaluate(runner)
    assert not np.array_equal(np.stack(evaluation.actions), first)
