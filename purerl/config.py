"""Frozen, validated, vmappable algorithm configs.

``@config`` turns a class into a frozen dataclass registered as a pytree: fields
annotated ``float`` are pytree leaves (so a sweep can ``jax.vmap`` over them), all
other fields (ints, bools, strings, tuples) are static metadata that fix shapes and
loop counts. Validation runs at construction on concrete values only: under a
transformation the float leaves are tracers and are passed through unchecked.
"""

import dataclasses
import functools
import math
import numbers
import warnings
from typing import Any

import jax


def config(cls):
    """Class decorator: frozen dataclass + pytree with float fields as leaves.

    Every concrete float field must be finite: NaN is refused everywhere, +-inf unless
    the field is named in the class's ``_infinite_ok`` (a tuple, e.g. Off-PAC's
    untruncated ``clip_rho``). The check runs before the class's own
    ``__post_init__``."""
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self):
        check_finite(self)
        if own is not None:
            own(self)
        else:
            parent = getattr(super(cls, self), "__post_init__", None)
            if parent is not None:
                parent()

    cls.__post_init__ = __post_init__
    cls = dataclasses.dataclass(frozen=True)(cls)
    _keep_old_names(cls)
    data = float_fields(cls)
    meta = [f.name for f in dataclasses.fields(cls) if f.name not in data]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


def _keep_old_names(cls) -> None:
    """A renamed field's old name (the class's ``_renamed``: ``{old: new}``) still
    works for one release, with a ``DeprecationWarning``: as a constructor keyword
    (``dataclasses.replace`` included) and as an attribute."""
    renamed = getattr(cls, "_renamed", {})
    if not renamed:
        return
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        for old, new in renamed.items():
            if old in kwargs:  # wins over new: dataclasses.replace passes every field
                warn_renamed(cls.__name__, old, new, stacklevel=3)
                kwargs[new] = kwargs.pop(old)
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    for old, new in renamed.items():
        def read(self, old=old, new=new):
            warn_renamed(type(self).__name__, old, new, stacklevel=3)
            return getattr(self, new)

        setattr(cls, old, property(read))


def warn_renamed(owner: str, old: str, new: str, stacklevel: int = 2) -> None:
    warnings.warn(f"{owner}.{old} is now {owner}.{new}; the old name goes in the next "
                  "release", DeprecationWarning, stacklevel=stacklevel + 1)


def renamed_fields(cls) -> dict[str, str]:
    """``{old name: new name}`` of a config class's renamed fields."""
    return dict(getattr(cls, "_renamed", {}))


def is_concrete(value: Any) -> bool:
    return isinstance(value, numbers.Number)


def float_fields(cls) -> list[str]:
    """The fields annotated ``float`` of a config class (or instance): its pytree leaves,
    the ones a sweep can vary and a resume can change."""
    return [f.name for f in dataclasses.fields(cls) if f.type in (float, "float")]


def check_finite(obj) -> None:
    """Raise ``ValueError`` naming the first concrete float field that is NaN, or
    infinite without being in ``obj._infinite_ok``."""
    allowed = getattr(obj, "_infinite_ok", ())
    for name in float_fields(obj):
        value = getattr(obj, name)
        if not is_concrete(value):
            continue
        if math.isnan(value) or (math.isinf(value) and name not in allowed):
            what = "a number, not NaN" if name in allowed else "finite"
            raise ValueError(f"{type(obj).__name__}.{name} must be {what}, got {value}")


def check_range(obj, name: str, low=None, high=None, *, low_open=False, high_open=False):
    """Raise ``ValueError`` naming ``name`` if ``obj.name`` is outside the range."""
    value = getattr(obj, name)
    if not is_concrete(value):
        return
    bad = (
        (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high))
    )
    if bad:
        # An unbounded side is open unless the field takes inf (check_finite refuses it).
        closed_inf = name in getattr(obj, "_infinite_ok", ())
        lo = "(" if low_open or (low is None and not closed_inf) else "["
        hi = ")" if high_open or (high is None and not closed_inf) else "]"
        allowed = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        raise ValueError(
            f"{type(obj).__name__}.{name} must be in {allowed}, got {value!r}"
        )


def check_choice(obj, name: str, choices) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ValueError(
            f"{type(obj).__name__}.{name} must be one of {list(choices)}, got {value!r}"
        )


def field_docs(cls) -> dict[str, str]:
    """Per-field docstrings: the string literal right under each field (a subclass's
    Config inherits its base's and may restate a field with its own default)."""
    import ast
    import inspect
    import textwrap

    docs = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@config
class RunConfig:
    """How a run is driven, apart from the algorithm's hyperparameters: the budget,
    the env counts, evaluation and observation normalisation. Each algorithm module
    has its paper's default as ``RUN``; ``make_train(algo, env, config, run)`` and
    ``Trainer`` take one, and the experiment scripts set it from ``--total-steps``,
    ``--num-envs`` and the other loop flags."""

    total_steps: int = 500_000
    """Env steps per seed, all training envs together. A run does these steps to within
    one iteration (num_envs * num_steps), in equal evaluation blocks, or is refused
    with the nearest budgets that work (see loops.schedule)."""
    num_envs: int = 4
    """Parallel training envs per seed."""
    num_steps: int = 128
    """Env steps per env per iteration: the rollout length of on-policy algorithms;
    for replay-based ones, the env steps between training rounds (train every
    num_envs * num_steps env steps). Episodic algorithms (REINFORCE) ignore it."""
    num_evals: int = 20
    """Evaluations over the run, the last one at the end."""
    num_eval_envs: int = 8
    """Evaluation episodes per evaluation (one per eval env, policy in eval mode)."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (an env wrapper)."""

    def __post_init__(self):
        for name in ("total_steps", "num_envs", "num_steps", "num_evals", "num_eval_envs"):
            check_range(self, name, 1)

    @property
    def batch_size(self) -> int:
        """Env steps per iteration: num_envs * num_steps."""
        return self.num_envs * self.num_steps


def replace(obj, **changes):
    """``dataclasses.replace`` for configs (validated again)."""
    return dataclasses.replace(obj, **changes)
