"""What a new user reads: one-line errors that name the flag, the allowed values and
what to do, the interrupt hint, and no noise on stderr from a normal run."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import pytest

import purerl
from purerl import experiment, snapshot
from purerl.algos import dreamer, offpac, ppo, sac
from purerl.config import RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--total-steps", "256", "--num-seeds", "1", "--num-envs", "4", "--num-steps", "16",
        "--num-evals", "2", "--num-eval-envs", "2", "--hidden-sizes", "8,8", "--no-progress"]


def python(code: str, env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def main(algo, argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = experiment.main(algo, {}, argv=argv)
    return status, capsys.readouterr().err


# --- ranges ------------------------------------------------------------------------


def test_an_unbounded_range_is_open_unless_the_field_takes_inf():
    with pytest.raises(ValueError, match=r"Config\.lr must be in \(0\.0, inf\), got -1"):
        ppo.Config(lr=-1.0)
    with pytest.raises(ValueError, match=r"RunConfig\.total_steps must be in \[1, inf\), "):
        RunConfig(total_steps=0)
    # Off-PAC's clip_rho takes inf (no truncation): there the bracket is closed.
    with pytest.raises(ValueError, match=r"Config\.clip_rho must be in \(0\.0, inf\], "):
        offpac.Config(clip_rho=0.0)


# --- the command line --------------------------------------------------------------


def test_a_bad_sweep_value_blames_the_sweep_not_a_flag(tmp_path, capsys):
    status, err = main(ppo, ["--sweep", "lr=1e-3,-1", "--out", str(tmp_path / "s")], capsys)
    assert status == 2 and "Config.lr must be in (0.0, inf), got -1.0" in err
    assert "(--sweep lr=1e-3,-1)" in err and "flag --lr" not in err
    assert not (tmp_path / "s").exists()
    # A flag's own bad value still names the flag.
    status, err = main(ppo, ["--lr", "-1", "--sweep", "lr=1e-3", "--out",
                             str(tmp_path / "f")], capsys)
    assert status == 2 and "(flag --lr)" in err


def test_the_unknown_env_message_names_the_other_kinds_of_ids():
    with pytest.raises(ValueError) as e:
        purerl.envs.make("Humanoid-v4")
    message = str(e.value)
    assert "unknown env id 'Humanoid-v4'" in message and "CartPole-v1" in message
    for kind in ("gymnasium:<id>", "dmc:<domain>-<task>", "mjx:<domain>-<task>"):
        assert kind in message
    with pytest.raises(ValueError, match=r"host env: purerl\.envs\.make_host"):
        purerl.envs.make("gymnasium:CartPole-v1")


def test_help_describes_the_algorithm_in_whole_sentences():
    description = experiment.build_parser(dreamer, "dmc:walker-walk").description
    assert description.startswith("Dreamer (v1)")
    assert description.endswith("(Keras' default, the reference's).")


# --- snapshots and parameter groups ------------------------------------------------


def write_snapshot_meta(path, algo=ppo, env_id="CartPole-v1"):
    """A snapshot.json as snapshot.save writes it (enough for snapshot.check)."""
    os.makedirs(path)
    meta = snapshot.describe(algo, purerl.envs.make(env_id).spec, algo.Config())
    with open(os.path.join(path, snapshot.META), "w") as f:
        json.dump({**meta, "num_seeds": 1}, f, default=str)


def test_snapshot_paths_say_what_is_wrong(tmp_path):
    spec = purerl.envs.make("CartPole-v1").spec
    with pytest.raises(ValueError, match="does not exist"):
        snapshot.check(str(tmp_path / "nowhere"), ppo, spec)
    run = tmp_path / "run"
    write_snapshot_meta(str(run / "snapshot"))
    with pytest.raises(ValueError, match=rf"{run} is a run directory: its snapshot is "
                                         rf"{run / 'snapshot'}"):
        snapshot.check(str(run), ppo, spec)
    with pytest.raises(ValueError, match="is not a snapshot"):
        snapshot.check(str(tmp_path), ppo, spec)


def test_unknown_parameter_groups_list_the_agents_groups(tmp_path, capsys):
    snap = tmp_path / "snap"
    write_snapshot_meta(str(snap))
    out = tmp_path / "run"
    status, err = main(ppo, [*TINY, "--snapshot", str(snap), "--restore", "actor,encoder",
                             "--out", str(out)], capsys)
    assert status == 2, err
    assert "--restore: ppo has no parameter group 'encoder'; its groups: actor, critic" in err
    assert not out.exists()  # refused before the run directory is written
    status, err = main(ppo, [*TINY, "--freeze", "policy", "--out", str(out)], capsys)
    assert status == 2
    assert "--freeze: ppo has no parameter group 'policy'; its groups: actor, critic" in err
    # --restore picks groups of a snapshot: without one it would do nothing.
    status, err = main(ppo, [*TINY, "--restore", "actor", "--out", str(out)], capsys)
    assert status == 2 and "--restore needs --snapshot DIR" in err
    assert not out.exists()


# --- interrupts --------------------------------------------------------------------


def test_an_interrupt_names_the_run_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(experiment, "run_experiment", interrupted)
    status, err = main(ppo, [*TINY, "--out", str(out)], capsys)
    assert status == 130
    assert f"resume with: python experiments/ppo.py --resume --out {out}" in err
    assert "<run dir>" not in err
    # Before the run directory is written there is nothing to resume.
    monkeypatch.setattr(experiment, "jit_driver", interrupted)
    status, err = main(ppo, [*TINY, "--out", str(tmp_path / "early")], capsys)
    assert status == 130 and "nothing was written" in err and "--resume" not in err
    assert not (tmp_path / "early").exists()


# --- the API's run defaults --------------------------------------------------------


def test_bare_run_defaults_given_to_another_algorithm_warn():
    env = purerl.envs.make("Pendulum-v1")
    with pytest.warns(UserWarning, match=r"sac\.RUN"):
        purerl.make_train(sac, env, sac.Config(), RunConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        purerl.make_train(sac, env, sac.Config())  # sac.RUN
        purerl.make_train(sac, env, sac.Config(), sac.RUN)
        purerl.make_train(ppo, env, ppo.Config(), RunConfig())  # = ppo.RUN


# --- optional extras and noise -----------------------------------------------------


def test_mjx_ids_without_the_dmc_extra_say_what_to_install(tmp_path):
    code = ("import sys; sys.modules['mujoco'] = None\n"
            "from purerl import experiment\n"
            "from purerl.algos import ppo\n"
            "sys.exit(experiment.main(ppo, {}, argv=['--env', 'mjx:cartpole-balance', "
            f"'--out', {str(tmp_path / 'run')!r}]))")
    proc = python(code)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "pip install -e '.[dmc]'" in lines[0] and "missing: mujoco" in lines[0]


def quiet_env(**changes):
    """The environment of a script run outside the tests: no compilation cache (a
    cached program is not compiled, and compiling is what logs), no display."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "DISPLAY", "MUJOCO_GL")}
    return {**env, **changes}


def test_a_maze_reset_compiles_without_xla_error_lines():
    # Two seeds of a reset: the first coverage visit's statistics branch, on constants,
    # sent XLA's algebraic simplifier round a loop that it logs at error level.
    code = ("import jax, purerl\n"
            "env = purerl.envs.vectorize(purerl.envs.make('Maze-Bottleneck-Goal-v0'), 1)\n"
            "keys = jax.random.split(jax.random.key(0), 2)\n"
            "jax.block_until_ready(jax.jit(jax.vmap(env.reset))(keys))\n")
    proc = python(code, env=quiet_env())
    assert proc.returncode == 0, proc.stderr
    assert "algebraic_simplifier" not in proc.stderr, proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("dm_control") is None
                    or importlib.util.find_spec("mujoco.mjx") is None,
                    reason="needs the [dmc] extra (dm_control, mujoco-mjx)")
def test_an_mjx_env_without_a_display_warns_nothing():
    code = ("import purerl\n"
            "from purerl.envs.mjx import load_physics\n"
            "load_physics('cartpole-balance')\n")
    proc = python(code, env=quiet_env())
    assert proc.returncode == 0, proc.stderr
    assert "DISPLAY" not in proc.stderr and "GLFW" not in proc.stderr, proc.stderr
