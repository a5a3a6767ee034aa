"""Calling a library's own KL function as written: its parameters bound by name.

Libraries name their arguments (``logprob``, ``log_probs``, ``ref_logprob``,
``log_probs_base``, ``logprobs_reference``, ``old_log_probs``, ``loss_mask``, ...) and
take options (``kl_penalty="low_var_kl"``).  A class (AReaL's ``KLEstimator``) is
instantiated with the options its ``__init__`` takes and then called (``forward`` for a
torch module) with the others.  A parameter is bound to a role by its name
(or by ``binds``: parameter -> role), set from ``options`` (parameter -> value), or left
at its default; a mask gets all ones.  A parameter whose name says nothing (``a``,
``x``) is bound by position only when no parameter of the function says what it is;
a name that says one role is never given another by position.  Whatever cannot be
bound is a one-line ``UsageError`` naming it and the flags that bind it.  Only
signatures are read before the term is called, except a class's ``__init__``, which runs
here (so call this where the user's code may run: the API's isolated worker).
"""
from __future__ import annotations

import inspect

from verify.errors import UsageError

ROLES = ("logp", "ref_logp", "old_logp", "mask")
FLAGS = "--bind PARAM=ROLE (roles: logp, ref_logp, old_logp, mask) or --option PARAM=VALUE"
# what a name says, checked in this order (a reference or old log-prob also says "logprob"):
# words of the name (split at "_") for the reference and the old policy, so that
# "prefix" or "baseline" say nothing; any part of it for the policy
_REFERENCE = {"ref", "refs", "reference", "base"}
_OLD = {"old", "prev", "previous", "behav", "behavior", "behaviour", "rollout", "generation", "gen", "sampling",
        "sampled"}
_POLICY = ("logp", "logprob", "log_prob", "per_token_logps", "logit")  # logits: a full-vocabulary term


def role_of(name: str) -> str | None:
    """The role a parameter's name says, or None (``loss_mask`` -> mask, ``log_probs_base``
    -> ref_logp, ``old_log_probs`` -> old_logp, ``logprob`` -> logp).  A word of the
    reference or the old policy counts in a name that also says log-prob, or alone
    (``ref``, ``old``): ``importance_sampling_level`` is an option, not old log-probs."""
    lowered = name.lower()
    words = set(lowered.split("_"))
    if lowered.endswith("mask"):
        return "mask"
    says_log_prob = any(part in lowered for part in _POLICY)
    if words & _REFERENCE and (says_log_prob or len(words) == 1):
        return "ref_logp"
    if words & _OLD and (says_log_prob or len(words) == 1):
        return "old_logp"
    if says_log_prob:
        return "logp"
    return None


def bind_term(func, options: dict | None = None, binds: dict | None = None, *, kind: str = "token"):
    """``term(logp, ref_logp, old_logp)`` calling ``func`` with its parameters bound by
    name, ``options`` and ``binds``; UsageError naming what cannot be bound.  A mask is
    ones of one value per token, or per position for a full-vocabulary term (``kind``)."""
    options, binds = dict(options or {}), dict(binds or {})
    label = getattr(func, "__name__", "the term")
    if inspect.isclass(func):
        func, options = _instantiate(func, options, label)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        if options or binds:
            raise UsageError(f"{label}: its signature cannot be read, so --option/--bind cannot apply") from None
        return func
    parameters = [p for p in signature.parameters.values()
                  if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    names = {p.name for p in parameters}
    takes_keywords = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    for name, role in binds.items():
        if name not in names:
            raise UsageError(f"{label} has no parameter {name!r} (--bind {name}={role})")
        if role not in ROLES:
            raise UsageError(f"--bind {name}={role}: unknown role {role!r}; roles: {', '.join(ROLES)}")
        if name in options:
            raise UsageError(f"{name!r} is given both --bind and --option")
    for name in options:
        if name not in names and not takes_keywords:
            raise UsageError(f"{label} has no parameter {name!r} (--option {name}=...)")
    roles: dict[str, str] = {}  # parameter -> role
    unbound = []
    for parameter in parameters:
        if parameter.name in options:
            continue
        role = binds.get(parameter.name) or role_of(parameter.name)
        if role is not None:
            roles[parameter.name] = role
        elif parameter.default is inspect.Parameter.empty:
            unbound.append(parameter)
    if unbound and not roles:  # names that say nothing: the positional convention (logp, ref_logp, old_logp)
        positional = [p for p in unbound if p.kind is not inspect.Parameter.KEYWORD_ONLY][:3]
        roles.update({p.name: role for p, role in zip(positional, ROLES)})
        unbound = [p for p in unbound if p.name not in roles]
    if unbound:
        raise UsageError(f"{label}: cannot bind parameter {unbound[0].name!r} (it has no default): give {FLAGS}")
    for role in ROLES:
        taking = [name for name, given in roles.items() if given == role]
        if len(taking) > 1:
            raise UsageError(f"{label}: {', '.join(taking)} all look like {role}: say which with --bind PARAM={role}")
    for role in ("logp", "ref_logp"):
        if role not in roles.values():
            raise UsageError(f"{label}: no parameter takes {role}: give --bind PARAM={role}")
    positional_only = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_ONLY]

    def term(logp, ref_logp, old_logp):
        values = {"logp": logp, "ref_logp": ref_logp, "old_logp": old_logp}
        arguments = {name: (_mask_for(logp, kind) if role == "mask" else values[role]) for name, role in roles.items()}
        arguments.update(options)
        args = [arguments.pop(name) for name in positional_only if name in arguments]
        return func(*args, **arguments)

    term.__name__ = label
    return term


def _instantiate(cls, options: dict, label: str):
    """(the instance's callable, the options left for it): ``cls`` built with the options
    its ``__init__`` names; a required ``__init__`` parameter without one is an error."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        raise UsageError(f"{label}: the signature of its __init__ cannot be read") from None
    parameters = [p for p in signature.parameters.values()
                  if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    given = {p.name: options.pop(p.name) for p in parameters if p.name in options}
    missing = [p.name for p in parameters if p.name not in given and p.default is inspect.Parameter.empty]
    if missing:
        raise UsageError(f"{label}: cannot instantiate it: __init__ parameter {missing[0]!r} has no default "
                         f"(give --option {missing[0]}=VALUE)")
    try:
        instance = cls(**given)
    except Exception as error:  # noqa: BLE001 - the user's class refusing its options is bad input
        raise UsageError(f"{label}({', '.join(f'{k}={v!r}' for k, v in given.items())}) raised "
                         f"{type(error).__name__}: {error}"[:300]) from None
    call = getattr(instance, "forward", None) if _hides_its_signature(instance) else None
    call = call if callable(call) else instance
    if not callable(call):
        raise UsageError(f"{label}: its instances are not callable")
    return call, options


def _hides_its_signature(instance) -> bool:
    """A torch module's ``__call__`` takes ``*args, **kwargs``: its ``forward`` says more."""
    try:
        parameters = inspect.signature(instance).parameters.values()
    except (TypeError, ValueError):
        return True
    return all(p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) for p in parameters)


def _mask_for(tensor, kind):
    """A mask that keeps every token: ones of the log-probs' shape (and dtype), without
    the vocabulary axis for a full-vocabulary term."""
    import torch

    return torch.ones_like(tensor if kind == "token" else tensor[..., 0])
