"""The maze testbed: walls hold, moves are exact, the goal pays only in the Goal
variant, time limits truncate, and coverage equals a numpy recount of the visited
subcells of all a seed's envs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import envs
from purerl.envs import maze as maze_lib

N_ENVS = 3


def layout_free(name):
    return np.array([list(r) for r in maze_lib.LAYOUTS[name]]) != "#"


def rollout(env_id, steps, seed=0, actions=None):
    """Random (or given) actions through the vectorised env, as numpy."""
    env = envs.vectorize(envs.make(env_id), N_ENVS)
    step = jax.jit(env.step)
    state, ts = jax.jit(env.reset)(jax.random.key(seed))
    key = jax.random.key(seed + 1)
    out = {"reset_obs": np.asarray(ts.obs), "final_obs": [], "reward": [],
           "terminated": [], "truncated": [], "coverage": [], "entropy": [],
           "kl_uniform": [], "kl_corridor": []}
    for t in range(steps):
        key, k_a, k_s = jax.random.split(key, 3)
        a = (jax.random.uniform(k_a, (N_ENVS, 2), minval=-1.0, maxval=1.0)
             if actions is None else jnp.broadcast_to(actions[t], (N_ENVS, 2)))
        state, ts = step(state, a, k_s)
        out["final_obs"].append(np.asarray(ts.info["final_obs"]))
        out["reward"].append(np.asarray(ts.reward))
        out["terminated"].append(np.asarray(ts.terminated))
        out["truncated"].append(np.asarray(ts.truncated))
        out["coverage"].append(np.asarray(ts.info["metrics"]["coverage"]))
        out["entropy"].append(np.asarray(ts.info["metrics"]["state_entropy"]))
        for name in ("kl_uniform", "kl_corridor"):
            out[name].append(np.asarray(ts.info["metrics"][name]))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def random_run():
    return rollout("Maze-Bottleneck-v0", 600)


def test_ids_and_spec():
    ids = envs.known_ids()
    for layout in maze_lib.LAYOUTS:
        assert f"Maze-{layout}-v0" in ids and f"Maze-{layout}-Goal-v0" in ids
    spec = envs.make("Maze-Rooms-Goal-v0").spec
    assert spec.obs_shape == (2,) and spec.action_space.shape == (2,)
    assert spec.max_episode_steps == maze_lib.MAX_STEPS
    with pytest.raises(ValueError, match="step_size must be in"):
        envs.make("Maze-Open-v0", step_size=1.5)
    with pytest.raises(ValueError, match="unknown env id"):
        envs.make("Maze-Nowhere-v0")


def test_fourier_ids_add_features_of_the_position_and_change_nothing_else():
    """The same keys and actions on ``-Fourier`` and plain ids: the position leads the
    observation, the features are cos(2π B·p + c) (numpy, float64), and rewards,
    time limits and coverage metrics are the plain id's."""
    for task in ("", "-Goal"):
        spec = envs.make(f"Maze-Bottleneck{task}-Fourier-v0").spec
        assert spec.obs_shape == (2 + maze_lib.FOURIER_FEATURES,)
        assert maze_lib.maze_layout(f"Maze-Bottleneck{task}-Fourier-v0") == "Bottleneck"
        plain = rollout(f"Maze-Bottleneck{task}-v0", 400)  # the window fills at 342
        four = rollout(f"Maze-Bottleneck{task}-Fourier-v0", 400)
        for name in ("reset_obs", "final_obs"):
            p = plain[name].astype(np.float64)
            np.testing.assert_array_equal(four[name][..., :2], plain[name])
            features = np.cos(2 * np.pi * p @ maze_lib._FOURIER_B.T + maze_lib._FOURIER_C)
            np.testing.assert_allclose(four[name][..., 2:], features, atol=2e-5)
        for name in ("reward", "truncated", "coverage", "entropy", "kl_uniform"):
            np.testing.assert_array_equal(four[name], plain[name])
        assert np.isfinite(plain["entropy"][-1]).all() and plain["truncated"].any()


def test_every_visited_position_is_free(random_run):
    free = layout_free("Bottleneck")
    scale = max(free.shape)
    pos = random_run["final_obs"].reshape(-1, 2) * scale
    cols, rows = np.floor(pos[:, 0]).astype(int), np.floor(pos[:, 1]).astype(int)
    assert free[rows, cols].all()


def test_moves_are_exact_and_blocked_by_walls():
    maze = maze_lib.Maze("Open")
    params = maze.default_params
    state = maze_lib.MazeState(time=0, pos=jnp.array([1.5, 1.5]))
    _, s1, _, _, _ = maze.step_env(jax.random.key(0), state, jnp.array([1.0, -0.4]), params)
    np.testing.assert_allclose(s1.pos, [1.75, 1.4], atol=1e-6)
    # Into the wall on the left (x < 1): the x leg is not taken, the y leg is.
    near_wall = maze_lib.MazeState(time=0, pos=jnp.array([1.1, 3.5]))
    _, s2, _, _, _ = maze.step_env(jax.random.key(0), near_wall, jnp.array([-1.0, 1.0]),
                                   params)
    np.testing.assert_allclose(s2.pos, [1.1, 3.75], atol=1e-6)


def test_time_limit_truncates_and_never_terminates(random_run):
    assert not random_run["terminated"].any()
    steps = np.nonzero(random_run["truncated"][:, 0])[0]
    np.testing.assert_array_equal(steps, [maze_lib.MAX_STEPS - 1, 2 * maze_lib.MAX_STEPS - 1])


def test_goal_variant_pays_only_near_the_goal():
    # A scripted path through the Bottleneck corridor to G; the reward-free id pays 0.
    path = [(1.0, 0.0)] * 10 + [(0.0, 1.0)] * 8 + [(1.0, 0.0)] * 50 + [(0.0, 1.0)] * 20
    actions = jnp.asarray(path, jnp.float32)
    goal = rollout("Maze-Bottleneck-Goal-v0", len(path), actions=actions)
    free = rollout("Maze-Bottleneck-v0", len(path), actions=actions)
    assert goal["reward"][-1].min() == 1.0 and free["reward"].max() == 0.0
    _, _, goal_xy = maze_lib._parse(maze_lib.LAYOUTS["Bottleneck"])
    scale = max(layout_free("Bottleneck").shape)
    dist = np.linalg.norm(goal["final_obs"] * scale - goal_xy, axis=-1)
    np.testing.assert_array_equal(goal["reward"] == 1.0, dist <= maze_lib.GOAL_RADIUS)


def test_coverage_equals_a_numpy_recount_over_all_envs(random_run):
    res = maze_lib.COVERAGE_RES
    free = np.kron(layout_free("Bottleneck"), np.ones((res, res), bool))
    scale = max(layout_free("Bottleneck").shape)
    visited = np.zeros_like(free)

    def mark(obs):
        cells = np.floor(obs * scale * res).astype(int)
        visited[cells[:, 1], cells[:, 0]] = True

    mark(random_run["reset_obs"])
    for t, obs in enumerate(random_run["final_obs"]):
        mark(obs)
        expected = (visited & free).sum() / free.sum()
        np.testing.assert_allclose(random_run["coverage"][t], expected, rtol=1e-6)
    assert np.all(np.diff(random_run["coverage"][:, 0]) >= 0)


def test_state_entropy_is_nan_until_the_window_fills(random_run):
    entropy = random_run["entropy"][:, 0]
    first = (maze_lib.ENTROPY_WINDOW - N_ENVS) // N_ENVS  # the step that fills it
    assert np.isnan(entropy[: first]).all()
    assert np.isfinite(entropy[first + 1:]).all()
    # The value is the estimate of the window of positions, in cell units.
    assert 0.0 < entropy[-1] < np.log(layout_free("Bottleneck").sum())


def numpy_masses(name, target):
    """p* on the subcell grid, recomputed by hand from the layout strings."""
    res = maze_lib.COVERAGE_RES
    free = np.kron(layout_free(name), np.ones((res, res), bool))
    if target == "uniform":
        return free / free.sum()
    x0, x1, y0, y1 = maze_lib.CORRIDORS[name]
    region = np.zeros_like(free)
    for y in range(y0 * res, y1 * res):
        for x in range(x0 * res, x1 * res):
            region[y, x] = free[y, x]
    floor = maze_lib.TARGET_FLOOR
    return (1 - floor) * region / region.sum() + floor * free / free.sum()


def test_targets_are_distributions_on_the_reachable_subcells():
    for name in maze_lib.CORRIDORS:
        for target in ("uniform", "corridor"):
            m = maze_lib.target_masses(name, target)
            np.testing.assert_allclose(m, numpy_masses(name, target), atol=1e-12)
            assert abs(m.sum() - 1) < 1e-9 and (m[~np.kron(
                layout_free(name), np.ones((2, 2), bool))] == 0).all()
    # Bottleneck's corridor is the six cells of row 3 between the rooms' walls.
    assert maze_lib.target_masses("Bottleneck", "corridor")[7, 12:24].min() > 0.9 / 24
    with pytest.raises(ValueError, match="unknown target 'corridor' for maze layout Open"):
        maze_lib.target_masses("Open", "corridor")
    with pytest.raises(ValueError, match="not a maze id"):
        maze_lib.log_target("CartPole-v1", "uniform")


def test_log_target_reads_the_subcell_of_each_observation():
    log_p = jax.jit(maze_lib.log_target("Maze-Bottleneck-Goal-v0", "corridor"))
    masses = numpy_masses("Bottleneck", "corridor")
    scale = max(layout_free("Bottleneck").shape)
    xy = np.array([[1.5, 1.5], [8.2, 3.6], [14.9, 5.1], [6.01, 3.99]])  # cell units
    expected = [np.log(masses[int(y * 2), int(x * 2)]) for x, y in xy]
    np.testing.assert_allclose(log_p(xy / scale), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(log_p)(xy[None] / scale)[0], expected, rtol=1e-6)


def test_grid_kls_equal_a_numpy_histogram_of_the_window(random_run):
    window = maze_lib.ENTROPY_WINDOW
    scale = max(layout_free("Bottleneck").shape)
    # Positions in visiting order (reset, then each step's), N_ENVS per step.
    pos = np.concatenate([random_run["reset_obs"][None], random_run["final_obs"]])
    pos = pos.reshape(-1, 2) * scale
    steps = len(random_run["final_obs"])
    # The last refill: the latest step t at which (t + 2) * N_ENVS crossed a multiple.
    counts = (np.arange(steps) + 2) * N_ENVS
    t = max(i for i in range(steps) if counts[i] // window > (counts[i] - N_ENVS) // window)
    last = pos[counts[t] - window:counts[t]]
    cells = np.floor(last * 2).astype(int)
    for target in ("uniform", "corridor"):
        p = numpy_masses("Bottleneck", target)
        rho = np.zeros_like(p)
        np.add.at(rho, (cells[:, 1], cells[:, 0]), 1.0 / window)
        nz = rho > 0
        kl = np.sum(rho[nz] * np.log(rho[nz] / p[nz]))
        np.testing.assert_allclose(random_run[f"kl_{target}"][-1], kl, rtol=1e-4)
        assert np.isnan(random_run[f"kl_{target}"][0]).all()
    # A random walk from the start stays in the left room: far from the corridor.
    assert random_run["kl_corridor"][-1, 0] > random_run["kl_uniform"][-1, 0] > 0
