"""Rerun the learning results (docs/results.md) with their commands; keep their results.

    python benchmarks/run_learning.py [--only ppo_CartPole-v1,a2c_CartPole-v1] [--list]

Each entry is one experiment-script command (the results table's), run in its own
process into a temporary run directory; its ``results.json`` and ``curve.png`` are
copied to ``benchmarks/results/learning/<name>.{json,png}``, replacing the committed
ones, and one line per run is printed: final mean, min and max over seeds, wall time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "results", "learning")

RUNS = {
    "ppo_CartPole-v1": "ppo.py --env CartPole-v1 --num-seeds 8 --total-steps 491520",
    "ppo_Pendulum-v1": "ppo.py --env Pendulum-v1 --num-seeds 8",
    "ppo_kl_CartPole-v1": "ppo.py --env CartPole-v1 --num-seeds 8 --total-steps 491520 "
                          "--objective kl",
    "ppo_kl_Pendulum-v1": "ppo.py --env Pendulum-v1 --num-seeds 8 --objective kl",
    "reinforce_CartPole-v1": "reinforce.py --num-seeds 8",
    "reinforce_nobaseline_CartPole-v1": "reinforce.py --num-seeds 8 --baseline false",
    "actor_critic_CartPole-v1": "actor_critic.py --num-seeds 8",
    "actor_critic_advantage_CartPole-v1": "actor_critic.py --num-seeds 8 --advantage true "
                                          "--ent-coef 0.01 --reward-scale 1",
    "a2c_CartPole-v1": "a2c.py --num-seeds 8",
    "a2c_Acrobot-v1": "a2c.py --env Acrobot-v1 --num-seeds 8",
    # A2C's update before the TensorFlow-RMSProp / value-loss fix, for comparison:
    # RMSProp's mean square from 0, and c_vf 0.25 on mean((V - R)^2) = 0.5 on ½ of it.
    "a2c_before_fix_CartPole-v1": "a2c.py --num-seeds 8 --rms-initial-scale 0 "
                                  "--vf-coef 0.25",
    "a2c_before_fix_Acrobot-v1": "a2c.py --env Acrobot-v1 --num-seeds 8 "
                                 "--rms-initial-scale 0 --vf-coef 0.25",
    "offpac_CartPole-v1": "offpac.py --num-seeds 8 --total-steps 998400",
    "offpac_uniform_CartPole-v1": "offpac.py --num-seeds 8 --total-steps 998400 "
                                  "--behaviour uniform",
    "npg_Pendulum-v1": "npg.py --env Pendulum-v1 --num-seeds 8",
    "npg_CartPole-v1": "npg.py --env CartPole-v1 --num-seeds 8 --total-steps 983040",
    "trpo_Pendulum-v1": "trpo.py --env Pendulum-v1 --num-seeds 8 --total-steps 1966080",
    "trpo_CartPole-v1": "trpo.py --env CartPole-v1 --num-seeds 8 --total-steps 983040",
    "acktr_CartPole-v1": "acktr.py --env CartPole-v1 --num-seeds 8 --total-steps 998400",
    "acktr_Pendulum-v1": "acktr.py --env Pendulum-v1 --num-seeds 8 --total-steps 1996800",
    "sac_Pendulum-v1": "sac.py --num-seeds 8",
    "sac_dmc-cartpole-swingup": "sac.py --env dmc:cartpole-swingup --num-seeds 3",
    # The same task in JAX (purerl.envs.mjx, dm_control's solver): one program, 8 seeds.
    "sac_mjx-cartpole-swingup": "sac.py --env mjx:cartpole-swingup --num-seeds 8",
    "ppo_mjx-cartpole-swingup": "ppo.py --env mjx:cartpole-swingup --num-seeds 8",
    "ppo_mjx-cartpole-balance": "ppo.py --env mjx:cartpole-balance --num-seeds 8",
    "dreamer_Pendulum-v1": "dreamer.py --env Pendulum-v1 --num-seeds 8",
    "dreamer_dmc-cartpole-swingup": "dreamer.py --env dmc:cartpole-swingup --num-seeds 4",
    # An algorithm outside the library (its public contract only): a repo path.
    "dqn_CartPole-v1": "tests/out_of_tree/dqn.py --num-seeds 8",
}


def script_path(command: str) -> str:
    """The script of a RUNS command: a name under experiments/, or a repo path."""
    script = command.split()[0]
    return script if "/" in script else f"experiments/{script}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help="comma-separated names (default: all)")
    p.add_argument("--list", action="store_true", help="print the names and commands")
    args = p.parse_args(argv)
    names = list(RUNS) if args.only is None else args.only.split(",")
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f"unknown runs {unknown}; known: {list(RUNS)}")
    if args.list:
        for name in names:
            print(f"{name}: python {script_path(RUNS[name])} {RUNS[name].split(maxsplit=1)[1]}")
        return 0
    os.makedirs(OUT, exist_ok=True)
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, script_path(RUNS[name]),
                   *RUNS[name].split()[1:], "--no-progress", "--out", tmp]
            print("$", " ".join(cmd[1:-2]), flush=True)
            start = time.time()
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(tmp, "results.json")) as f:
                results = json.load(f)
            results["command"] = " ".join(["python", script_path(RUNS[name]),
                                           *RUNS[name].split()[1:]])
            with open(os.path.join(OUT, f"{name}.json"), "w") as f:
                json.dump(results, f, indent=1)
            shutil.copy(os.path.join(tmp, "curve.png"), os.path.join(OUT, f"{name}.png"))
        final = results["final_returns"]
        print(f"  {name}: mean {sum(final) / len(final):.1f} (min {min(final):.1f}, max "
              f"{max(final):.1f}) at {results['eval_steps'][-1]:,} steps; "
              f"{results['wall_seconds']:.0f}s + {results['compile_seconds']:.0f}s compile "
              f"({time.time() - start:.0f}s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
