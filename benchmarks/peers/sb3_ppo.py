"""Peer throughput benchmark: Stable-Baselines3 PPO on gymnasium CartPole-v1.

Runs inside its own virtual environment (benchmarks/.venvs/sb3, built by
benchmarks/peers/build_venvs.sh from requirements-sb3.txt), never inside
purerl's. Usage:

    benchmarks/.venvs/sb3/bin/python benchmarks/peers/sb3_ppo.py \
        --num-seeds 2 --total-steps 100000

SB3 has no vectorised seeds, so the seeds run one after another in this
process. Only ``model.learn`` is timed (model and env construction are not);
``env_steps_per_second`` is the steps of all seeds over the summed learn time.
The last line on stdout is one JSON object with the measurement.

Configuration (matched to purerl's benchmark config): DummyVecEnv with 4
CartPole-v1 envs (each wrapped in SB3's Monitor for episode returns),
n_steps 128 (batch 512), n_epochs 4, batch_size 128 (4 minibatches), separate
64x64 tanh MLPs for actor and critic (net_arch pi/vf; the features extractor is
a parameter-free Flatten), orthogonal init (SB3 default), Adam lr 2.5e-4
constant, gamma 0.99, GAE lambda 0.95, clip 0.2, vf_coef 0.5, ent_coef 0.01,
max_grad_norm 0.5 (global norm over all parameters, one joint loss and one Adam
step per minibatch), advantage normalisation on (per minibatch), no value
clipping (clip_range_vf=None, SB3's default), no observation normalisation.

SB3 specifics worth knowing when comparing:
* Adam eps: SB3's ActorCriticPolicy sets eps=1e-5 for Adam (torch's default is
  1e-8); we keep SB3's default.
* Time-limit truncation is bootstrapped (SB3 adds gamma * V(terminal obs) to
  the reward of truncated steps), unlike gymnax/rejax.
* torch runs on CPU with torch.set_num_threads(1) (PyTorch's intra-op threads
  only add overhead for 64-wide MLPs at batch 4/128).
* No evaluation during training; ``final_return_mean`` is the mean return of
  the last (up to 100) finished training episodes of each seed (SB3's
  ep_info_buffer), averaged over seeds.
"""

import argparse
import json
import resource
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-seeds", type=int, default=1,
                        help="independent training runs, run sequentially")
    parser.add_argument("--total-steps", type=int, default=500_000,
                        help="env steps per seed (rounded up to whole 512-step rollouts)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    return parser.parse_args(argv)


NUM_ENVS = 4
N_STEPS = 128


def main(argv=None):
    args = parse_args(argv)
    if args.num_seeds < 1 or args.total_steps < 1:
        sys.exit("--num-seeds and --total-steps must be positive")

    import numpy as np
    import torch
    import stable_baselines3
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)

    wall_seconds = 0.0
    steps = []
    returns = []
    for i in range(args.num_seeds):
        seed = args.seed + i
        env = make_vec_env("CartPole-v1", n_envs=NUM_ENVS, seed=seed,
                           vec_env_cls=DummyVecEnv)  # Monitor-wrapped
        model = PPO(
            "MlpPolicy",
            env,
            learning_rate=2.5e-4,
            n_steps=N_STEPS,
            batch_size=128,
            n_epochs=4,
            gamma=0.99,
            gae_lambda=0.95,
            clip_range=0.2,
            clip_range_vf=None,
            normalize_advantage=True,
            ent_coef=0.01,
            vf_coef=0.5,
            max_grad_norm=0.5,
            policy_kwargs=dict(
                net_arch=dict(pi=[64, 64], vf=[64, 64]),
                activation_fn=torch.nn.Tanh,
                ortho_init=True,
            ),
            device="cpu",
            seed=seed,
            verbose=0,
        )
        t0 = time.perf_counter()
        model.learn(total_timesteps=args.total_steps, progress_bar=False)
        wall_seconds += time.perf_counter() - t0
        steps.append(int(model.num_timesteps))
        episode_returns = [info["r"] for info in model.ep_info_buffer]
        if episode_returns:
            returns.append(float(np.mean(episode_returns)))
        env.close()

    total_steps = steps[0]
    if any(s != total_steps for s in steps):
        print(f"warning: steps per seed differ: {steps}", file=sys.stderr)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rollouts = total_steps // (NUM_ENVS * N_STEPS)
    notes = [
        f"{args.num_seeds} seed(s) run sequentially in-process, only model.learn timed",
        f"{rollouts} rollouts x {NUM_ENVS * N_STEPS} steps per seed",
        f"DummyVecEnv x{NUM_ENVS} (Monitor-wrapped), device=cpu, "
        f"torch {torch.__version__} with torch.set_num_threads(1)",
        "Adam eps 1e-5 (SB3's ActorCriticPolicy default; torch default is 1e-8)",
        "orthogonal init (SB3 default), joint loss, global grad-norm clip 0.5, "
        "no value clipping (clip_range_vf=None)",
        "time-limit truncation bootstrapped (SB3 behaviour)",
        "no evaluation; final_return_mean = mean of last <=100 training episodes "
        f"per seed, averaged; per-seed {[round(r, 1) for r in returns]}",
    ]
    result = {
        "framework": "sb3",
        "version": stable_baselines3.__version__,
        "num_seeds": args.num_seeds,
        "total_steps": total_steps,
        "env_steps_per_second": sum(steps) / wall_seconds,
        "compile_seconds": None,
        "wall_seconds": wall_seconds,
        "peak_rss_mb": peak_rss_mb,
        "final_return_mean": float(np.mean(returns)) if returns else None,
        "notes": "; ".join(notes),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
