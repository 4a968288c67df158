"""The experiment-script contract and the benchmark runner, end to end with tiny budgets."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--total-steps", "1024", "--num-seeds", "2", "--num-envs", "4", "--num-steps", "64",
        "--num-evals", "2", "--num-eval-envs", "2", "--no-progress"]


def run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_ppo_script_writes_the_contract_and_resumes(tmp_path):
    out = tmp_path / "run"
    proc = run("experiments/ppo.py", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    for field in ("algo", "env", "num_seeds", "total_steps", "eval_steps", "eval_returns",
                  "final_returns", "final_return_mean", "wall_seconds", "compile_seconds",
                  "env_steps_per_second", "config", "run", "versions"):
        assert field in results, field
    assert results["algo"] == "ppo" and results["env"] == "CartPole-v1"
    assert results["num_seeds"] == 2 and results["total_steps"] == 1024
    assert len(results["eval_steps"]) == 2 and results["eval_steps"][-1] == 1024
    assert len(results["eval_returns"]) == 2 and len(results["eval_returns"][0]) == 2
    assert results["final_returns"] == results["eval_returns"][-1]
    # The loop settings are the run's (RunConfig), the hyperparameters the config's.
    assert results["run"]["num_envs"] == 4 and results["run"]["num_steps"] == 64
    assert results["run"]["total_steps"] == 1024 and results["run"]["num_evals"] == 2
    assert "num_envs" not in results["config"] and results["config"]["num_epochs"] == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["block"] for r in rows] == [1, 2]
    assert "loss/actor" in rows[0] and "eval/return" in rows[0]
    assert (out / "curve.png").stat().st_size > 0
    assert (out / "checkpoint" / "LATEST").exists()
    assert "final eval return" in proc.stdout

    # Resuming a finished run restores it and changes nothing.
    proc = run("experiments/ppo.py", *TINY, "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    again = json.loads((out / "results.json").read_text())
    assert again["eval_returns"] == results["eval_returns"] and again["resumed"]


@pytest.mark.parametrize(
    "script,args",
    [
        ("reinforce", ["--total-steps", "2000", "--num-envs", "4"]),
        ("actor_critic", ["--total-steps", "512", "--num-envs", "4", "--num-steps", "8"]),
        ("a2c", ["--total-steps", "512", "--num-envs", "4", "--num-steps", "8"]),
        ("offpac", ["--total-steps", "512", "--num-envs", "4", "--num-steps", "8",
                    "--replay-size", "16", "--batch-segments", "4"]),
        ("acktr", ["--total-steps", "512", "--num-envs", "4", "--num-steps", "8"]),
        ("npg", ["--total-steps", "512", "--num-envs", "4", "--num-steps", "64"]),
        ("trpo", ["--total-steps", "512", "--num-envs", "4", "--num-steps", "64"]),
        ("sac", ["--total-steps", "64", "--num-envs", "2", "--num-steps", "4",
                 "--batch-size", "8", "--learning-starts", "16", "--env", "Pendulum-v1"]),
    ],
)
def test_policy_gradient_scripts_run(tmp_path, script, args):
    out = tmp_path / "run"
    proc = run(f"experiments/{script}.py", *args, "--num-seeds", "2", "--num-evals", "2",
               "--num-eval-envs", "2", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["algo"] == script and len(results["final_returns"]) == 2
    assert results["env_steps_per_second"] > 0
    assert results["eval_steps"][-1] <= results["total_steps"]
    assert (out / "curve.png").exists() and (out / "checkpoint" / "LATEST").exists()


HOST_TINY = ["--num-seeds", "2", "--total-steps", "16", "--num-evals", "2",
             "--num-eval-envs", "1", "--batch-size", "4", "--buffer-size", "32",
             "--learning-starts", "4", "--hidden-sizes", "16", "--no-progress"]


def test_sac_script_on_dm_control_states_resumes(tmp_path):
    pytest.importorskip("dm_control")
    out = tmp_path / "run"
    proc = run("experiments/sac.py", "--env", "dmc:cartpole-swingup", *HOST_TINY,
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["env"] == "dmc:cartpole-swingup" and results["host"]
    # The preset's action repeat 8: episodes of 125 steps.
    assert results["env_options"] == {"pixels": False, "action_repeat": 8, "frame_stack": 1}
    assert results["eval_steps"] == [8, 16] and len(results["final_returns"]) == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["block"] for r in rows] == [1, 2] and "loss/critic" in rows[-1]
    assert (out / "checkpoint" / "LATEST").exists() and (out / "curve.png").exists()
    proc = run("experiments/sac.py", "--env", "dmc:cartpole-swingup", *HOST_TINY,
               "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    again = json.loads((out / "results.json").read_text())
    assert again["eval_returns"] == results["eval_returns"] and again["resumed"]


def test_sac_script_on_dm_control_pixels(tmp_path):
    pytest.importorskip("dm_control")
    from purerl.envs import make_host

    try:
        make_host("dmc:cartpole-swingup", pixels=True).close()
    except RuntimeError as e:
        pytest.skip(f"no OpenGL renderer here: {e}")
    out = tmp_path / "run"
    proc = run("experiments/sac.py", "--env", "dmc:cartpole-swingup", "--pixels",
               *HOST_TINY, "--num-seeds", "1", "--feature-dim", "8", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["env_options"] == {"pixels": True, "action_repeat": 8, "frame_stack": 3}
    assert results["config"]["buffer_size"] == 32 and results["num_seeds"] == 1
    assert results["env_steps_per_second"] > 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--env", "CartPole-v9"], "unknown env id 'CartPole-v9'"),
        (["--lr", "-1"], "Config.lr must be in"),
        (["--objective", "trust"], "Config.objective must be one of"),
        (["--num-epochs", "many"], "invalid int value"),
        (["--no-such-flag", "1"], "unrecognized arguments"),
        (["--resume", "--out", "/nonexistent/run"], "--resume: no checkpoint"),
        (["--pixels"], "--pixels, --action-repeat and --frame-stack are host-env options"),
    ],
)
def test_bad_arguments_get_one_line(args, message):
    proc = run("experiments/ppo.py", *args, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert message in lines[0]


def test_throughput_benchmark_runs(tmp_path):
    proc = run("benchmarks/run_throughput.py", "--seeds", "1", "--total-steps", "1024",
               "--repeats", "1", "--peers", "", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "ppo_throughput.json").read_text())
    # One seed: purerl as shipped, on jax's own rolled threefry lowering, and with
    # XLA's default CPU scheduler.
    default, rolled, scheduler = report["results"]
    assert default["config"] == "purerl" and "PURERL_ROLLED_THREEFRY=1" in rolled["config"]
    assert "PURERL_XLA_DEFAULT_SCHEDULER=1" in scheduler["config"]
    for row in (default, rolled, scheduler):
        assert row["framework"] == "purerl" and row["env_steps_per_second"] > 0
    assert (tmp_path / "ppo_throughput.md").exists()


def test_sac_throughput_benchmark_runs(tmp_path):
    proc = run("benchmarks/run_sac_throughput.py", "--seeds", "1",
               "--total-steps", "300", "--learning-starts", "100", "--repeats", "1",
               "--peers", "", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "sac_throughput.json").read_text())
    for field in ("config", "command", "machine", "jax", "results",
                  "ratio_purerl_best_over_peer"):
        assert field in report, field
    assert report["total_steps_per_seed"] == 300 and report["buffer_size"] == 300
    (row,) = report["results"]
    assert row["framework"] == "purerl" and row["num_seeds"] == 1
    assert row["total_steps"] == 300 and row["env_steps_per_second"] > 0
    # One gradient update per env step from step learning_starts on.
    assert row["updates_per_seed"] == 300 - 100 + 1
    assert row["compile_seconds"] > 0 and row["peak_rss_mb"] > 0
    assert row["final_return_mean"] is not None
    md = (tmp_path / "sac_throughput.md").read_text()
    assert "# SAC throughput on Pendulum-v1" in md and "| 1 | purerl |" in md
    assert (tmp_path / "sac_throughput.png").stat().st_size > 0
