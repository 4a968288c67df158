"""The experiment-script contract and the benchmark runner, end to end with tiny budgets."""

import functools
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
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
    assert results["step_unit"] == "env steps" and results["total_frames"] == 1024
    assert "num_envs" not in results["config"] and results["config"]["num_epochs"] == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["block"] for r in rows] == [1, 2]
    assert "loss/actor" in rows[0] and "eval/return" in rows[0]
    assert (out / "curve.png").stat().st_size > 0
    assert (out / "checkpoint" / "LATEST").exists()
    assert "final eval return" in proc.stdout

    # Resuming a finished run says so and changes nothing.
    before = (out / "results.json").read_bytes()
    proc = run("experiments/ppo.py", *TINY, "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "is complete" in proc.stdout and (out / "results.json").read_bytes() == before


@pytest.mark.skipif(importlib.util.find_spec("mujoco.mjx") is None,
                    reason="needs the [dmc] extra (mujoco-mjx)")
def test_ppo_script_on_an_mjx_task_in_one_program(tmp_path):
    """dm_control's pendulum in JAX: the options reach the env and results.json, and
    steps count agent steps. (That MJX data, empty arrays included, checkpoints is
    tests/envs/test_mjx.py's; resuming through the script, the CartPole test's.)"""
    out = tmp_path / "run"
    proc = run("experiments/ppo.py", "--env", "mjx:pendulum-swingup", "--action-repeat", "4",
               "--solver", "fast", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["env_options"] == {"action_repeat": 4, "solver": "fast"}
    assert results["step_unit"] == "agent steps" and results["total_frames"] == 4096
    assert (out / "checkpoint" / "LATEST").exists()


def test_resume_reads_the_runs_own_settings_and_guards_its_directory(tmp_path):
    out = tmp_path / "run"
    flags = ["--num-seeds", "2", "--total-steps", "512", "--num-envs", "2", "--num-steps",
             "64", "--num-evals", "2", "--num-eval-envs", "2", "--no-progress"]
    proc = run("experiments/ppo.py", *flags, "--seed", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    first = json.loads((out / "results.json").read_text())
    assert first["seed"] == 3 and first["changes_on_resume"] == []
    # --resume --out DIR alone: the run's own seeds, budget, loop and seed (of a run
    # stopped after its last checkpoint: a complete one is left as it is).
    (out / "results.json").unlink()
    proc = run("experiments/ppo.py", "--resume", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    again = json.loads((out / "results.json").read_text())
    assert again["num_seeds"] == 2 and again["total_steps"] == 512 and again["seed"] == 3
    assert again["eval_returns"] == first["eval_returns"] and again["resumed"]
    # A changed hyperparameter is refused, unless asked for, and then recorded.
    proc = run("experiments/ppo.py", "--resume", "--out", str(out), "--lr", "1e-3")
    assert proc.returncode == 2 and "add --allow-change" in proc.stderr
    # Asked for, on a complete run: nothing is left to run with it, nothing changes (a
    # change recorded on resume is the diverging-run test's).
    before = (out / "results.json").read_bytes()
    proc = run("experiments/ppo.py", "--resume", "--out", str(out), "--lr", "1e-3",
               "--allow-change", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "is complete" in proc.stdout and (out / "results.json").read_bytes() == before
    # Shapes and budgets never change on resume.
    proc = run("experiments/ppo.py", "--resume", "--out", str(out), "--num-envs", "4",
               "--allow-change")
    assert proc.returncode == 2 and "only float hyperparameters" in proc.stderr
    # Another algorithm's run, an occupied --out, --overwrite.
    proc = run("experiments/a2c.py", "--resume", "--out", str(out))
    assert proc.returncode == 2 and "holds a ppo run" in proc.stderr
    proc = run("experiments/ppo.py", *flags, "--out", str(out))
    assert proc.returncode == 2 and "--overwrite to replace it" in proc.stderr
    proc = run("experiments/ppo.py", *flags, "--out", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run("experiments/ppo.py", *flags, "--out", str(blocker / "run"))
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: --out {blocker / 'run'}")


def test_a_diverging_run_stops_keeps_its_last_checkpoint_and_resumes(tmp_path):
    # SAC with lr 10 diverges at its first updates; learning starts in block 6 of 6,
    # after the checkpoint of block 5.
    out = tmp_path / "run"
    flags = ["--num-seeds", "2", "--total-steps", "600", "--num-evals", "6",
             "--num-eval-envs", "1", "--batch-size", "16", "--hidden-sizes", "16",
             "--learning-starts", "550", "--no-progress"]
    proc = run("experiments/sac.py", *flags, "--lr", "10", "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("stopped: loss/") and "is not finite in seed" in line
    assert "at env step 600 (block 6)" in line and "last good checkpoint is block 5" in line
    assert json.loads((out / "checkpoint" / "LATEST").read_text())["step"] == 5
    assert not (out / "results.json").exists()
    proc = run("experiments/sac.py", "--resume", "--out", str(out), "--lr", "3e-4",
               "--allow-change", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["eval_steps"] == [100, 200, 300, 400, 500, 600]
    assert results["changes_on_resume"] == [{"field": "lr", "from": 10.0, "to": 3e-4,
                                             "at_block": 5}]
    assert np.isfinite(results["final_returns"]).all()


def test_sweep_writes_a_result_per_point_and_a_summary(tmp_path):
    out = tmp_path / "sweep"
    proc = run("experiments/ppo.py", "--sweep", "lr=1e-4,1e-2", "--sweep", "ent_coef=0,0.01",
               *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "sweep.json").read_text())
    assert [(p["lr"], p["ent_coef"]) for p in summary["points"]] == [
        (1e-4, 0.0), (1e-4, 0.01), (1e-2, 0.0), (1e-2, 0.01)]
    for point in summary["points"]:
        results = json.loads((out / point["out"] / "results.json").read_text())
        assert results["config"]["lr"] == point["lr"] and len(results["final_returns"]) == 2
        assert point["final_return"] == pytest.approx(np.mean(results["final_returns"]))
        assert point["ci95"][0] <= point["final_return"] <= point["ci95"][1]
    assert (out / "sweep.png").stat().st_size > 0 and "| lr | ent_coef |" in (
        out / "sweep.md").read_text()
    # A point is its separate run to the bit (the same seeds, sharded the same way).
    alone = tmp_path / "alone"
    proc = run("experiments/ppo.py", "--lr", "1e-2", "--ent-coef", "0.01", *TINY,
               "--out", str(alone))
    assert proc.returncode == 0, proc.stderr
    point = json.loads((out / "lr=0.01,ent_coef=0.01" / "results.json").read_text())
    assert point["eval_returns"] == json.loads(
        (alone / "results.json").read_text())["eval_returns"]
    # On a maze, every point reports the env's metrics as a run does.
    maze = tmp_path / "maze"
    proc = run("experiments/ppo.py", "--sweep", "lr=1e-4,1e-2", "--env", "Maze-Open-v0",
               *TINY, "--out", str(maze))
    assert proc.returncode == 0, proc.stderr
    for label in ("lr=0.0001", "lr=0.01"):
        results = json.loads((maze / label / "results.json").read_text())
        assert np.shape(results["coverage"]) == np.shape(results["state_entropy"]) == (2, 2)
        assert all(0 < c <= 1 for c in results["coverage"][-1])  # [evaluations][seeds]
        assert all(np.isfinite(results["state_entropy"][-1]))
    for args, message in ((["--sweep", "num_epochs=1,2"], "Config.num_epochs is int"),
                          (["--sweep", "lr=fast"], "expected FIELD=V1,V2"),
                          (["--sweep", "lr=1e-3", "--resume"], "--resume needs --out")):
        proc = run("experiments/ppo.py", *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_help_lists_envs_presets_and_where_runs_go():
    proc = run("experiments/smm.py", "--help")
    assert proc.returncode == 0
    assert "Maze-Bottleneck-v0" in proc.stdout and "dmc:<domain>-<task>" in proc.stdout
    assert "dmc:cartpole: total_steps=20000, action_repeat=8" in proc.stdout
    assert "runs/<env>__<algo>__<time>/" in proc.stdout


def test_scripts_use_a_persistent_compile_cache_by_default(tmp_path, monkeypatch):
    import jax

    from purerl import experiment

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        experiment.use_compile_cache()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "purerl" / "jax")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_default_run_directories_are_unique(tmp_path, monkeypatch):
    from purerl import experiment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(experiment.time, "strftime", lambda fmt: "20261202-120000")
    dirs = [experiment._new_run_dir("dmc:cartpole-swingup", "sac") for _ in range(3)]
    assert len(set(dirs)) == 3 and all(os.path.isdir(d) for d in dirs)
    assert dirs[1] == dirs[0] + "-2"


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


PROTO_TINY = ["--num-seeds", "2", "--total-steps", "64", "--num-evals", "2",
              "--num-eval-envs", "2", "--num-envs", "2", "--batch-size", "8",
              "--buffer-size", "64", "--learning-starts", "8", "--hidden-sizes", "8",
              "--num-prototypes", "4", "--queue-size", "8", "--proto-dim", "4",
              "--predictor-hidden", "8", "--encoder", "mlp", "--encoder-hidden", "8",
              "--feature-dim", "4", "--no-progress"]


def test_proto_both_phases_on_the_maze_with_coverage(tmp_path):
    # On the -Fourier id (16-d observations), whose position leads the observation.
    from purerl.algos import proto
    from purerl.envs import make
    from purerl.snapshot import load

    out = tmp_path / "run"
    proc = run("experiments/proto.py", "--env", "Maze-Bottleneck-Goal-Fourier-v0", "--phase",
               "both", *PROTO_TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    pre = json.loads((out / "pretrain" / "results.json").read_text())
    fine = json.loads((out / "finetune" / "results.json").read_text())
    assert pre["phase"] == "pretrain" and fine["phase"] == "finetune"
    assert pre["config"]["task_coef"] == 0.0 and fine["config"]["intr_coef"] == 0.2
    assert fine["snapshot_from"].endswith("snapshot")
    for results in (pre, fine):
        assert np.shape(results["coverage"]) == (2, 2)
        assert all(0.0 < c <= 1.0 for c in results["coverage"][-1])
        assert np.shape(results["state_entropy"]) == (2, 2)
    # Fine-tuning changed the heads but not the frozen representation.
    spec = make("Maze-Bottleneck-Goal-Fourier-v0").spec
    like = jax_fresh_states(proto, spec, 2)
    a = load(str(out / "pretrain" / "snapshot"), like, proto, spec)
    b = load(str(out / "finetune" / "snapshot"), like, proto, spec)
    for group in proto.PROTO_GROUPS:
        for x, y in zip(jax_leaves(a.params[group]), jax_leaves(b.params[group])):
            np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in
               zip(jax_leaves(a.params["critic"]), jax_leaves(b.params["critic"])))
    # The reward-map diagnostic reads the pre-training run.
    proc = run("benchmarks/proto_reward_map.py", str(out / "pretrain"), "--out-dir",
               str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    stem = tmp_path / "proto_reward_map_Bottleneck_fourier"
    seeds = json.loads(stem.with_suffix(".json").read_text())["seeds"]
    assert len(seeds) == 2 and stem.with_suffix(".png").exists()
    for row in seeds:
        regions = [row[f"steps in {r}"] for r in ("start room", "corridor", "far room")]
        assert abs(sum(regions) - 1.0) < 1e-6 and 0.0 <= row["window in start room"] <= 1.0
        assert np.isfinite(row["reward far room"]) and "foot" not in row  # an MLP encoder
        assert np.isfinite(row["history entropy"])


def test_a_flag_wins_over_the_phase_and_both_phases_refuse_it():
    import argparse

    from purerl.algos import proto
    from purerl.experiment import _phase_settings

    given = argparse.Namespace(phase="pretrain", intr_coef=10.0, task_coef=None)
    assert _phase_settings(proto.PHASES["pretrain"], given) == {"task_coef": 0.0}
    given.intr_coef = None
    assert _phase_settings(proto.PHASES["finetune"], given) == {
        "task_coef": 1.0, "intr_coef": 0.2, "train_representation": False}
    # One flag for two phases would replace both phases' values: refused, nothing runs.
    proc = run("experiments/proto.py", "--env", "Maze-Open-v0", "--phase", "both",
               "--intr-coef", "0.5")
    assert proc.returncode == 2 and "--intr-coef: set by each phase" in proc.stderr


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def jax_fresh_states(algo, spec, seeds):
    import jax

    cfg = algo.Config(hidden_sizes=(8,), num_prototypes=4, queue_size=8, proto_dim=4,
                      predictor_hidden=8, encoder="mlp", encoder_hidden=(8,),
                      feature_dim=4, batch_size=8, buffer_size=64, learning_starts=8)
    agent = algo.make(cfg, spec)
    return jax.vmap(agent.init)(jax.random.split(jax.random.key(0), seeds))


SMM_FLAGS = ["--vae-hidden", "8", "--vae-code-dim", "4", "--discriminator-hidden", "8",
             "--history-size", "2", "--history-every", "4"]
SMM_TINY = PROTO_TINY[:PROTO_TINY.index("--num-prototypes")] + ["--no-progress"]


def test_smm_both_phases_on_the_maze_with_a_corridor_target(tmp_path):
    from purerl.algos import smm
    from purerl.envs import make
    from purerl.snapshot import load

    out = tmp_path / "run"
    proc = run("experiments/smm.py", "--env", "Maze-Bottleneck-Goal-v0", "--phase", "both",
               "--target", "corridor", "--eval-policy", "mixture", *SMM_TINY, *SMM_FLAGS,
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    pre = json.loads((out / "pretrain" / "results.json").read_text())
    fine = json.loads((out / "finetune" / "results.json").read_text())
    assert pre["config"]["intr_coef"] == 1.0 and fine["config"]["intr_coef"] == 0.0
    assert pre["config"]["target"] == "corridor"
    for results in (pre, fine):
        assert np.shape(results["coverage"]) == (2, 2)
        assert np.shape(results["kl_corridor"]) == (2, 2)
    spec = make("Maze-Bottleneck-Goal-v0").spec
    cfg = smm.Config(hidden_sizes=(8,), vae_hidden=(8,), vae_code_dim=4,
                     discriminator_hidden=(8,), history_size=2)
    agent = smm.make(cfg, spec)
    import jax

    like = jax.vmap(agent.init)(jax.random.split(jax.random.key(0), 2))
    a = load(str(out / "pretrain" / "snapshot"), like, smm, spec)
    b = load(str(out / "finetune" / "snapshot"), like, smm, spec)
    for group in smm.DENSITY_GROUPS:  # frozen in fine-tuning
        for x, y in zip(jax_leaves(a.params[group]), jax_leaves(b.params[group])):
            np.testing.assert_array_equal(x, y)
    assert int(np.asarray(a.history_count).min()) >= 1  # the ring was written


@pytest.mark.parametrize("script,flags", [
    ("proto", ["--num-prototypes", "4", "--queue-size", "8", "--proto-dim", "4",
               "--predictor-hidden", "8", "--encoder-hidden", "8", "--feature-dim", "4"]),
    ("smm", [*SMM_FLAGS, "--feature-dim", "4"]),
])
def test_exploration_agents_on_dm_control_states_and_pixels(tmp_path, script, flags):
    pytest.importorskip("dm_control")
    flags = [*HOST_TINY, *flags]
    out = tmp_path / "states"
    proc = run(f"experiments/{script}.py", "--env", "dmc:cartpole-swingup", "--phase",
               "both", *flags, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    fine = json.loads((out / "finetune" / "results.json").read_text())
    assert fine["host"] and fine["phase"] == "finetune" and len(fine["final_returns"]) == 2
    require_renderer()
    out = tmp_path / "pixels"
    proc = run(f"experiments/{script}.py", "--env", "dmc:cartpole-swingup", "--pixels",
               "--phase", "pretrain", *flags, "--num-seeds", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["env_options"]["pixels"] and results["env_steps_per_second"] > 0


def test_uniform_baseline_script(tmp_path):
    out = tmp_path / "run"
    proc = run("experiments/uniform.py", "--num-seeds", "2", "--total-steps", "512",
               "--num-evals", "2", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["env"] == "Maze-Bottleneck-v0" and results["final_returns"] == [0.0, 0.0]
    assert 0.0 < results["coverage"][-1][0] < 1.0


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
    # Agent steps, named so, and the same counts in env frames.
    assert results["step_unit"] == "agent steps" and results["action_repeat"] == 8
    assert results["eval_frames"] == [64, 128] and results["total_frames"] == 128
    assert "16 agent steps (128 env frames, action repeat 8)" in proc.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["block"] for r in rows] == [1, 2] and "loss/critic" in rows[-1]
    assert (out / "checkpoint" / "LATEST").exists() and (out / "curve.png").exists()
    (out / "results.json").unlink()  # stopped after its last checkpoint: not complete
    proc = run("experiments/sac.py", "--env", "dmc:cartpole-swingup", *HOST_TINY,
               "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    again = json.loads((out / "results.json").read_text())
    assert again["eval_returns"] == results["eval_returns"] and again["resumed"]


_RENDER_PROBE = (
    "from purerl.envs import make_host\n"
    "try:\n"
    "    make_host('dmc:cartpole-swingup', pixels=True).close()\n"
    "except (ImportError, RuntimeError) as e:\n"
    "    print(e)\n"
    "else:\n"
    "    print('ok')\n"
)


@functools.cache
def renderer_missing() -> str | None:
    """Why dm_control cannot render pixels here, or None when it can. Asked in a fresh
    process, as the scripts run: this worker may have imported dm_control already
    (test_mjx does), and its renderer is fixed at that import."""
    proc = run("-c", _RENDER_PROBE, timeout=300)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines[-1:] == ["ok"]:
        return None
    return lines[-1] if lines else f"the probe exited {proc.returncode}: {proc.stderr[-300:]}"


def require_renderer():
    reason = renderer_missing()
    if reason is not None:
        pytest.skip(f"no OpenGL renderer here: {reason}")


def test_sac_script_on_dm_control_pixels(tmp_path):
    pytest.importorskip("dm_control")
    require_renderer()
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
        (["--lr", "nan"], "Config.lr must be finite, got nan (flag --lr)"),
        (["--gamma", "inf"], "Config.gamma must be finite, got inf (flag --gamma)"),
        (["--objective", "trust"], "Config.objective must be one of"),
        (["--num-epochs", "many"], "invalid int value"),
        (["--no-such-flag", "1"], "unrecognized arguments"),
        (["--resume", "--out", "/nonexistent/run"], "--resume: no checkpoint"),
        (["--pixels"], "--pixels, --action-repeat, --frame-stack and --image-size are "
                       "dm_control options"),
        (["--image-size", "64"], "--image-size are dm_control options"),
        (["--solver", "fast"], "--solver is an option of mjx:<domain>-<task> envs"),
        (["--env", "mjx:cartpole-swingup", "--pixels"], "mjx:<domain>-<task> takes "
                                                        "--action-repeat"),
        (["--env", "mjx:cartpole-swingup", "--action-repeat", "0"],
         "action_repeat must be an integer >= 1, got 0"),
        (["--env", "mjx:cartpole-run"], "unknown mjx id 'mjx:cartpole-run'"),
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


DREAMER_TINY = ["--num-seeds", "2", "--num-evals", "2", "--num-eval-envs", "1",
                "--batch-size", "2", "--sequence-length", "4", "--updates-per-round", "1",
                "--buffer-size", "64", "--learning-starts", "8", "--deter-size", "8",
                "--stoch-size", "4", "--hidden-size", "8", "--units", "8", "--horizon", "3",
                "--mode-samples", "4", "--no-progress"]


def test_dreamer_script_on_dm_control_pixels(tmp_path):
    """The host loop from pixels (from states the host loop differs only in the
    encoder; Dreamer's in-jit block is the contract tests'). Where no renderer exists,
    the in-jit Pendulum run instead, so that the script itself is always run."""
    out = tmp_path / "run"
    if renderer_missing() is None:
        # The pixel preset: 64x64 renders, one frame per step, the paper's sizes (made
        # tiny here by the flags, which override the preset).
        proc = run("experiments/dreamer.py", "--env", "dmc:cartpole-swingup", "--pixels",
                   "--total-steps", "32", "--num-steps", "8", *DREAMER_TINY,
                   "--cnn-depth", "2", "--num-seeds", "1", "--out", str(out))
    else:
        proc = run("experiments/dreamer.py", "--total-steps", "64", "--num-steps", "16",
                   *DREAMER_TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["sequence_length"] == 4 and results["env_steps_per_second"] > 0
    if results["env"] == "Pendulum-v1":
        assert not results.get("host") and len(results["final_returns"]) == 2
    else:
        assert results["host"] and len(results["final_returns"]) == 1
        assert results["env_options"] == {"pixels": True, "action_repeat": 2,
                                          "frame_stack": 1, "image_size": 64}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "loss/model" in rows[-1] and "dreamer/imagined_return" in rows[-1]
    assert len(results["train_returns"]) == 2 and results["config"]["eval_action"] == "mean"
    if results.get("host"):  # the evaluation-action measurement reads such a run
        proc = run("benchmarks/dreamer_eval_action.py", str(out), "--episodes", "1",
                   "--out", str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        report = json.loads((tmp_path / "dreamer_eval_action_dmc-cartpole-swingup.json")
                            .read_text())
        assert set(report["actions"]) == {"mean", "mode"}
        assert all(r["actor_std_mean"] > 0 for r in report["actions"].values())


# ---- issue 35: budgets, damaged checkpoints, resuming complete and interrupted runs ----

RESUME_TINY = ["--num-seeds", "2", "--total-steps", "330", "--num-envs", "2",
               "--num-steps", "16", "--num-evals", "10", "--num-eval-envs", "2",
               "--hidden-sizes", "8", "--no-progress"]


def truncate_checkpoint(path) -> None:
    # tests/ is on sys.path (its conftest.py): one helper for both damage tests.
    from test_checkpoint_damage import truncate_data

    truncate_data(path)


def file_bytes(root) -> dict:
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(root) for f in files}


def test_a_budget_no_number_of_evaluations_divides_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    # 41 iterations of 512 steps: a prime, no count from 10 to 40 divides it.
    proc = run("experiments/ppo.py", "--total-steps", str(41 * 512), "--out", str(out),
               timeout=120)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: RunConfig.total_steps=20992 with num_evals=20 would "
                           "run 20480 steps"), line
    assert line.endswith("give --total-steps 30720 or 20480, or --num-evals 1 or 41"), line
    assert not out.exists()


def test_resume_falls_back_past_damage_and_leaves_a_complete_run_alone(tmp_path):
    out = tmp_path / "run"
    proc = run("experiments/ppo.py", *RESUME_TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    # 330 asked: 10 iterations of 32 steps, one per evaluation.
    assert "ppo on CartPole-v1 (its preset): 2 seeds x 320 env steps (asked 330), " \
           "10 evaluations ->" in proc.stdout.splitlines()[0]
    first = json.loads((out / "results.json").read_text())
    assert first["preset"] == "CartPole-v1"
    assert json.loads((out / "run.json").read_text())["preset"] == "CartPole-v1"
    assert (first["total_steps"], first["total_steps_requested"]) == (320, 330)
    assert (first["num_evals"], first["num_evals_requested"]) == (10, 10)
    assert first["steps_run"] == [320, 320] and first["eval_steps"][-1] == 320
    [part] = first["parts"]
    assert part["blocks"] == [0, 10] and part["steps"] == 640
    assert first["wall_seconds"] == part["wall_seconds"] > 0
    ckpt = out / "checkpoint"
    assert sorted(os.listdir(ckpt)) == ["LATEST", "block_10", "block_5"]

    # A complete run: one line, and every file as it was.
    before = file_bytes(out)
    proc = run("experiments/ppo.py", "--resume", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.strip().splitlines()
    assert line == f"ppo on CartPole-v1: the run in {out} is complete (10 evaluations): " \
                   f"nothing to resume, its files are left as they are"
    assert file_bytes(out) == before

    # Interrupted after block 5's checkpoint, block 10's damaged and LATEST emptied:
    # the resume continues from block 5, says so in one line, and the record covers
    # both parts of the run.
    (out / "results.json").unlink()
    truncate_checkpoint(ckpt / "block_10")
    (ckpt / "LATEST").write_text("")
    proc = run("experiments/ppo.py", "--resume", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("--resume: continuing from block_5 (block 5), the newest "
                           "checkpoint that restores; passed over LATEST: "
                           "JSONDecodeError"), line
    assert "; block_10: ValueError: " in line
    again = json.loads((out / "results.json").read_text())
    assert again["eval_returns"] == first["eval_returns"] and again["resumed"]
    assert [p["blocks"] for p in again["parts"]] == [[0, 5], [5, 10]]
    assert [p["steps"] for p in again["parts"]] == [320, 320]
    assert again["wall_seconds"] == sum(p["wall_seconds"] for p in again["parts"])
    assert again["compile_seconds"] == sum(p["compile_seconds"] for p in again["parts"])
    compute = sum(p["compute_seconds"] for p in again["parts"])
    assert again["env_steps_per_second"] == 640 / compute
    assert again["parts"][0]["wall_seconds"] < first["wall_seconds"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 10

    # Every checkpoint broken: one line naming the directory and the way out.
    (out / "results.json").unlink()
    for name in ("block_5", "block_10"):
        truncate_checkpoint(ckpt / name)
    proc = run("experiments/ppo.py", "--resume", "--out", str(out), "--no-progress")
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: --resume: no checkpoint under {ckpt} restores "
                           f"(block_10: ValueError"), line
    assert line.endswith(": --overwrite starts the run again"), line
    proc = run("experiments/ppo.py", *RESUME_TINY, "--out", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "results.json").read_text())["eval_returns"] == (
        first["eval_returns"])
    assert sorted(os.listdir(ckpt)) == ["LATEST", "block_10", "block_5"]
