"""Framework adapters: call an implementation written for torch with the harness's NumPy
arrays, exactly.

The floating-point layer works on NumPy arrays of one dtype (bfloat16 through
ml_dtypes).  A torch implementation gets torch tensors of *the same* dtype holding the
same numbers, bit for bit, and its result is read back bit for bit: float64, float32
and float16 through ``torch.from_numpy`` / ``Tensor.numpy``, bfloat16 through its bit
pattern (NumPy's ml_dtypes bfloat16 viewed as int16, ``torch.from_numpy``, then
``.view(torch.bfloat16)``, and back the same way).  Nothing goes through float32, which
would hide exactly the rounding a bfloat16 claim is about.

torch is an optional extra (``pip install 'kl-verify[torch]'``); it is imported only when
a torch implementation is used, so ``python -m verify all`` never needs it.
"""
from __future__ import annotations

from typing import Callable

import ml_dtypes
import numpy as np

from verify.errors import UsageError

__all__ = ["FRAMEWORKS", "TORCH_EXTRA", "require_torch", "to_torch", "to_numpy", "as_numpy_callable",
           "as_numpy_gradient"]

FRAMEWORKS = ("numpy", "torch")
TORCH_EXTRA = "pip install 'kl-verify[torch]'"
_BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


def require_torch():
    """The torch module, or a UsageError that names the extra to install."""
    try:
        import torch
    except ImportError:
        raise UsageError(f"the torch framework needs PyTorch, which is not installed: {TORCH_EXTRA}") from None
    return torch


def check_framework(framework: str) -> str:
    if framework not in FRAMEWORKS:
        raise UsageError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
    return framework


def to_torch(array):
    """A torch tensor with the dtype and the exact values (bit patterns) of ``array``.

    The tensor owns a copy: an implementation that works in place cannot change the
    harness's inputs."""
    torch = require_torch()
    array = np.array(array, copy=True, order="C")
    if array.dtype == _BFLOAT16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    if array.dtype.kind != "f" or array.dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"no exact torch dtype for NumPy {array.dtype}")
    return torch.from_numpy(array)


def to_numpy(value) -> np.ndarray:
    """The values of a tensor (or any array-like) as a NumPy array of the same dtype,
    bit for bit (bfloat16 through its bit pattern)."""
    torch = require_torch()
    if not isinstance(value, torch.Tensor):
        return np.asarray(value)
    tensor = value.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().copy().view(_BFLOAT16)
    return tensor.numpy().copy()


def as_numpy_callable(fn: Callable, framework: str = "numpy") -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``fn`` as a function of NumPy arrays ``(logp, logq)`` returning a NumPy array.

    ``"numpy"``: ``fn`` is called as is and its result goes through ``np.asarray``.
    ``"torch"``: ``fn`` gets tensors of the exact dtype (see :func:`to_torch`), is run
    without autograd, and its result is read back exactly (:func:`to_numpy`).  A missing
    torch is a UsageError here, before any input is tried.
    """
    check_framework(framework)
    if framework == "numpy":
        def numpy_call(logp, logq):
            return np.asarray(fn(logp, logq))
        return numpy_call
    torch = require_torch()

    def torch_call(logp, logq):
        with torch.no_grad():
            out = fn(to_torch(logp), to_torch(logq))
        return to_numpy(out)

    torch_call.__name__ = getattr(fn, "__name__", "implementation")
    return torch_call


def as_numpy_gradient(fn: Callable, framework: str = "torch") -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The gradient of a torch implementation with respect to ``logq`` by its own autograd,
    as a function of NumPy arrays ``(logp, logq)`` returning an array of logq's dtype.

    Exact tensors of the dtype (:func:`to_torch`), ``logq.requires_grad_()``,
    ``out.backward(torch.ones_like(out))`` (the terms are elementwise: one call covers a
    whole batch), ``logq.grad`` read back bit for bit (:func:`to_numpy`).  An output that
    does not depend on logq through autograd (``no_grad``, ``detach``) has gradient 0:
    what a trainer gets.  Only torch has autograd here: another framework is a UsageError.
    """
    check_framework(framework)
    if framework != "torch":
        raise UsageError(f"the {framework} framework has no autograd: give a torch implementation or numeric_grad")
    torch = require_torch()

    def torch_gradient(logp, logq):
        policy = to_torch(logq).clone().requires_grad_()
        with torch.enable_grad():
            out = fn(to_torch(logp), policy)
            if isinstance(out, torch.Tensor) and out.requires_grad:
                out.backward(torch.ones_like(out))
        if policy.grad is None:
            return np.zeros_like(np.asarray(logq))
        return to_numpy(policy.grad)

    torch_gradient.__name__ = getattr(fn, "__name__", "implementation") + "_gradient"
    return torch_gradient
