"""Any policy as an agent: code that is not a registered agent package, scored like one.

``cryobench.evaluate.evaluate(policy=...)`` and ``cryobench run|submit|check --policy SPEC``
accept three kinds of policy, told apart by what they have:

- an **agent object**: ``act(obs, info)`` (and optionally ``reset(env, seed)``, ``fit(env, seed)``),
  e.g. an instance of a :class:`cryobench.agents.base.Agent` subclass;
- a **Stable-Baselines3 model**: ``predict(obs)``; a maskable one (sb3-contrib's MaskablePPO,
  whose ``predict`` takes ``action_masks``) gets the observation's ``action_mask``. Actions are
  the deterministic ones (the mode), so a run is reproducible;
- a **callable** ``(obs, info) -> action``.

A SPEC names the object: ``package.module:attribute`` (imported like any module) or
``path/to/file.py:attribute`` (a file that is not a package). A class is instantiated without
arguments. Wrong specs are a one-line :class:`~cryobench.errors.InputError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cryobench.errors import InputError

#: What the results file records for a policy that has no card (nothing to digest).
NO_VERSION: dict[str, str | None] = {"card_sha256": None, "checkpoint_sha256": None}


def is_policy_spec(name: str) -> bool:
    """True for ``module:attribute`` or ``file.py:attribute`` (agent names never hold a colon)."""
    return ":" in name


def policy_slug(spec: str) -> str:
    """A name of letters, digits and '-' for a policy spec (leaderboard names): ``policy-<attribute>``."""
    attribute = spec.rpartition(":")[2].lower()
    words = "".join(c if c.isalnum() else "-" for c in attribute).strip("-")
    return ("policy-" + "-".join(part for part in words.split("-") if part))[:64].rstrip("-")


def load_policy_object(spec: str) -> Any:
    """The object a SPEC names (a class is instantiated with no arguments)."""
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute:
        raise InputError(f"policy {spec!r}: expected MODULE:ATTRIBUTE or path/to/file.py:ATTRIBUTE")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _module_from_file(spec, Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name and where.startswith(exc.name):  # the module itself, not one it imports
                raise InputError(
                    f"policy {spec!r}: no module {where!r} (give a module on the Python path, or a file "
                    "path ending in .py)"
                ) from None
            raise InputError(f"policy {spec!r}: importing {where!r} failed: {type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise InputError(f"policy {spec!r}: importing {where!r} failed: {type(exc).__name__}: {exc}") from None
    try:
        target = getattr(module, attribute)
    except AttributeError:
        public = sorted(name for name in vars(module) if not name.startswith("_"))[:12]
        raise InputError(
            f"policy {spec!r}: {where!r} has no attribute {attribute!r} (it has: {', '.join(public)})"
        ) from None
    if inspect.isclass(target):
        try:
            target = target()
        except Exception as exc:
            raise InputError(
                f"policy {spec!r}: the class {attribute} cannot be built without arguments: {type(exc).__name__}: {exc}"
            ) from None
    return target


def _module_from_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"policy {spec!r}: file {str(path)!r} not found")
    name = f"cryobench_policy_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"policy {spec!r}: {str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # (dataclasses and pickling look modules up by name)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise InputError(f"policy {spec!r}: running {str(path)!r} failed: {type(exc).__name__}: {exc}") from None
    return module


def as_agent(policy: Any, name: str | None = None) -> Any:
    """An object with the agent interface (``fit``, ``reset``, ``act``) playing ``policy``."""
    if isinstance(policy, str):
        return as_agent(load_policy_object(policy), name or policy)
    if callable(getattr(policy, "act", None)):
        return _NamedAgent(policy, name or policy_name(policy))
    if callable(getattr(policy, "predict", None)):
        return SB3Agent(policy, name)
    if callable(policy):
        return CallableAgent(policy, name)
    raise InputError(
        f"policy {name or type(policy).__name__!r}: expected an agent (with act(obs, info)), "
        f"a Stable-Baselines3 model (with predict) or a callable (obs, info) -> action; got {type(policy).__name__}"
    )


def policy_name(policy: Any) -> str:
    """A name for a policy object in results: its class's (or function's) qualified name."""
    if isinstance(policy, str):
        return policy
    target = policy if inspect.isfunction(policy) or inspect.ismethod(policy) else type(policy)
    return f"{target.__module__}:{target.__qualname__}"


class _Adapter:
    """The agent interface's defaults: a real agent, no offline fit, nothing to reset."""

    uses_ground_truth = False
    uses_latent_quality = False
    needs_feedback = False
    reads_feedback = True  # unknown code may decide from revealed CTFs
    reads_features = True

    def __init__(self, policy: Any, name: str | None) -> None:
        self.policy = policy
        self.name = name or policy_name(policy)

    def fit(self, env, seed: int = 0) -> None:
        fit = getattr(self.policy, "fit", None)
        if callable(fit) and not callable(getattr(self.policy, "predict", None)):  # (SB3's learn is not fit)
            fit(env, seed=seed)

    def reset(self, env, seed: int) -> None:
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset(env, seed)


class _NamedAgent(_Adapter):
    """An agent object under the name it was loaded by (its flags kept)."""

    def __init__(self, policy: Any, name: str) -> None:
        super().__init__(policy, name)
        self.uses_ground_truth = bool(getattr(policy, "uses_ground_truth", False))
        self.uses_latent_quality = bool(getattr(policy, "uses_latent_quality", False))
        self.needs_feedback = bool(getattr(policy, "needs_feedback", False))
        self.reads_feedback = bool(getattr(policy, "reads_feedback", True))
        self.reads_features = bool(getattr(policy, "reads_features", True))

    def fit(self, env, seed: int = 0) -> None:
        fit = getattr(self.policy, "fit", None)
        if callable(fit):
            fit(env, seed=seed)

    def act(self, obs: dict, info: dict) -> Any:
        return self.policy.act(obs, info)


class CallableAgent(_Adapter):
    """A function ``(obs, info) -> action``."""

    def act(self, obs: dict, info: dict) -> Any:
        return self.policy(obs, info)


class SB3Agent(_Adapter):
    """A Stable-Baselines3 model: its deterministic action; maskable models get the action mask."""

    def __init__(self, policy: Any, name: str | None) -> None:
        super().__init__(policy, name)
        try:
            self.maskable = "action_masks" in inspect.signature(policy.predict).parameters
        except (TypeError, ValueError):  # a builtin or C callable: no signature to read
            self.maskable = False

    def act(self, obs: dict, info: dict) -> Any:
        try:
            if self.maskable:
                mask = np.asarray(obs["action_mask"], dtype=bool)
                action, _state = self.policy.predict(obs, deterministic=True, action_masks=mask)
            else:
                action, _state = self.policy.predict(obs, deterministic=True)
        except ValueError as exc:  # SB3's "Unexpected observation shape": trained on other spaces
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"policy {self.name!r}: its predict refused the environment's observation ({first}); "
                "a model must be trained on (or loaded with) this environment's observation space"
            ) from None
        action = np.asarray(action)
        return action.reshape(()) if action.size == 1 else action
