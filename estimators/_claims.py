"""Symbolic claims of the value functions the catalog's entries share (a private module:
the registry does not scan it).  Each tuple is exactly what the symbolic layer proves of
that expression; every other symbolic claim is refuted (tests/test_symbolic.py checks
both directions for every registered entry)."""

K1 = "-log(r)"
ABS = "Abs(log(r))"
K2 = "log(r)**2 / 2"
K3 = "(r - 1) - log(r)"
# the result clamped to [-10, 10]
K1_OUT = "Min(Max(-log(r), -10), 10)"
K2_OUT = "Min(Max(log(r)**2 / 2, -10), 10)"
# log r clamped to [-20, 20] first, then the result clamped to [-10, 10]
# log r clamped to [-20, 20] first (NeMo-RL's input clamp), before any output clamp
K1_IN = "-Min(Max(log(r), -20), 20)"
K2_IN = "Min(Max(log(r), -20), 20)**2 / 2"
K3_IN = "exp(Min(Max(log(r), -20), 20)) - 1 - Min(Max(log(r), -20), 20)"
K1_IN_OUT = "Min(Max(-Min(Max(log(r), -20), 20), -10), 10)"
K2_IN_OUT = "Min(Max(Min(Max(log(r), -20), 20)**2 / 2, -10), 10)"
K3_IN_OUT = "Min(Max(exp(Min(Max(log(r), -20), 20)) - 1 - Min(Max(log(r), -20), 20), -10), 10)"
# k3 with only the result clamped to [-10, 10] (OpenRLHF, slime, ROLL) is the same function
# of r as K3_IN_OUT: k3 > 10 wherever |log r| > 20, so the inner clamp never changes the
# value.  It is written as K3_IN_OUT because the exact layer's tail analysis decides that
# form (it cannot decide "Min(Max((r - 1) - log(r), -10), 10)" for the gamma family); the
# implementations keep the libraries' own arithmetic (no clamp before exp: overflow).
K3_OUT = K3_IN_OUT

# Expressions whose derivative with respect to logq is the exact gradient of a library's
# whole on-policy term where autograd differs from the derivative of its value (the
# ``backward_expr`` of an Estimator): d/dlogq = -d/dt, t = log r.
# - a weight exp(logq - logq.detach()) times k3, or k3's straight-through k2: -t, k2's;
GRAD_K2 = K2
# - NeMo-RL: weight (1 in value) times the term, clamped to [-10, 10]: d/dlogq is
#   (term(t) - term'(t)) where |term| <= 10, else 0; with c the clamped log ratio:
#   k1: (1 - t) for |t| <= 10;  k2: (t^2/2 - t) for |t| <= sqrt(20);
GRAD_NEMO_K1 = "Min(Max(log(r), -10), 10)**2 / 2 - Min(Max(log(r), -10), 10)"
GRAD_NEMO_K2 = "Min(Max(log(r), -sqrt(20)), sqrt(20))**2 / 2 - Min(Max(log(r), -sqrt(20)), sqrt(20))**3 / 6"
# - k3 (and slime's weighted low_var_kl): -t where k3 <= 10, i.e. for t in [A, B], the
#   roots of e^t - 1 - t = 10: t = -11 - W_k(-e^-11) (Lambert W, branches 0 and -1), to 40
#   digits (mpmath; tests/test_catalog.py checks that no float64 lies between each
#   constant and its root, so the kink is where the true one is for every input).
K3_CLAMP_LOW = "-10.99998329802025595651707359996345384547"
K3_CLAMP_HIGH = "2.610868638149875938404438133980326546173"
GRAD_K3_OUT = f"Min(Max(log(r), {K3_CLAMP_LOW}), {K3_CLAMP_HIGH})**2 / 2"

_BOUNDED = ("zero_at_one", "subexponential_growth", "linear_growth_in_log_ratio", "locally_unbiased")
_BOUNDED_NONNEGATIVE = ("zero_at_one", "nonnegative", "unique_minimum_at_one", "subexponential_growth",
                        "linear_growth_in_log_ratio", "locally_unbiased")

PROVED = {
    K1: ("zero_at_one", "convex", "subexponential_growth", "linear_growth_in_log_ratio", "unbiased_kl_qp",
         "locally_unbiased", "loss_grad_zero", "reward_grad_kl_qp"),
    ABS: ("zero_at_one", "nonnegative", "unique_minimum_at_one", "subexponential_growth",
          "linear_growth_in_log_ratio"),
    K2: ("zero_at_one", "nonnegative", "unique_minimum_at_one", "subexponential_growth", "locally_unbiased",
         "loss_grad_kl_qp"),
    K3: ("zero_at_one", "nonnegative", "unique_minimum_at_one", "convex", "unbiased_kl_qp", "locally_unbiased",
         "loss_grad_kl_pq"),
    K1_OUT: _BOUNDED, K1_IN_OUT: _BOUNDED,
    K2_OUT: _BOUNDED_NONNEGATIVE, K2_IN_OUT: _BOUNDED_NONNEGATIVE,
    K3_IN_OUT: _BOUNDED_NONNEGATIVE,
}

# Floating-point claims declared only where they hold in every profile's search (the
# reports show every verdict, declared or not).
FP_FINITE = ("fp_finite",)
# k3 computed in the input dtype: in float16 exp(t) overflows to inf for 1,051 input pairs
# whose exact k3 still fits (t just below 11.09, k3 up to 65504), so float16 is not declared
FP_FINITE_BUT_FLOAT16 = tuple(f"fp_finite@{dtype}" for dtype in ("float64", "float32", "bfloat16"))
# elementwise arithmetic without exp in the input dtype: a couple of roundings
FP_EXACT_ARITHMETIC = ("fp_finite", "fp_accurate", "fp_matches_expression")
# cast to float32 first: accurate for inputs of float32 or narrower, not for float64 inputs
FP_FLOAT32_CAST = ("fp_finite",) + tuple(f"{claim}@{dtype}" for claim in ("fp_accurate", "fp_matches_expression")
                                         for dtype in ("float32", "float16", "bfloat16"))
