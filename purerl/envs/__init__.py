"""Environments: ``make(id)`` for pure-JAX envs, wrappers, adapters.

    env = purerl.envs.make("CartPole-v1")
    state, ts = env.reset(key)
    state, ts = env.step(state, action, key)
"""

from purerl.envs.core import Env
from purerl.envs.gymnax import from_gymnax
from purerl.envs.host import HostEnv, make_host
from purerl.envs.wrappers import normalize_obs, vectorize

# Every id of gymnax 1.0's registry that the adapter (purerl.envs.gymnax) steps:
# Discrete or Box actions, array observations. Left out: MNISTBandit-bsuite, which
# downloads MNIST when it is made (from_gymnax takes it once it is there).
GYMNAX_IDS = (
    "CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0",
    "MountainCarContinuous-v0",
    "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar",
    "Catch-bsuite", "DeepSea-bsuite", "MemoryChain-bsuite", "UmbrellaChain-bsuite",
    "DiscountingChain-bsuite", "SimpleBandit-bsuite",
    "FourRooms-misc", "MetaMaze-misc", "PointRobot-misc", "BernoulliBandit-misc",
    "GaussianBandit-misc", "Reacher-misc", "Swimmer-misc", "Pong-misc", "FrozenLake-misc",
)
HOST_KINDS = "gymnasium:<id> and dmc:<domain>-<task>"


def known_ids() -> tuple[str, ...]:
    from purerl.envs.maze import maze_ids
    from purerl.envs.mjx import mjx_ids
    from purerl.envs.probes import PROBES

    return GYMNAX_IDS + tuple(PROBES) + maze_ids() + mjx_ids()


def make(env_id: str, **params) -> Env:
    """Build a pure-JAX environment by id.

    Args:
      env_id: one of ``known_ids()``.
      **params: overrides of the environment's parameters (e.g.
        ``max_steps_in_episode=200``); for ``mjx:`` ids the options of
        ``purerl.envs.mjx.make_mjx`` (``solver``, ``action_repeat``).

    Raises:
      ValueError: for an unknown id, listing the known ones.
    """
    from purerl.envs.maze import make_maze, maze_ids
    from purerl.envs.probes import PROBES

    if env_id in maze_ids():
        return make_maze(env_id, **params)
    if env_id.startswith("mjx:"):
        from purerl.envs.mjx import make_mjx

        unknown = sorted(set(params) - {"solver", "action_repeat"})
        if unknown:
            raise ValueError(f"bad parameters for {env_id}: {unknown}; mjx envs take "
                             "solver and action_repeat")
        return make_mjx(env_id, **params)
    if env_id in PROBES:
        env = PROBES[env_id]()
        default_params = env.default_params
    elif env_id in GYMNAX_IDS:
        import gymnax

        env, default_params = gymnax.make(env_id)
    elif env_id.startswith(("gymnasium:", "dmc:")):
        raise ValueError(f"{env_id!r} is a host env: purerl.envs.make_host({env_id!r}) "
                         f"(stepped outside jit; the scripts take it as --env)")
    else:
        raise ValueError(
            f"unknown env id {env_id!r}; pure-JAX ids: {', '.join(known_ids())}; also "
            f"mjx:<domain>-<task> (MuJoCo MJX, pure JAX) and the host envs {HOST_KINDS} "
            f"(purerl.envs.make_host)")
    try:
        env_params = default_params.replace(**params) if params else default_params
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad parameters for {env_id}: {e}") from None
    return from_gymnax(env, env_params, name=env_id)


__all__ = [
    "Env", "make", "known_ids", "vectorize", "normalize_obs", "from_gymnax",
    "make_host", "HostEnv",
]
