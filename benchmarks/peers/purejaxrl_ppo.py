"""Peer throughput benchmark: PureJaxRL PPO (purejaxrl/ppo.py) on gymnax CartPole-v1.

Runs inside its own virtual environment (benchmarks/.venvs/purejaxrl, built by
benchmarks/peers/build_venvs.sh from requirements-purejaxrl.txt), never inside
purerl's. PureJaxRL is not a package: its single-file PPO is loaded, unedited,
from a directory the caller names. Usage:

    benchmarks/.venvs/purejaxrl/bin/python benchmarks/peers/purejaxrl_ppo.py \
        --purejaxrl-path DIR --num-seeds 8 --total-steps 500000

DIR holds ``ppo.py`` and ``wrappers.py`` (ppo.py does ``from wrappers import
LogWrapper, FlattenObservationWrapper``) from repository
github.com/luchris429/purejaxrl at commit 31756b1
(31756b197773a52db763fdbe6d635e4b46522a73), taken from a clone with

    git show 31756b1:purejaxrl/ppo.py > DIR/ppo.py
    git show 31756b1:purejaxrl/wrappers.py > DIR/wrappers.py

``--purejaxrl-path`` may also name DIR/ppo.py itself. Neither file is copied into
this repository. DIR goes first on sys.path (for ``import wrappers``) and ppo.py is
executed with ``importlib.util.spec_from_file_location``. Both files' git blob ids
are checked against the ones at 31756b1; a mismatch is reported on stderr and in
``notes`` (and ``version`` then says "modified"), the run still goes ahead.
wrappers.py imports brax and navix at module level (for wrappers CartPole does not
use), so the venv carries both; importing them adds about 120 MiB to peak RSS (2-core
dev machine), which ``peak_rss_mb`` includes since it measures PureJaxRL as shipped.
Their import-time warnings are sent to stderr.

gymnax 1.0 adaptation (from outside the files): PureJaxRL's wrappers unpack the
5-value ``env.step`` of gymnax < 1.0, ``(obs, state, reward, done, info)``; gymnax
1.0 returns 6, ``(obs, state, reward, terminated, truncated, info)``. Before
ppo.py's ``make_train`` runs, ``gymnax.make`` is replaced by a function that wraps
the env it makes in ``FiveValueStep``, whose ``step`` returns the old 5 values with
``done = terminated | truncated`` (what gymnax < 1.0 put in ``done``: its CartPole
done includes the 500-step time limit) and drops the three info keys gymnax 1.0
added (``terminated``, ``truncated``, ``final_observation``), so the info that
PureJaxRL stacks into its metrics is the old one (``discount`` plus LogWrapper's
keys). Everything else (reset, spaces, params) passes through.

All seeds are trained at once the way PureJaxRL's README does it:
``jax.jit(jax.vmap(make_train(config)))`` over a batch of ``jax.random.PRNGKey``
keys; ``--no-vmap`` (only with ``--num-seeds 1``) times plain
``jax.jit(make_train(config))``. The function is compiled ahead of time
(``.lower(keys).compile()``, reported as ``compile_seconds``), then run
``--repeats`` times on fresh keys with ``jax.block_until_ready``; the median run
is reported. The last line on stdout is one JSON object with the measurement.

Single device only: PureJaxRL's flax ``orthogonal`` kernel init deadlocks XLA:CPU
when its seed axis is sharded over host devices
(``--xla_force_host_platform_device_count``), so this benchmark has no
``--devices`` option and always runs on one CPU device. Even there, vmapped over 32
seeds, one process of the 2026-12-02 run hung the same way (flax's orthogonal init
calls LAPACK's QR, batched over seeds; purerl's own networks avoid it, see
``purerl.networks.orthogonal``): ``run_throughput.py`` kills a peer process after
``--timeout`` seconds and reports the row from its other rounds.

Configuration (matched to purerl's benchmark config), in ppo.py's keys:
ENV_NAME CartPole-v1, NUM_ENVS 4, NUM_STEPS 128 (batch 512), UPDATE_EPOCHS 4,
NUM_MINIBATCHES 4 (minibatches of 128), ACTIVATION "tanh" (ActorCritic: separate
64x64 actor and critic MLPs, no shared torso), LR 2.5e-4 with ANNEAL_LR False
(constant), GAMMA 0.99, GAE_LAMBDA 0.95, CLIP_EPS 0.2, ENT_COEF 0.01, VF_COEF 0.5,
MAX_GRAD_NORM 0.5, TOTAL_TIMESTEPS = --total-steps, DEBUG False (no host callback).

What ppo.py at 31756b1 does (verified in the code), with what purerl's benchmark
config cannot match marked as a difference:
* One flax module (ActorCritic) holds both MLPs, initialised from one key; one
  TrainState with one optimiser, ``optax.chain(clip_by_global_norm(0.5),
  adam(2.5e-4, eps=1e-5))``, stepped once per minibatch on the joint loss
  actor + 0.5 * value - 0.01 * entropy. (purerl: the same joint loss, global-norm
  clip and Adam eps 1e-5.)
* Value clipping always on, with CLIP_EPS: 0.5 * max((v - target)^2,
  (v_old + clip(v - v_old, -0.2, 0.2) - target)^2); no switch. (purerl's
  benchmark sets clip_value=True to match.)
* Orthogonal init: gain sqrt(2) on the hidden layers, 0.01 on the policy head,
  1.0 on the value head, zero biases (flax.linen.initializers.orthogonal).
* Advantages normalised per minibatch, (gae - mean) / (std + 1e-8).
* GAE on ``done`` = terminated | truncated: no bootstrapping on time-limit
  truncation (difference: purerl bootstraps truncated steps from the value of the
  final observation).
* Minibatches: one ``jax.random.permutation`` of the flattened 512-step batch per
  epoch, gathered with ``jnp.take`` (purerl uses an argsort of uniform noise).
* Env wrappers: FlattenObservationWrapper and LogWrapper, each with jitted
  reset/step. LogWrapper's per-step info (returned_episode_returns/lengths,
  timestep, returned_episode, plus gymnax's discount) is kept for every step of
  every update and returned as ``metrics``, (NUM_UPDATES, 128, 4) per key and
  seed; that output is part of the timed run and of peak RSS (difference: purerl
  returns per-update means).
* NUM_UPDATES = TOTAL_TIMESTEPS // 512 (rounded down: 20,000 steps run 39
  updates = 19,968 steps; rejax rounds up). ``total_steps`` reports the steps
  actually run, checked against LogWrapper's timestep counter.
* No evaluation: ``final_return_mean`` is a training-episode return (stochastic
  policy): per seed, the mean return of the episodes completed during the last
  update (if a seed completed none there, its latest update that has one), then
  the mean over seeds. purerl reports 8 greedy evaluation episodes (evaluated
  inside its timed run), rejax 128 stochastic evaluation episodes.
"""

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import resource
import sys
import time

REPOSITORY = "github.com/luchris429/purejaxrl"
COMMIT = "31756b197773a52db763fdbe6d635e4b46522a73"
# git blob ids of the two files at COMMIT (`git ls-tree 31756b1 purejaxrl/`).
BLOBS = {
    "ppo.py": "0c62cc8ca7cf78354022e8a40e3877de042f39f1",
    "wrappers.py": "09c520b1c876fbd675c1d798316d3901e1baedf9",
}
FETCH_HINT = (
    "from a clone of https://github.com/luchris429/purejaxrl: "
    "git show 31756b1:purejaxrl/ppo.py > DIR/ppo.py && "
    "git show 31756b1:purejaxrl/wrappers.py > DIR/wrappers.py"
)

# purerl's benchmark configuration, in PureJaxRL's config keys.
NUM_ENVS = 4
NUM_STEPS = 128


def make_config(total_steps):
    return {
        "ENV_NAME": "CartPole-v1",
        "NUM_ENVS": NUM_ENVS,
        "NUM_STEPS": NUM_STEPS,
        "TOTAL_TIMESTEPS": total_steps,
        "UPDATE_EPOCHS": 4,
        "NUM_MINIBATCHES": 4,
        "ACTIVATION": "tanh",
        "LR": 2.5e-4,
        "ANNEAL_LR": False,  # constant learning rate
        "GAMMA": 0.99,
        "GAE_LAMBDA": 0.95,
        "CLIP_EPS": 0.2,  # also the (always-on) value clipping range
        "ENT_COEF": 0.01,
        "VF_COEF": 0.5,
        "MAX_GRAD_NORM": 0.5,  # optax.clip_by_global_norm
        "DEBUG": False,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--purejaxrl-path", required=True,
                        help="directory holding purejaxrl/ppo.py and wrappers.py at "
                        "commit 31756b1 (or the ppo.py in it)")
    parser.add_argument("--num-seeds", type=int, default=1,
                        help="independent training runs, vmapped inside one jit")
    parser.add_argument("--total-steps", type=int, default=500_000,
                        help="env steps per seed (rounded down to whole 512-step "
                        "rollouts, as ppo.py does)")
    parser.add_argument("--seed", type=int, default=0,
                        help="base seed for the PRNG keys")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs (each on fresh keys); the median is reported")
    parser.add_argument("--no-vmap", action="store_true",
                        help="with --num-seeds 1: jit make_train(config) without vmap")
    return parser.parse_args(argv)


def source_dir(path):
    """The directory holding ppo.py and wrappers.py, or exit with how to get them."""
    path = os.path.abspath(path)
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    missing = [f for f in BLOBS if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        sys.exit(f"--purejaxrl-path {path}: {', '.join(missing)} not found in "
                 f"{directory}; get them {FETCH_HINT}")
    return directory


def git_blob_id(path):
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FiveValueStep:
    """A gymnax >= 1.0 env whose ``step`` returns gymnax < 1.0's five values."""

    # Keys gymnax 1.0's Environment.step adds to the info of step_env.
    NEW_INFO_KEYS = ("terminated", "truncated", "final_observation")

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        import jax.numpy as jnp

        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, params)
        info = {k: v for k, v in info.items() if k not in self.NEW_INFO_KEYS}
        return obs, state, reward, jnp.logical_or(terminated, truncated), info


def load_purejaxrl(directory):
    """Patch gymnax.make to FiveValueStep envs, then exec DIR/ppo.py as a module."""
    import gymnax

    stock_make = gymnax.make

    def make_five_value(env_id, **env_kwargs):
        env, env_params = stock_make(env_id, **env_kwargs)
        return FiveValueStep(env), env_params

    gymnax.make = make_five_value  # ppo.py's make_train calls gymnax.make
    sys.path.insert(0, directory)  # for ppo.py's `from wrappers import ...`
    spec = importlib.util.spec_from_file_location(
        "purejaxrl_ppo", os.path.join(directory, "ppo.py"))
    module = importlib.util.module_from_spec(spec)
    # brax/mujoco print import warnings on stdout; keep stdout for the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        spec.loader.exec_module(module)
    return module


def final_returns(metrics, num_seeds):
    """Per seed: mean training-episode return of the last update with a finished
    episode (normally the last update). Returns (per-seed means, episodes, fallbacks)."""
    import numpy as np

    returns = np.asarray(metrics["returned_episode_returns"])
    finished = np.asarray(metrics["returned_episode"]).astype(bool)
    returns = returns.reshape(num_seeds, *returns.shape[-3:])  # (seed, update, step, env)
    finished = finished.reshape(returns.shape)
    means, episodes, fallbacks = [], 0, 0
    for ret, fin in zip(returns, finished):
        updates = [u for u in range(ret.shape[0]) if fin[u].any()]
        if not updates:
            continue
        u = updates[-1]
        fallbacks += u != ret.shape[0] - 1
        means.append(float(ret[u][fin[u]].mean()))
        episodes += int(fin[u].sum())
    return means, episodes, fallbacks


def main(argv=None):
    args = parse_args(argv)
    rollout = NUM_ENVS * NUM_STEPS
    if args.num_seeds < 1 or args.repeats < 1:
        sys.exit("--num-seeds and --repeats must be positive")
    if args.total_steps < rollout:
        sys.exit(f"--total-steps must be >= {rollout} (one rollout)")
    if args.no_vmap and args.num_seeds != 1:
        sys.exit("--no-vmap needs --num-seeds 1")
    directory = source_dir(args.purejaxrl_path)
    modified = [f for f, blob in BLOBS.items()
                if git_blob_id(os.path.join(directory, f)) != blob]
    if modified:
        print(f"warning: {', '.join(modified)} in {directory} differ from {REPOSITORY} "
              f"at {COMMIT[:7]}", file=sys.stderr)

    import jax
    import numpy as np

    purejaxrl = load_purejaxrl(directory)
    updates = args.total_steps // rollout  # what ppo.py's make_train runs
    expected_steps = updates * rollout
    train = purejaxrl.make_train(make_config(args.total_steps))
    train = jax.jit(train if args.no_vmap else jax.vmap(train))

    def seed_keys(seed):
        keys = jax.random.split(jax.random.PRNGKey(seed), args.num_seeds)
        return keys[0] if args.no_vmap else keys

    t0 = time.perf_counter()
    compiled = train.lower(seed_keys(args.seed)).compile()
    compile_seconds = time.perf_counter() - t0

    # Timed run(s), each on fresh keys (not the ones used for lowering).
    walls = []
    for r in range(args.repeats):
        run_keys = jax.block_until_ready(seed_keys(args.seed + 1 + r))
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(run_keys))
        walls.append(time.perf_counter() - t0)
    wall_seconds = sorted(walls)[(len(walls) - 1) // 2]  # median (lower middle)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    metrics = out["metrics"]
    # LogWrapper's timestep counts steps per env; the last one of the last update.
    timesteps = np.asarray(metrics["timestep"]).reshape(args.num_seeds, -1)[:, -1]
    steps_per_seed = [int(t) * NUM_ENVS for t in timesteps]
    total_steps = steps_per_seed[0]
    if any(s != total_steps for s in steps_per_seed) or total_steps != expected_steps:
        print(f"warning: steps {steps_per_seed} != expected {expected_steps}",
              file=sys.stderr)
    per_seed, episodes, fallbacks = final_returns(metrics, args.num_seeds)
    final_return_mean = float(np.mean(per_seed)) if per_seed else None

    notes = [
        ("jax.jit(make_train(config)), no vmap, 1 key" if args.no_vmap else
         f"jax.jit(jax.vmap(make_train(config))) over {args.num_seeds} key(s)") + " on "
        f"{jax.default_backend()} ({os.cpu_count()} cpus, 1 device), AOT-compiled, timed "
        f"run on fresh keys; jax {jax.__version__}, gymnax CartPole-v1",
        f"{REPOSITORY} purejaxrl/ppo.py at {COMMIT[:7]}"
        + (f", MODIFIED: {', '.join(modified)} differ from that commit" if modified
           else ", files unedited (git blob ids checked)")
        + "; gymnax 1.0 step adapted to 5 values outside the file "
        "(done = terminated | truncated)",
        f"{updates} updates x {rollout} steps per seed (TOTAL_TIMESTEPS rounded down)",
        f"timed runs (s): {[round(w, 3) for w in walls]}, median reported",
        "single Adam (eps 1e-5) on the joint loss, global-norm clip 0.5, value "
        "clipping always on, orthogonal init; time-limit truncation treated as terminal",
        "per-step LogWrapper info for every update returned as metrics (inside the "
        "timed run)",
        "final_return_mean: training-episode return (stochastic policy), per seed the "
        f"mean of the {episodes} episode(s) completed in the last update"
        + (f" ({fallbacks} seed(s) had none there: their latest update with one)"
           if fallbacks else "")
        + f", then mean over seeds; per-seed means {[round(m, 1) for m in per_seed]}",
    ]
    result = {
        "framework": "purejaxrl",
        "version": COMMIT[:7] + ("-modified" if modified else ""),
        "num_seeds": args.num_seeds,
        "total_steps": total_steps,
        "env_steps_per_second": total_steps * args.num_seeds / wall_seconds,
        "compile_seconds": compile_seconds,
        "wall_seconds": wall_seconds,
        "peak_rss_mb": peak_rss_mb,
        "final_return_mean": final_return_mean,
        "notes": "; ".join(notes),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
