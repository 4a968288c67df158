import os

# Compilation dominates small runs on CPU: cache compiled programs across test runs.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax_cache"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# The tests compile far more than they run: jax's switch for this (XLA's backend at
# optimisation level 0, LLVM's expensive passes off) takes about a third off a compile
# on CPU. It goes through the environment so that the experiment scripts the tests
# start get it too (jax reads it when imported, below); experiments and benchmarks run
# outside the tests keep XLA's defaults. JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs the
# tests on the optimised build.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import importlib.util  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# dm_control fixes its renderer at its first import, and tests that import it directly
# (test_mjx) would leave its default, GLFW, which crashes a worker without a display
# when a later test renders. Choose it once per process the way purerl does (the
# scripts the tests start inherit the choice).
if importlib.util.find_spec("dm_control") is not None:
    from purerl.envs.host import _choose_renderer  # noqa: E402

    _choose_renderer()

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)


@pytest.fixture(params=["nojit", "jit"])
def variant(request):
    """Run a function as is and under jax.jit (chex's variants are absltest-only)."""
    if request.param == "jit":
        return jax.jit
    return lambda f, **kw: f
