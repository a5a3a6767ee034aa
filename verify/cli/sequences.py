"""`verify sequences [ESTIMATOR,...] --p-logits P.npy --q-logits Q.npy [--gradients ENTRY,...]
[--term FILE.py:FUNC [--usage loss|reward]] [--json]`: exact sequence-level KLs, Monte Carlo
and Rao-Blackwellised moments, the control variate and the sequence gradients of per-token
losses, catalog entries and a torch term of a tabular autoregressive pair, every value
with its bound."""
from __future__ import annotations

import json
import sys


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "sequences", help="exact sequence-level KL, estimator moments and gradients of an autoregressive pair",
        description="P.npy and Q.npy hold one row of V logits per prefix: the empty prefix first, then the "
                    "prefixes of length 1, ..., T-1, each length in lexicographic order (the row of (y_1..y_k) "
                    "is (V^k - 1)/(V - 1) + the base-V number y_1..y_k); -inf marks an impossible token. "
                    "Sequences are sampled from q; every one of the V^T is summed exactly.")
    parser.add_argument("estimator", nargs="?", default=None,
                        help="estimators separated by commas (default: k1,k2,k3)")
    parser.add_argument("--p-logits", required=True, help="the reference model p's logits table (.npy)")
    parser.add_argument("--q-logits", required=True, help="the sampling policy q's logits table (.npy)")
    parser.add_argument("--gradients", metavar="ENTRY,...",
                        help="catalog entries (or all) whose library usage adds gradient rows ENTRY:loss, "
                             "ENTRY:reward (on-policy)")
    parser.add_argument("--term", metavar="FILE.py:FUNC",
                        help="a torch term FUNC(logp, ref_logp, old_logp) called on every sequence (batch = "
                             "sequences, as in training): its gradient row FUNC:USAGE")
    parser.add_argument("--usage", choices=("loss", "reward"), default="loss",
                        help="--term as a loss (autograd through logp, default) or a REINFORCE reward")
    parser.add_argument("--option", action="append", metavar="NAME=VALUE",
                        help="--term: a keyword argument of FUNC (a Python literal, else text), repeatable")
    parser.add_argument("--bind", action="append", metavar="PARAM=ROLE",
                        help="--term: the role of FUNC's parameter PARAM (logp, ref_logp, old_logp, mask), repeatable")
    parser.add_argument("--timeout", type=float, default=None,
                        help="--term: wall-clock limit in seconds on the user's code (default 600)")
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.set_defaults(run=run)


def _value(record, key):
    from verify.cli.text import value_text

    value, bound = record[key], record.get(key + "_abs_error")
    text = value_text(value, ".12g")
    number = value is not None and not isinstance(value, str)
    return f"{text} ± {bound:.2g}" if number and isinstance(bound, float) and bound else text


def run(args) -> int:
    from verify.api.inputs import parse_assignments
    from verify.api.sequences import sequences
    from verify.cli.text import output_note
    from verify.errors import UsageError

    if args.term is None and (args.option or args.bind or args.timeout is not None or args.usage != "loss"):
        raise UsageError("--usage, --option, --bind and --timeout go with --term FILE.py:FUNC")
    options = parse_assignments(args.option, "--option", literal=True)
    binds = parse_assignments(args.bind, "--bind", literal=False)
    result = sequences(args.estimator, p_logits=args.p_logits, q_logits=args.q_logits, gradients=args.gradients,
                       term=args.term, usage=args.usage, options=options, binds=binds, timeout=args.timeout)
    note = output_note(result.output)
    if note:
        print(note, file=sys.stderr)
    data = result.as_json()
    if args.json:
        print(json.dumps(result.to_json()))
        return result.exit_code
    lines = [f"V = {data['vocabulary']} tokens, T = {data['length']} positions: {data['sequences']} sequences, "
             "y ~ q, r_t = p(y_t | y_<t) / q(y_t | y_<t)",
             f"KL(q||p) = {_value(data, 'kl_qp')}",
             f"KL(p||q) = {_value(data, 'kl_pq')}", "",
             f"{'estimator':<12} {'Monte Carlo sum_t f(r_t)':<58} Rao-Blackwellised sum_t E_q[f | y_<t]"]
    for name, record in data["estimators"].items():
        lines.append(f"{name:<12} mean {_value(record, 'mc_mean'):<53} mean {_value(record, 'rb_mean')}")
        lines.append(f"{'':<12} var  {_value(record, 'mc_variance'):<53} var  {_value(record, 'rb_variance')}")
    control = data["control_variate"]
    lines += ["", "control variate sum_t [-log r_t + lambda (r_t - 1)]   (k1: lambda = 0, k3: lambda = 1)"]
    lines += [f"  {key:<19} = {_value(control, key)}" for key in
              ("optimal_lambda", "variance_at_optimal", "variance_k1", "variance_k3")]
    lines += ["", "expected gradient wrt q's logits vs grad KL(q||p) of the sequence:"]
    for name, record in data["gradients"].items():
        lines.append(f"  {name:<10} ({record['description']}): cosine {_value(record, 'cosine_to_grad_kl_qp')}, "
                     f"relative error {_value(record, 'relative_error')}")
    lines += [f"note: {note}" for note in data["notes"]]
    lines += [f"undecided: {block}: {reason}" for block, reason in data["undecided"].items()]
    print("\n".join(lines))
    return result.exit_code
