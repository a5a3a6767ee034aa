import os, sys, time
import numpy as np
from estimators import Estimator

def _k3(logp, logq):
    t = logp - logq
    return np.expm1(t) - t

def upcast_numeric(logp, logq):
    return _k3(logp.astype(np.float64), logq.astype(np.float64))

def list_numeric(logp, logq):
    return _k3(logp, logq).tolist()

def raise_numeric(logp, logq):
    raise ValueError("no such luck")

def print_numeric(logp, logq):
    print("debug: called with", len(logp))
    return _k3(logp, logq)

def sleep_numeric(logp, logq):
    time.sleep(1000)

def exit_numeric(logp, logq):
    os._exit(0)

def sysexit_numeric(logp, logq):
    sys.exit(0)

def memory_numeric(logp, logq):
    hog = []
    while True:
        hog.append(np.ones(10**8))

FP = ("fp_accurate@float32",)
upcast = Estimator("upcast", "r - 1 - log(r)", numeric=upcast_numeric, claims=FP)
aslist = Estimator("aslist", "r - 1 - log(r)", numeric=list_numeric, claims=FP)
raises = Estimator("raises", "r - 1 - log(r)", numeric=raise_numeric, claims=FP)
prints = Estimator("prints", "r - 1 - log(r)", numeric=print_numeric, claims=FP)
sleeps = Estimator("sleeps", "r - 1 - log(r)", numeric=sleep_numeric, claims=FP)
exits = Estimator("exits", "r - 1 - log(r)", numeric=exit_numeric, claims=FP)
sysexits = Estimator("sysexits", "r - 1 - log(r)", numeric=sysexit_numeric, claims=FP)
hogs = Estimator("hogs", "r - 1 - log(r)", numeric=memory_numeric, claims=FP)


# torch terms FUNC(logp, ref_logp, old_logp) for `verify gradients --framework torch`
def term_sleeps(logp, ref_logp, old_logp):
    time.sleep(1000)


def term_exits(logp, ref_logp, old_logp):
    os._exit(0)


def term_prints(logp, ref_logp, old_logp):
    print("debug: term called")
    return -(ref_logp - logp)
