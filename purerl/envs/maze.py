"""A 2-D point mass in a maze: a pure-JAX testbed for exploration, with exact coverage.

The arena is a grid of unit cells, walls (``#``) and free cells (``.``, the start
``S``, the goal ``G``). The agent is a point at a continuous position; an action
``a ∈ [-1, 1]²`` moves it by ``step_size · a`` (kinematic control: no velocity, so
what is hard is where to go, not how to steer). The move is applied one axis at a
time, x then y, and a leg whose end would be in a wall or outside the arena is not
taken; since ``step_size < 1``, a leg crosses at most one cell boundary, so the point
never passes through a wall. Episodes start at the centre of the ``S`` cell (plus a
uniform jitter of ±0.1) and are cut by a time limit, never terminated: the hard
part is getting through the bottlenecks far from the start. Observations are the
position divided by the arena's larger side, in ``[0, 1]²``.

Ids (``purerl.envs.make``):

* ``Maze-<Layout>-v0``: reward-free (reward 0 at every step), for pre-training.
* ``Maze-<Layout>-Goal-v0``: sparse reward 1 at every step the point is within 0.5 of
  the centre of the ``G`` cell, else 0 (no termination), for fine-tuning.
* ``Maze-<Layout>[-Goal]-Fourier-v0``: the same env, observed as the position followed
  by ``FOURIER_FEATURES`` fixed random Fourier features of it, cos(2π B·p + c), with
  B ~ N(0, ``FOURIER_SCALE``²) per unit of the normalised position p and c ~ U[0, 2π),
  drawn once from seed 0 (Rahimi & Recht, "Random Features for Large-Scale Kernel
  Machines", NeurIPS 2007). An observation of more than two dimensions for agents whose
  representation of a 2-d state is too poor: Proto-RL's identity encoder embeds a
  state as normalize(W·obs + b), which, for a 2-d obs, keeps little more than an angle.

Layouts: ``Open`` (one room, no bottleneck), ``Rooms`` (four rooms joined by doors
two cells wide), ``UMaze`` (a corridor two cells wide folded around a wall) and
``Bottleneck`` (two rooms joined by a corridor one cell wide and six long: the
narrowest bottleneck).

Coverage: every env of this module reports, through the driver's env metrics
(``info["metrics"]``, see ``purerl.loops``):

* ``coverage``: the fraction of the reachable cells of a fixed grid (each layout cell
  split into ``COVERAGE_RES × COVERAGE_RES`` subcells; reachable = free, the layouts
  being connected) that the training envs of a seed have visited since the run
  began. The visited set is kept by ``track_coverage``, which ``vectorize`` applies to
  the vectorised env, so it is shared by all the envs of a seed and checkpointed with
  the env state.
* ``state_entropy``: the Kozachenko-Leonenko estimate (``purerl.ops.knn_entropy``,
  k = 3, nats) of the last ``ENTROPY_WINDOW`` visited positions (all envs together,
  in cell units, dithered by ±0.001 so that repeated positions do not give −inf),
  recomputed each time the window has been refilled (NaN before the first time).
* ``kl_uniform`` and, on the layouts with a corridor (``CORRIDORS``), ``kl_corridor``:
  KL(ρ ‖ p*) in nats on the coverage grid, ρ the histogram of that same window over
  the subcells (the recent state marginal), p* a target distribution over the
  reachable subcells (``target_masses``): uniform, or ``1 − TARGET_FLOOR`` of the mass
  spread evenly on the corridor and ``TARGET_FLOOR`` over every reachable subcell (a
  floor keeps the KL finite while the point crosses the room to get there). Updated
  with the entropy. SMM (``purerl.algos.smm``) can take the same p* as its target.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from purerl.control import when
from purerl.envs.core import Env
from purerl.ops.knn import knn_entropy

LAYOUTS = {
    "Open": (
        "#########",
        "#S......#",
        "#.......#",
        "#.......#",
        "#.......#",
        "#.......#",
        "#.......#",
        "#......G#",
        "#########",
    ),
    "Rooms": (
        "#############",
        "#S....#.....#",
        "#.....#.....#",
        "#...........#",
        "#...........#",
        "#.....#.....#",
        "###..####..##",
        "#.....#.....#",
        "#.....#.....#",
        "#...........#",
        "#...........#",
        "#.....#....G#",
        "#############",
    ),
    "UMaze": (
        "###########",
        "#S.......G#",
        "#.........#",
        "#######...#",
        "#.........#",
        "#.........#",
        "#...#######",
        "#.........#",
        "#.........#",
        "###########",
    ),
    "Bottleneck": (
        "##################",
        "#S....######.....#",
        "#.....######.....#",
        "#................#",
        "#.....######.....#",
        "#.....######....G#",
        "##################",
    ),
}
COVERAGE_RES = 2
# Cell rectangles (x0, x1, y0, y1), ends excluded, of the one-cell-high corridor of
# Bottleneck and the middle corridor of UMaze: where the non-uniform target puts its mass.
CORRIDORS = {"Bottleneck": (6, 12, 3, 4), "UMaze": (1, 10, 4, 6)}
TARGET_FLOOR = 0.05
ENTROPY_WINDOW = 1024
STEP_SIZE = 0.25
MAX_STEPS = 250
GOAL_RADIUS = 0.5
DITHER = 1e-3
FOURIER_FEATURES = 14
FOURIER_SCALE = 3.0
_FOURIER_B = np.random.default_rng(0).normal(0.0, FOURIER_SCALE, (FOURIER_FEATURES, 2))
_FOURIER_C = np.random.default_rng(1).uniform(0.0, 2 * np.pi, FOURIER_FEATURES)


def _parse(rows):
    grid = np.array([list(r) for r in rows])
    free = grid != "#"
    start = np.argwhere(grid == "S")[0]
    goal = np.argwhere(grid == "G")[0]
    # (row, col) -> (x, y) cell centres; x grows with the column, y with the row.
    return free, np.array([start[1], start[0]]) + 0.5, np.array([goal[1], goal[0]]) + 0.5


@struct.dataclass
class MazeState(environment.EnvState):
    pos: jax.Array  # [2] float32 (x, y)


@struct.dataclass
class MazeParams(environment.EnvParams):
    max_steps_in_episode: int = MAX_STEPS
    step_size: float = STEP_SIZE


class Maze(environment.Environment):
    """A layout of ``LAYOUTS``; ``goal=True`` for the sparse-goal task; ``fourier=True``
    appends the random Fourier features to the observation."""

    def __init__(self, layout: str, goal: bool = False, fourier: bool = False):
        super().__init__()
        self.layout, self.goal, self.fourier = layout, goal, fourier
        free, start, goal_xy = _parse(LAYOUTS[layout])
        self.free = jnp.asarray(free)
        self.height, self.width = free.shape
        self.scale = float(max(free.shape))
        self.start = jnp.asarray(start, jnp.float32)
        self.goal_xy = jnp.asarray(goal_xy, jnp.float32)

    @property
    def default_params(self):
        return MazeParams()

    def is_free(self, pos):
        col, row = jnp.floor(pos[0]).astype(jnp.int32), jnp.floor(pos[1]).astype(jnp.int32)
        inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        return inside & self.free[jnp.clip(row, 0, self.height - 1),
                                  jnp.clip(col, 0, self.width - 1)]

    def get_obs(self, state, params=None, key=None):
        return self.observe(state.pos)

    def observe(self, pos):
        """The observation of positions ``[..., 2]`` (cells)."""
        p = pos / self.scale
        if not self.fourier:
            return p
        b = jnp.asarray(_FOURIER_B, jnp.float32)
        c = jnp.asarray(_FOURIER_C, jnp.float32)
        return jnp.concatenate([p, jnp.cos(2 * jnp.pi * (p @ b.T) + c)], axis=-1)

    def reset_env(self, key, params):
        jitter = jax.random.uniform(key, (2,), minval=-0.1, maxval=0.1)
        state = MazeState(time=0, pos=self.start + jitter)
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        move = params.step_size * jnp.clip(action, -1.0, 1.0)
        pos = state.pos
        for axis in range(2):  # x, then y; a blocked leg is not taken
            leg = pos.at[axis].add(move[axis])
            pos = jnp.where(self.is_free(leg), leg, pos)
        at_goal = jnp.linalg.norm(pos - self.goal_xy) <= GOAL_RADIUS
        reward = jnp.where(at_goal, 1.0, 0.0) if self.goal else jnp.float32(0.0)
        state = MazeState(time=state.time + 1, pos=pos)
        return self.get_obs(state), state, reward, jnp.bool_(False), {}

    def observation_space(self, params):
        if self.fourier:
            return spaces.Box(-1.0, 1.0, (2 + FOURIER_FEATURES,), jnp.float32)
        return spaces.Box(0.0, 1.0, (2,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)


@struct.dataclass
class CoverageState:
    inner: object
    visited: jax.Array  # [rows * RES, cols * RES] bool: subcells visited so far
    window: jax.Array  # [ENTROPY_WINDOW, 2] float32: the latest visited positions
    cursor: jax.Array  # int32: positions written into the window so far
    entropy: jax.Array  # float32: knn_entropy of the window when it was last full
    kl: jax.Array  # [len(targets)] float32: KL(window histogram ‖ target), same time


def subcell_grid(layout: str) -> np.ndarray:
    """The coverage grid: ``[rows * RES, cols * RES]`` bool, True on reachable subcells."""
    free = np.array([list(r) for r in LAYOUTS[layout]]) != "#"
    return np.kron(free, np.ones((COVERAGE_RES, COVERAGE_RES), bool))


def target_masses(layout: str, target: str) -> np.ndarray:
    """p* on the coverage grid (``[rows * RES, cols * RES]``, sums to 1, zero on walls):
    ``"uniform"`` over the reachable subcells, or ``"corridor"`` (layouts in
    ``CORRIDORS``): ``1 − TARGET_FLOOR`` evenly on the corridor's subcells plus
    ``TARGET_FLOOR`` evenly on all reachable ones."""
    free = subcell_grid(layout)
    uniform = free / free.sum()
    if target == "uniform":
        return uniform
    if target != "corridor" or layout not in CORRIDORS:
        known = ["uniform"] + (["corridor"] if layout in CORRIDORS else [])
        raise ValueError(f"unknown target {target!r} for maze layout {layout}; known: "
                         f"{', '.join(known)} (corridors: {', '.join(CORRIDORS)})")
    x0, x1, y0, y1 = (COVERAGE_RES * c for c in CORRIDORS[layout])
    region = np.zeros_like(free)
    region[y0:y1, x0:x1] = True
    region &= free
    return (1.0 - TARGET_FLOOR) * region / region.sum() + TARGET_FLOOR * uniform


def log_masses(layout: str, target: str) -> np.ndarray:
    """``log target_masses`` flattened (``row * cols + col``), float32; walls get
    log 1 = 0, as no position is ever in one."""
    masses = target_masses(layout, target)
    return np.log(np.where(masses > 0, masses, 1.0)).reshape(-1).astype(np.float32)


def subcell_index(maze_shape, pos):
    """Flat index ``row * cols + col`` of the coverage subcell holding each position
    (cell units, ``[..., 2]`` as (x, y)), clipped into the grid."""
    rows, cols = maze_shape[0] * COVERAGE_RES, maze_shape[1] * COVERAGE_RES
    cells = jnp.floor(pos * COVERAGE_RES).astype(jnp.int32)
    row = jnp.clip(cells[..., 1], 0, rows - 1)
    col = jnp.clip(cells[..., 0], 0, cols - 1)
    return row * cols + col


def log_target(env_id: str, target: str):
    """``log p*(obs)``: the log mass of ``target_masses`` on the subcell holding each
    observation of maze ``env_id`` (observations are positions over the larger side),
    as a function ``obs [..., 2] -> [...]``; constant up to the subcells' area, which
    no reward needs."""
    layout = maze_layout(env_id)
    log_mass = jnp.asarray(log_masses(layout, target))
    shape = (len(LAYOUTS[layout]), len(LAYOUTS[layout][0]))  # rows, cols of cells
    scale = float(max(shape))
    return lambda obs: log_mass[subcell_index(shape, jnp.asarray(obs) * scale)]


def maze_layout(env_id: str) -> str:
    """``"Bottleneck"`` for ``Maze-Bottleneck[-Goal][-Fourier]-v0``; a clear error
    otherwise."""
    if env_id not in maze_ids():
        raise ValueError(f"{env_id!r} is not a maze id ({', '.join(maze_ids())})")
    name = env_id[len("Maze-"):-len("-v0")].removesuffix("-Fourier")
    return name.removesuffix("-Goal")


def track_coverage(env: Env, maze: Maze) -> Env:
    """Add ``coverage``, ``state_entropy`` and the grid KLs (see the module docstring)
    to a vectorised maze env's ``info["metrics"]``."""
    free = subcell_grid(maze.layout)
    reachable = jnp.asarray(free)
    n_reachable = float(free.sum())
    n, window = env.num_envs, ENTROPY_WINDOW
    targets = ["uniform"] + (["corridor"] if maze.layout in CORRIDORS else [])
    log_p = jnp.asarray(np.stack([log_masses(maze.layout, t) for t in targets]))

    def window_stats(operand):
        positions, cursor = operand
        # A point pushed into a wall repeats its position exactly, and a repeated
        # sample makes the estimate -inf: dither by U(±DITHER), far below a step.
        noise = jax.random.uniform(jax.random.fold_in(jax.random.key(0), cursor),
                                   positions.shape, minval=-DITHER, maxval=DITHER)
        idx = subcell_index(maze.free.shape, positions)
        rho = jnp.bincount(idx, length=free.size) / window
        log_rho = jnp.log(jnp.where(rho > 0, rho, 1.0))
        kl = jnp.sum(rho * (log_rho - log_p), axis=-1)  # 0 log 0 = 0
        return knn_entropy(positions + noise, 3), kl

    def visit(s: CoverageState, obs, first: bool = False):
        pos = obs[..., :2] * maze.scale  # the position leads every maze observation
        idx = subcell_index(maze.free.shape, pos)
        visited = s.visited.reshape(-1).at[idx].set(True).reshape(free.shape)
        slots = (s.cursor + jnp.arange(n)) % window
        cursor = s.cursor + n
        positions = s.window.at[slots].set(pos)
        if first and n < window:
            # The first visit cannot fill the window. Not left to the branch: under vmap
            # it runs on the reset's constants, and XLA's algebraic simplifier then
            # loops on them and logs an error-level line at every compile.
            entropy, kl = s.entropy, s.kl
        else:
            refilled = cursor // window > s.cursor // window
            entropy, kl = when(window_stats)(refilled, (positions, cursor),
                                             (s.entropy, s.kl))
        return CoverageState(s.inner, visited, positions, cursor, entropy, kl)

    def report(s: CoverageState, ts):
        coverage = jnp.sum(s.visited & reachable) / n_reachable
        metrics = {"coverage": jnp.full(n, coverage, jnp.float32),
                   "state_entropy": jnp.full(n, s.entropy, jnp.float32)}
        for i, t in enumerate(targets):
            metrics[f"kl_{t}"] = jnp.full(n, s.kl[i], jnp.float32)
        return ts._replace(info={**ts.info, "metrics": metrics})

    def reset(key):
        inner, ts = env.reset(key)
        empty = CoverageState(inner, jnp.zeros(free.shape, bool),
                              jnp.zeros((window, 2), jnp.float32), jnp.int32(0),
                              jnp.float32(jnp.nan),
                              jnp.full(len(targets), jnp.nan, jnp.float32))
        s = visit(empty, ts.obs, first=True)
        return s, report(s, ts)

    def step(s: CoverageState, action, key):
        inner, ts = env.step(s.inner, action, key)
        s = visit(s.replace(inner=inner), ts.info["final_obs"])
        return s, report(s, ts)

    return Env(reset=reset, step=step, spec=env.spec, num_envs=n, sync_eval=env.sync_eval)


def maze_ids():
    return tuple(f"Maze-{name}{task}{obs}-v0" for name in LAYOUTS for task in ("", "-Goal")
                 for obs in ("", "-Fourier"))


def maze_from_id(env_id: str) -> Maze:
    """The ``Maze`` of ``Maze-<Layout>[-Goal][-Fourier]-v0``; a clear error otherwise."""
    return Maze(maze_layout(env_id), "-Goal-" in env_id, env_id.endswith("-Fourier-v0"))


def make_maze(env_id: str, **params) -> Env:
    """``Maze-<Layout>[-Goal][-Fourier]-v0`` as a purerl ``Env`` that tracks coverage once
    vectorised."""
    from purerl.envs.gymnax import from_gymnax

    maze = maze_from_id(env_id)
    try:
        env_params = maze.default_params.replace(**params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad parameters for {env_id}: {e}") from None
    if not 0.0 < env_params.step_size < 1.0:
        raise ValueError(f"{env_id}: step_size must be in (0, 1) (less than one cell), "
                         f"got {env_params.step_size}")
    env = from_gymnax(maze, env_params, name=env_id)
    return dataclasses.replace(env, on_vectorize=lambda v: track_coverage(v, maze))
