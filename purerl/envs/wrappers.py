"""Environment wrappers: functions ``Env -> Env``."""

import jax
import jax.numpy as jnp
from flax import struct

from purerl.envs.core import Env, _keep_eval_state


def vectorize(env: Env, num_envs: int) -> Env:
    """Run ``num_envs`` independent copies of a single env in lockstep (``jax.vmap``).

    Every array gains a leading env axis of size ``num_envs``; each copy gets its own
    PRNG key and resets on its own. An env's ``on_vectorize`` is applied to the result.
    """
    if env.num_envs is not None:
        raise ValueError("vectorize: env is already vectorised")
    if int(num_envs) < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    v_reset = jax.vmap(env.reset)
    v_step = jax.vmap(env.step)
    if env.sync_eval is not _keep_eval_state:
        raise ValueError(
            "vectorize: wrappers that keep running statistics (normalize_obs) must be "
            "applied to the vectorised env, not to each copy"
        )

    def reset(key):
        return v_reset(jax.random.split(key, num_envs))

    def step(state, action, key):
        return v_step(state, action, jax.random.split(key, num_envs))

    vectorized = Env(reset=reset, step=step, spec=env.spec, num_envs=num_envs)
    return vectorized if env.on_vectorize is None else env.on_vectorize(vectorized)


@struct.dataclass
class NormalizeState:
    inner: object
    raw_obs: jax.Array  # [B, *obs_shape] the last observation before normalisation
    mean: jax.Array  # obs_shape float32, running mean over all envs and steps
    var: jax.Array  # obs_shape float32, running variance
    count: jax.Array  # float32 scalar, number of observations seen
    frozen: jax.Array  # bool scalar: evaluation envs use the statistics, never update them


def normalize_obs(env: Env, clip: float = 10.0, epsilon: float = 1e-8) -> Env:
    """Standardise observations with running mean/variance shared across the env axis.

    The statistics (Chan et al.'s parallel update) live in the env state, so they are
    checkpointed and vmapped with it. Apply to a vectorised env. ``info["final_obs"]``
    is normalised with the same statistics. Use ``env.sync_eval`` to give evaluation
    envs the training statistics, frozen.
    """
    if env.num_envs is None:
        raise ValueError("normalize_obs expects a vectorised env: use vectorize() first")

    def normalize(obs, s):
        return jnp.clip((obs - s.mean) / jnp.sqrt(s.var + epsilon), -clip, clip)

    def update(s, obs):
        batch_mean = obs.mean(axis=0)
        batch_var = obs.var(axis=0)
        n = jnp.float32(obs.shape[0])
        total = s.count + n
        delta = batch_mean - s.mean
        mean = s.mean + delta * n / total
        m2 = s.var * s.count + batch_var * n + delta**2 * s.count * n / total
        new = s.replace(mean=mean, var=m2 / total, count=total)
        return jax.tree.map(lambda a, b: jnp.where(s.frozen, a, b), s, new)

    def with_obs(ts, s):
        info = dict(ts.info, final_obs=normalize(ts.info["final_obs"], s))
        return ts._replace(obs=normalize(ts.obs, s), info=info)

    def reset(key):
        inner, ts = env.reset(key)
        shape = env.spec.obs_shape
        s = NormalizeState(
            inner,
            ts.obs,
            jnp.zeros(shape, jnp.float32),
            jnp.ones(shape, jnp.float32),
            jnp.float32(epsilon),
            jnp.bool_(False),
        )
        s = update(s, ts.obs)
        return s, with_obs(ts, s)

    def step(state, action, key):
        inner, ts = env.step(state.inner, action, key)
        s = update(state.replace(inner=inner, raw_obs=ts.obs), ts.obs)
        return s, with_obs(ts, s)

    def sync_eval(train_state, eval_state, ts):
        inner, ts = env.sync_eval(train_state.inner, eval_state.inner, ts)
        s = eval_state.replace(
            inner=inner,
            mean=train_state.mean,
            var=train_state.var,
            count=train_state.count,
            frozen=jnp.bool_(True),
        )
        # ts.obs was normalised with the eval env's own fresh statistics: redo it.
        return s, ts._replace(obs=normalize(s.raw_obs, s))

    return Env(reset=reset, step=step, spec=env.spec, num_envs=env.num_envs, sync_eval=sync_eval)
