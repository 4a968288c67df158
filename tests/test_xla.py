"""purerl.xla: the CPU scheduling flag is set on import, can be declined, and leaves
the numbers unchanged."""

import json
import os
import subprocess
import sys

from purerl import xla

PROBE = """
import json, os, jax
import purerl
from purerl.algos import ppo
cfg = ppo.Config(num_minibatches=4, num_epochs=2)
run = purerl.RunConfig(total_steps=4 * 32 * 4, num_envs=4, num_steps=32, num_evals=2,
                       num_eval_envs=2)
train = purerl.make_train(ppo, purerl.envs.make("CartPole-v1"), cfg, run)
runner, metrics = jax.jit(train)(jax.random.key(3))
leaves = [jax.numpy.asarray(x).tolist() for x in jax.tree.leaves((runner, metrics))
          if not jax.dtypes.issubdtype(jax.numpy.asarray(x).dtype, jax.dtypes.prng_key)]
print(json.dumps({"applied": purerl.XLA_FLAG_APPLIED,
                  "flags": os.environ.get("XLA_FLAGS", ""), "leaves": leaves}))
"""


def probe(**env) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla.ENV_VAR)}
    # Compile afresh: a cached executable of the other setting would make the
    # comparison below vacuous.
    environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    out = subprocess.run([sys.executable, "-c", PROBE], env={**environ, **env},
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_flag_on_import_opt_out_and_same_numbers():
    on = probe()
    off = probe(**{xla.ENV_VAR: "1"})
    assert on["applied"] and xla.FLAG in on["flags"].split()
    assert not off["applied"] and xla.FLAG_NAME not in off["flags"]
    # A training run computes bit-identical numbers either way.
    assert on["leaves"] == off["leaves"]


def test_user_setting_wins():
    mine = f"--{xla.FLAG_NAME}=true"
    out = probe(XLA_FLAGS=mine)
    assert not out["applied"] and out["flags"] == mine


def test_not_applied_once_a_backend_runs(monkeypatch):
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()  # XLA has read its flags in this process now
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv(xla.ENV_VAR, raising=False)
    assert xla.apply_default() is False
    assert "XLA_FLAGS" not in os.environ


def test_without_flag_strips_only_purerls_flag():
    env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {xla.FLAG}", "A": "1"}
    assert xla.without_flag(env) == {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "A": "1"}
    assert xla.without_flag({"XLA_FLAGS": xla.FLAG}) == {}
