"""purerl.distributed: a run on 2 processes x 2 host devices (loopback, gloo) is the run
on 1 process x 4 devices, bit for bit; process 0 alone writes; bad environments are
refused by name."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from purerl import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--total-steps", "2048", "--num-seeds", "4", "--num-envs", "4", "--num-steps", "32",
        "--num-evals", "2", "--num-eval-envs", "2", "--hidden-sizes", "16,16",
        "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV_VARS}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return {**env, **extra}


def _arrays(path):
    return ocp.StandardCheckpointer().restore(path)


def test_two_processes_equal_one_process_to_the_bit(tmp_path):
    script = [sys.executable, "experiments/ppo.py", *TINY]
    one = subprocess.run([*script, "--out", str(tmp_path / "one")], cwd=ROOT,
                         env=_env(4), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    codes, outs = _two_processes(*script[1:], "--out", str(tmp_path / "two"))
    assert codes == [0, 0], outs
    # Process 1 prints nothing of its own (gloo's C++ connection lines aside).
    assert "-> " + str(tmp_path / "two") in outs[0][0]
    assert "final eval return" in outs[0][0] and "final eval return" not in outs[1][0]
    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    assert (a["devices"], a["processes"], b["devices"], b["processes"]) == (4, 1, 4, 2)
    assert a["eval_returns"] == b["eval_returns"]
    for name in ("checkpoint/block_2", "snapshot/agent/block_0"):
        x, y = _arrays(tmp_path / "one" / name), _arrays(tmp_path / "two" / name)
        flat_x, flat_y = (sorted(_flatten(t).items()) for t in (x, y))
        assert [k for k, _ in flat_x] == [k for k, _ in flat_y]
        for (k, u), (_, v) in zip(flat_x, flat_y):
            assert np.array_equal(u, v, equal_nan=u.dtype.kind == "f"), (name, k)
    # The seeds are different runs (the four shards did not compute one seed).
    returns = np.asarray(a["eval_returns"][-1])
    params = _flatten(_arrays(tmp_path / "one" / "snapshot/agent/block_0"))
    assert any(np.abs(v[0] - v[1]).max() > 0 for v in params.values() if v.ndim > 1), returns


def _two_processes(*args):
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                 JAX_PROCESS_ID=str(i))) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    return [p.returncode for p in procs], outs


def test_two_processes_stop_on_divergence_and_resume_from_the_checkpoint(tmp_path):
    # As the one-process test in tests/experiments: SAC at lr 10 diverges in block 6.
    out = tmp_path / "run"
    flags = ["--num-seeds", "4", "--total-steps", "600", "--num-evals", "6",
             "--num-eval-envs", "1", "--batch-size", "16", "--hidden-sizes", "16",
             "--learning-starts", "550", "--no-progress"]
    codes, outs = _two_processes("experiments/sac.py", *flags, "--lr", "10", "--out", str(out))
    assert codes == [3, 3], outs
    assert "last good checkpoint is block 5" in outs[0][1]
    assert "stopped:" not in outs[1][1]  # one process reports it
    codes, outs = _two_processes("experiments/sac.py", "--resume", "--out", str(out), "--lr",
                                 "3e-4", "--allow-change", "--no-progress")
    assert codes == [0, 0], outs
    results = json.loads((out / "results.json").read_text())
    assert results["eval_steps"] == [100, 200, 300, 400, 500, 600]
    assert results["processes"] == 2 and len(results["final_returns"]) == 4
    assert np.isfinite(results["final_returns"]).all()


def test_seeds_that_do_not_divide_over_the_processes_devices_are_refused(tmp_path):
    codes, outs = _two_processes("experiments/ppo.py", *TINY[:2], "--num-seeds", "3",
                                 "--no-progress", "--out", str(tmp_path / "run"))
    assert codes == [2, 2], outs
    assert "num_seeds (3) must be a multiple of the 4 devices of the 2 processes" in outs[0][1]
    assert not (tmp_path / "run").exists()  # nothing written on a usage error


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}"))
        return out
    if isinstance(tree, (list, tuple)):
        return _flatten(dict(enumerate(tree)), prefix)
    return {prefix: np.asarray(tree)}


@pytest.mark.parametrize("env,message", [
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"}, "JAX_NUM_PROCESSES, JAX_PROCESS_ID not set"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "two",
      "JAX_PROCESS_ID": "0"}, "must be integers, got 'two'"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2",
      "JAX_PROCESS_ID": "2"}, "JAX_PROCESS_ID must be in"),
])
def test_a_partial_or_bad_environment_is_refused_by_name(monkeypatch, env, message):
    for k in distributed.ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=message):
        distributed.initialize()


def test_no_environment_means_one_process(monkeypatch):
    for k in distributed.ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("PURERL_DISTRIBUTED", raising=False)
    assert distributed.initialize() is False
    assert distributed.is_main() and not distributed.is_multiprocess()
    assert distributed.broadcast_text("same") == "same"


SHARD_GRAD = """
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
from purerl import distributed

def loss(p, x, y):
    return jnp.mean((jnp.tanh(x @ p["w"]) + p["b"] - y) ** 2)

k = jax.random.split(jax.random.key(0), 3)
params = {"w": jax.random.normal(k[0], (3, 2)), "b": jnp.ones(2)}
x, y = jax.random.normal(k[1], (64, 3)), jax.random.normal(k[2], (64, 2))
mesh = Mesh(np.array(jax.devices()), ("data",))
specs = dict(mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P())
value, grad = jax.jit(jax.shard_map(distributed.shard_mean_grad(loss, "data"), **specs))(
    params, x, y)
naive = jax.jit(jax.shard_map(
    lambda p, x, y: jax.lax.pmean(jax.grad(loss)(p, x, y), "data"), **specs))(params, x, y)
ref_value, ref_grad = jax.value_and_grad(loss)(params, x, y)
print(json.dumps({
    "devices": jax.device_count(), "value": [float(value), float(ref_value)],
    "err": max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(grad),
                                                        jax.tree.leaves(ref_grad))),
    "naive_ratio": [float(jnp.median(a / b)) for a, b in zip(jax.tree.leaves(naive),
                                                             jax.tree.leaves(ref_grad))]}))
"""


def test_shard_mean_grad_is_the_one_device_gradient_and_pmean_of_grads_is_not():
    proc = subprocess.run([sys.executable, "-c", SHARD_GRAD], cwd=ROOT, env=_env(8),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    np.testing.assert_allclose(*out["value"], rtol=1e-6)
    assert out["err"] < 1e-6
    # The trap: pmean of per-shard gradients under vma checking is 8x the gradient.
    np.testing.assert_allclose(out["naive_ratio"], [8.0, 8.0], rtol=1e-5)
