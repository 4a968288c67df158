"""Budgets: a run does the steps it was asked for to within one iteration, in equal
evaluation blocks (one compiled block program), or is refused in one line that says
what it would run and which flags work (``loops.schedule``); every path (make_train,
Trainer, HostLoop, sweeps, the experiment scripts' presets) obeys the same rule."""

import argparse
import dataclasses
import glob
import importlib.util
import json
import os
import sys

import jax
import pytest

import purerl
from purerl import loops, sweep
from purerl.algos import ppo, reinforce
from purerl.algos.base import spec_of
from purerl.config import RunConfig
from purerl.run_loop import _banner, _write_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_run_does_the_steps_asked_to_within_one_iteration_or_is_refused():
    for total in (600, 1000, 20_000, 100_000, 500_000, 977 * 512, 1_000_000):
        for num_envs, num_steps in ((4, 128), (16, 5), (1, 1), (8, 64)):
            for asked in (1, 2, 3, 7, 10, 20):
                run = RunConfig(total_steps=total, num_envs=num_envs, num_steps=num_steps,
                                num_evals=asked)
                iterations = total // run.batch_size
                try:
                    sched = loops.schedule(run)
                except ValueError as e:
                    assert "\n" not in str(e) and iterations > asked, (run, e)
                    continue
                assert total - run.batch_size < sched.total_steps <= total, run
                assert sched.num_updates == iterations
                assert sched.iterations_per_eval * sched.num_evals == iterations
                if iterations >= asked:
                    assert asked / 2 <= sched.num_evals <= 2 * asked, run


@pytest.mark.parametrize("total,runs,evals", [
    (500_000, 499_712, 16),  # PPO's default run: 976 iterations (was 491,520)
    (20_000, 19_968, 13),  # 39 iterations (was 10,240)
    (600, 512, 1),  # one iteration, so one evaluation
    (20 * 512 * 3, 20 * 512 * 3, 20),  # exact: as asked
])
def test_the_budgets_of_the_issue(total, runs, evals):
    sched = loops.schedule(dataclasses.replace(ppo.RUN, total_steps=total))
    assert (sched.total_steps, sched.num_evals) == (runs, evals)


def test_the_refusal_is_one_line_with_what_would_run_and_flags_that_work():
    # 977 iterations (a prime): no number of evaluations from 10 to 40 divides them.
    run = dataclasses.replace(ppo.RUN, total_steps=977 * 512)
    with pytest.raises(ValueError) as info:
        loops.schedule(run)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("RunConfig.total_steps=500224 with num_evals=20 would run "
                              "491520 steps")
    assert message.endswith("give --total-steps 501760 or 491520, or --num-evals 1 or 977")
    # What it proposes runs as asked.
    for change in (dict(total_steps=501_760), dict(total_steps=491_520),
                   dict(num_evals=1), dict(num_evals=977)):
        fixed = dataclasses.replace(run, **change)
        sched = loops.schedule(fixed)
        assert sched.num_evals == fixed.num_evals
        assert fixed.total_steps - 512 < sched.total_steps <= fixed.total_steps


def test_episodic_runs_keep_their_budget_and_report_the_shortfall(tmp_path, capsys):
    run = dataclasses.replace(reinforce.RUN, total_steps=1000, num_evals=3)
    sched = loops.schedule(run, max_episode_steps=500)
    assert (sched.iterations_per_eval, sched.num_evals, sched.steps_per_eval) == (0, 3, 333)
    args = argparse.Namespace(env="CartPole-v1", num_seeds=2, seed=0, resume=False)
    driver = argparse.Namespace(schedule=sched, extra={})
    assert _banner("reinforce", args, driver, run, "out", 1) == (
        "reinforce on CartPole-v1 (no preset): 2 seeds x at most 999 env steps (asked 1000), "
        "3 evaluations -> out")
    _write_results(str(tmp_path), "reinforce", args, reinforce.Config(), run,
                   sched.total_steps, [300, 640, 980], [[1.0, 2.0]] * 3, 1.0, 1.0, 100.0,
                   extra={"steps_run": [980, 951]})
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["total_steps"] == 999 and results["total_steps_requested"] == 1000
    assert results["steps_run"] == [980, 951]
    assert "ran 951 to 980 env steps per seed of at most 999 (asked 1000)" in (
        capsys.readouterr().out)


def test_the_banner_says_what_runs_and_what_was_asked():
    run = dataclasses.replace(ppo.RUN, total_steps=20_000)
    args = argparse.Namespace(env="CartPole-v1", num_seeds=8, preset="CartPole-v1")
    driver = argparse.Namespace(schedule=loops.schedule(run), extra={})
    assert _banner("ppo", args, driver, run, "out", 1) == (
        "ppo on CartPole-v1 (its preset): 8 seeds x 19968 env steps (asked 20000), "
        "13 evaluations (asked 20) -> out")
    assert "19968 agent steps (asked 20000; 159744 env frames, action repeat 8)" in (
        _banner("ppo", args, driver, run, "out", 8))
    exact = dataclasses.replace(run, total_steps=20_480)
    driver = argparse.Namespace(schedule=loops.schedule(exact), extra={})
    assert _banner("ppo", args, driver, exact, "out", 1) == (
        "ppo on CartPole-v1 (its preset): 8 seeds x 20480 env steps, 20 evaluations -> out")


def test_make_train_trainer_host_loop_and_sweeps_obey_the_same_rule():
    env = purerl.envs.make("CartPole-v1")
    cfg = ppo.Config(hidden_sizes=(8,))
    adjusted = RunConfig(total_steps=39 * 32, num_envs=2, num_steps=16, num_evals=20,
                         num_eval_envs=2)  # 39 iterations: 13 blocks of 3
    refused = dataclasses.replace(adjusted, total_steps=41 * 32)  # 41: a prime
    key = jax.random.key(0)
    _, metrics = jax.eval_shape(loops.make_train(ppo, env, cfg, adjusted), key)
    assert metrics["env_steps"].shape == (13,)
    assert purerl.Trainer(ppo, env, cfg, adjusted).num_blocks == 13
    host = purerl.envs.make_host("gymnasium:CartPole-v1", num_envs=2)
    try:
        assert purerl.host_loop.HostLoop(ppo, host, cfg, adjusted).schedule == (
            loops.schedule(adjusted))
        with pytest.raises(ValueError, match="no number of evaluations from 10 to 40"):
            purerl.host_loop.HostLoop(ppo, host, cfg, refused)
    finally:
        host.close()
    def swept(run):
        fn, args = sweep.program(ppo, env, cfg, run, sweep.grid(lr=[1e-3]), seeds=1)
        return jax.eval_shape(fn, *args)

    assert swept(adjusted)[1]["env_steps"].shape == (1, 1, 13)  # points, seeds, blocks
    for build in (lambda: loops.make_train(ppo, env, cfg, refused),
                  lambda: purerl.Trainer(ppo, env, cfg, refused),
                  lambda: swept(refused)):
        with pytest.raises(ValueError, match="divides its 41 iterations"):
            build()


def _load_script(path: str):
    """``(module, algo)`` of an experiment script, its ``main()`` not run; ``algo`` is
    the library module it runs, or the script's own ``SPEC`` (an out-of-tree one)."""
    name = "preset_probe_" + os.path.basename(path)[:-len(".py")]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect reads a Config's field docs through it
    # The scripts run main() under __main__ only, but set XLA_FLAGS (the host's
    # device count) if unset: not for this process, whose backend may not be up.
    flags = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = flags or ""
    try:
        spec.loader.exec_module(module)
    finally:
        if flags is None:
            del os.environ["XLA_FLAGS"]
    if isinstance(getattr(module, "SPEC", None), purerl.AlgoSpec):
        return module, module.SPEC
    return module, next(v for v in vars(module).values()
                        if hasattr(v, "RUN") and hasattr(v, "Config"))


def _preset_runs():
    """``(script, env id or "(RUN)", RunConfig, episodic)`` of every experiment
    script's default run and presets (``--pixels`` sub-presets included)."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))):
        module, algo = _load_script(path)
        presets = {"(RUN)": {}}
        for env_id, preset in getattr(module, "PRESETS", {}).items():
            preset = dict(preset)
            pixels = preset.pop("pixels", {})
            presets[env_id] = preset
            if pixels:
                presets[env_id + " --pixels"] = {**preset, **pixels}
        for env_id, preset in presets.items():
            run = dataclasses.replace(algo.RUN, **{k: v for k, v in preset.items()
                                                   if k in fields})
            yield os.path.basename(path), env_id, run, algo.SPEC.episodic


def test_every_default_script_run_and_preset_is_accepted():
    refused = []
    for script, env_id, run, episodic in _preset_runs():
        if episodic:
            continue
        try:
            loops.schedule(run)
        except ValueError as e:
            refused.append(f"{script} {env_id}: {e}")
    assert not refused, "\n".join(refused)


def test_preset_probe_sees_every_script():
    scripts = {script for script, *_ in _preset_runs()}
    assert scripts == {os.path.basename(p) for p in
                       glob.glob(os.path.join(ROOT, "experiments", "*.py"))}
    assert len(list(_preset_runs())) > 20


def test_every_committed_learning_result_is_what_its_command_runs():
    """The command stored with each committed learning result (the README's) runs the
    same steps in the same evaluation blocks as the result: a budget rule that changed
    under a result would make its command reproduce another run."""
    import re
    import shlex

    from purerl import experiment

    checked = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "benchmarks", "results", "learning",
                                              "*.json"))):
        with open(path) as f:
            result = json.load(f)
        command = re.sub(r"\s*\(.*\)\s*$", "", result["command"])  # a trailing note
        script, *argv = shlex.split(command)[1:]
        module, algo = _load_script(os.path.join(ROOT, script))
        if spec_of(algo).episodic:
            continue  # whole episodes per iteration: the env's horizon sets the blocks
        args = experiment.build_parser(algo, "CartPole-v1").parse_args(argv)
        args.env = args.env or "CartPole-v1"
        _, run = experiment.resolve_config(algo, args, getattr(module, "PRESETS", {}))
        sched = loops.schedule(run)
        assert (sched.num_evals, sched.num_evals * sched.steps_per_eval) == (
            len(result["eval_steps"]), result["eval_steps"][-1]), os.path.basename(path)
        checked += 1
    assert checked >= 20
