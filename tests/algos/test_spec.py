"""The declared contract (``purerl.AlgoSpec``): every algorithm module declares one,
the driver reads only it, and ``make(config, env_spec)`` works with the defaults."""

import dataclasses
import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl import experiment, memory
from purerl.algos import a2c, dreamer
from purerl.algos.base import AlgoSpec, spec_of

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE_ENV = {"Discrete": "CartPole-v1", "Box": "Pendulum-v1"}


@pytest.fixture(scope="module")
def cartpole():
    return purerl.envs.make("CartPole-v1")


@pytest.mark.parametrize("name", purerl.algos.__all__)
def test_every_module_declares_its_spec(name):
    module = getattr(purerl.algos, name)
    spec = spec_of(module)
    assert isinstance(spec, AlgoSpec) and spec.name == name
    assert spec.config is module.Config and spec.run is module.RUN
    assert spec.make is module.make and spec.doc == module.__doc__
    assert set(spec.action_spaces) <= {"Discrete", "Box"} and spec.action_spaces
    gamma, scale = spec.discounting(spec.config())
    assert 0.0 <= gamma <= 1.0 and scale > 0.0


@pytest.mark.parametrize("name", purerl.algos.__all__)
def test_make_with_the_defaults_builds_an_agent(name):
    spec = spec_of(getattr(purerl.algos, name))
    env = purerl.envs.make(PROBE_ENV[spec.action_spaces[0]])
    agent = spec.make(spec.config(), env.spec)  # no num_updates: RUN's
    state = jax.eval_shape(agent.init, jax.random.key(0))
    assert jax.tree.leaves(state) or name == "uniform"


def test_the_driver_probes_no_algorithm_module():
    """No ``getattr(algo, ...)`` or ``inspect.signature`` anywhere in the library:
    what an algorithm tells the driver is its AlgoSpec."""
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "purerl")):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                text = open(path).read()
                for pattern in (r"getattr\(algo\b", r"inspect\.signature",
                                r"getattr\(c(?:onfi)?g, \"(?:gamma|reward_scale)\""):
                    found += [f"{path}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not found, found


def test_spec_of_refuses_what_is_not_an_algorithm():
    with pytest.raises(TypeError, match="expected an AlgoSpec or a module that declares "
                                        "SPEC = purerl.AlgoSpec"):
        spec_of(np)
    with pytest.raises(TypeError, match="SPEC is a dict, not an AlgoSpec"):
        spec_of(type("fake", (), {"SPEC": {}}))


def test_the_memory_discounts_with_the_declared_values(cartpole):
    """A spec's ``discounting`` is what batches are built with: an algorithm whose
    Config names its discount otherwise is not bootstrapped with a silent γ = 1."""
    cfg = a2c.Config(hidden_sizes=(8,))
    agent = a2c.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (3, 1, 4))
    records = {"obs": obs, "next_obs": obs + 1.0, "action": jnp.zeros((3, 1), jnp.int32),
               "reward": jnp.ones((3, 1)), "first": jnp.zeros((3, 1), bool),
               "terminated": jnp.array([[False], [False], [True]]),
               "truncated": jnp.array([[False], [True], [True]]),
               "extras": {"log_prob": jnp.zeros((3, 1))}}
    batch = memory.to_batch(agent, state, records, (0.5, 2.0))
    next_v = np.asarray(agent.value(state, records["next_obs"]))
    np.testing.assert_allclose(batch.reward, 2.0 + 0.5 * np.array([[0], [1], [0]]) * next_v,
                               rtol=1e-6)
    np.testing.assert_array_equal(batch.discount, [[0.5], [0.0], [0.0]])
    # Through the driver: the batch an update gets uses the spec's values, whatever
    # the Config's own gamma (0.99) and reward_scale (1) are.
    def make_probe(config, env_spec, num_updates=None):
        inner = a2c.make(config, env_spec, num_updates)
        return inner._replace(update=lambda s, b, k: (s, {"reward": b.reward,
                                                          "discount": b.discount}))

    declared = dataclasses.replace(a2c.SPEC, make=make_probe,
                                   discounting=lambda c: (0.5, 2.0))
    run = dataclasses.replace(a2c.RUN, total_steps=6, num_envs=1, num_steps=3, num_evals=1)
    _, _, _, learn = purerl.loops.build(declared, cartpole.spec, cfg, run)
    _, _, seen = learn(state, (), records, 3, jax.random.key(2))
    np.testing.assert_array_equal(seen["discount"], batch.discount)
    np.testing.assert_allclose(seen["reward"], batch.reward, rtol=1e-6)


def test_presets_resolve_by_id_then_domain_then_family():
    presets = {"dmc:cartpole-swingup": {"a": 1}, "dmc:cartpole": {"a": 2}, "mjx:": {"a": 3},
               "CartPole-v1": {"a": 4}}
    key = experiment.preset_key
    assert key("dmc:cartpole-swingup", presets) == "dmc:cartpole-swingup"
    assert key("dmc:cartpole-balance", presets) == "dmc:cartpole"
    assert key("mjx:reacher-easy", presets) == "mjx:"
    assert key("dmc:walker-walk", presets) is None
    assert key("CartPole-v1", presets) == "CartPole-v1"
    assert key("Acrobot-v1", presets) is None


def test_dreamer_on_another_cartpole_task_gets_the_cartpole_state_preset():
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    try:
        import dreamer as script  # experiments/dreamer.py
    finally:
        sys.path.pop(0)
    parser = experiment.build_parser(dreamer, "Pendulum-v1")
    args = parser.parse_args(["--env", "dmc:cartpole-balance"])
    assert experiment.preset_key(args.env, script.PRESETS) == "dmc:cartpole"
    config, run = experiment.resolve_config(dreamer, args, script.PRESETS)
    assert (config.deter_size, config.free_nats, run.total_steps) == (64, 0.5, 100_000)
    assert experiment.env_options(args, script.PRESETS)["action_repeat"] == 2


def test_check_state_names_what_breaks_the_state_convention():
    from typing import NamedTuple

    from purerl.snapshot import Phase
    from purerl.testing import check_state

    class State(NamedTuple):
        params: dict
        target_critic: dict

    spec = dataclasses.replace(
        a2c.SPEC, name="toy",
        phases={"finetune": Phase(from_snapshot=True, restore=("actor",),
                                  freeze=("encoder",))})
    w = {"w": jnp.zeros((2, 3))}
    good = State({"actor": w, "critic": w, "encoder": w}, w)
    check_state(spec, good)
    with pytest.raises(AssertionError, match="not a NamedTuple with a params field"):
        check_state(spec, (w, w))
    with pytest.raises(AssertionError, match="params is a list, not a dict"):
        check_state(spec, good._replace(params=[w]))
    with pytest.raises(AssertionError, match="target_critic is not shaped as"):
        check_state(spec, good._replace(target_critic={"w": jnp.zeros((3, 2))}))
    with pytest.raises(AssertionError, match="target_critic names no parameter group"):
        check_state(spec, good._replace(params={"actor": w, "encoder": w}))
    with pytest.raises(AssertionError, match="phase 'finetune' names group 'encoder'"):
        check_state(spec, good._replace(params={"actor": w, "critic": w}))


RENAMED = [  # (module, old name): one name per concept, updates per training round
    ("sac", "gradient_steps"), ("proto", "gradient_steps"), ("smm", "gradient_steps"),
    ("offpac", "updates_per_rollout"), ("dreamer", "train_steps"),
]


@pytest.mark.parametrize("name,old", RENAMED)
def test_old_field_names_still_work_and_warn(name, old):
    algo = getattr(purerl.algos, name)
    with pytest.warns(DeprecationWarning, match=f"Config.{old} is now "
                                                "Config.updates_per_round"):
        cfg = algo.Config(**{old: 3})
    assert cfg.updates_per_round == 3 and cfg == algo.Config(updates_per_round=3)
    with pytest.warns(DeprecationWarning, match=f"{old} is now"):
        assert getattr(cfg, old) == 3
    with pytest.warns(DeprecationWarning):
        assert dataclasses.replace(cfg, **{old: 4}).updates_per_round == 4
    # The old flag: not in --help, sets the new field, says so.
    parser = experiment.build_parser(algo, "Pendulum-v1")
    assert "--" + old.replace("_", "-") not in parser.format_help()
    args = parser.parse_args(["--" + old.replace("_", "-"), "5"])
    assert args.updates_per_round == 5


def test_one_name_per_concept_across_the_configs():
    """Updates per round has one name; the replay reads it under that name."""
    for name in ("sac", "proto", "smm", "offpac", "dreamer"):
        algo = getattr(purerl.algos, name)
        fields = {f.name for f in dataclasses.fields(algo.Config)}
        assert "updates_per_round" in fields and not fields & {
            "gradient_steps", "updates_per_rollout", "train_steps"}, name
        cfg = algo.Config(updates_per_round=2)
        assert spec_of(algo).replay(cfg).updates == 2, name


def test_resume_reads_a_run_saved_under_a_fields_old_name(tmp_path):
    """A run directory written before the rename resumes with its own value."""
    from purerl.algos import sac

    parser = experiment.build_parser(sac, "Pendulum-v1")
    args = parser.parse_args(["--out", str(tmp_path)])
    settings = {**experiment._settings(args, sac), "gradient_steps": 4}
    del settings["updates_per_round"]
    (tmp_path / "run.json").write_text(json.dumps({"algo": "sac", "settings": settings}))
    args = parser.parse_args(["--out", str(tmp_path), "--resume"])
    experiment._check_run_dir(args, sac, "sac", "Pendulum-v1")
    assert args.updates_per_round == 4
