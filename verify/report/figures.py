"""The figures (matplotlib, PNG bytes): each value function's f, bias and std, and every
estimator on the same axes per family.  matplotlib is imported only when one is drawn."""
from __future__ import annotations

import io
import math

from verify.report.moments import as_float, relative_bias_bound, std_over_kl

DPI = 100
MAX_LINES = 8  # lines per axes: more are not legible


def lay_out(figure):
    """Tight margins, with no minor ticks on log axes: those ticks (dozens per axes, each
    laid out twice) were half of the time the report writer spent on figures."""
    from matplotlib.ticker import NullLocator

    for axes in figure.axes:
        for axis, scale in ((axes.xaxis, axes.get_xscale()), (axes.yaxis, axes.get_yscale())):
            if scale == "log":
                axis.set_minor_locator(NullLocator())
    figure.tight_layout()


def png_bytes(figure) -> bytes:
    """The figure as PNG, without the Software tag (matplotlib's version would change the bytes)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend_outside(axes, fontsize=8):
    """The legend to the right of the axes, so it never covers data."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _bias_points(sweep, key, x_key="kl_qp"):
    """(KL, |relative bias|) for the pairs whose bias is beyond its error bound (the others
    are zero to the precision of the computation and are not drawn)."""
    direction = key.rsplit("_", 1)[1]
    points = []
    for m in sweep:
        x, y = as_float(m[x_key]), as_float(m[key])
        bound = relative_bias_bound(m, direction)
        if math.isfinite(x) and x > 0 and math.isfinite(y) and abs(y) > (bound if math.isfinite(bound) else 0.0):
            points.append((x, abs(y)))
    return points


def _std_points(sweep):
    """(KL, std/KL) for the pairs with a finite variance, and whether any had an infinite one."""
    points, omitted = [], False
    for m in sweep:
        x, y = as_float(m["kl_qp"]), std_over_kl(m)
        if math.isfinite(x) and x > 0 and math.isfinite(y) and y > 0:
            points.append((x, y))
        elif math.isinf(y):
            omitted = True
    return points, omitted


def _zero_note(axes, names, text=None):
    """Say under the panel's title which lines are absent because their bias is zero within
    its bound (outside the axes, so it covers no data)."""
    if names:
        axes.set_title(axes.get_title() + "\nnot drawn, unbiased within bounds: " + (text or ", ".join(names)),
                       fontsize=8)


def figure_label(record, shared) -> str:
    """Who a figure is about: f(r) itself, and every entry that has this f (wrapped)."""
    import textwrap

    text = f"f(r) = {record['expression']}"
    if len(shared) > 1:
        text += f" (entries: {', '.join(shared)})"
    return "\n".join(textwrap.wrap(text, 90))


def estimator_figures(name, record, shared=()) -> dict[str, bytes]:
    """The f, bias and std figures of one value function, titled by f(r) and the entries
    that share it (``shared``; default: ``name`` alone)."""
    about = figure_label(record, list(shared) or [name])
    plt = pyplot()
    files = {}
    if not record.get("curve"):
        return files
    figure, axes = plt.subplots(figsize=(6, 3.5))
    values = [v if isinstance(v, float) else math.nan for v in record["curve"]["f"]]
    axes.plot(record["curve"]["log_ratio"], values, color="C0")
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set_xlabel("log r = log p - log q")
    axes.set_ylabel("f(r)")
    axes.set_title(about, fontsize=8)
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        low, high = min(finite), min(max(finite), 20.0)
        axes.set_ylim(low - 0.05 * (high - low + 1), high + 0.05 * (high - low + 1))
    lay_out(figure)
    files[f"figures/{name}_f.png"] = png_bytes(figure)
    plt.close(figure)
    all_sweeps = sorted(record.get("moments", {}).items())
    chunks = [all_sweeps[i:i + MAX_LINES] for i in range(0, len(all_sweeps), MAX_LINES)] or [[]]
    # bias: one panel per direction, one line per family, one row per 8 families
    figure, grid = plt.subplots(len(chunks), 2, figsize=(10, 3.8 * len(chunks)), sharey=True, squeeze=False)
    for panels, sweeps in zip(grid, chunks):
        for axes, direction, label in zip(panels, ("qp", "pq"), ("KL(q||p)", "KL(p||q)")):
            zero = []
            for index, (family, sweep) in enumerate(sweeps):
                points = _bias_points(sweep, f"relative_bias_{direction}", f"kl_{direction}")
                if points:
                    axes.loglog(*zip(*points), "-", marker="o", markersize=3, color=f"C{index % 10}", label=family)
                else:
                    zero.append(family)
            axes.set_xlabel(f"true {label}")
            axes.set_title(f"|relative bias| against {label}", fontsize=9)
            _zero_note(axes, zero, "every family" if zero and len(zero) == len(sweeps) else None)
        panels[0].set_ylabel("|relative bias|")
        _legend_outside(panels[1])
    figure.suptitle(f"{about}\npoints within their error bound (zero bias) not drawn", fontsize=9)
    lay_out(figure)
    files[f"figures/{name}_bias.png"] = png_bytes(figure)
    plt.close(figure)
    figure, grid = plt.subplots(len(chunks), 1, figsize=(7, 3.8 * len(chunks)), squeeze=False)
    for (axes,), sweeps in zip(grid, chunks):
        omitted = False
        for index, (family, sweep) in enumerate(sweeps):
            points, missing = _std_points(sweep)
            omitted = omitted or missing
            if points:
                axes.loglog(*zip(*points), "-", marker="o", markersize=3, color=f"C{index % 10}", label=family)
        axes.set_xlabel("true KL(q||p)")
        axes.set_ylabel("std / KL(q||p)")
        axes.set_title("std / KL(q||p)" + ("; infinite variance not drawn" if omitted else ""), fontsize=9)
        figure.suptitle(about, fontsize=8)
        _legend_outside(axes)
    lay_out(figure)
    files[f"figures/{name}_std.png"] = png_bytes(figure)
    plt.close(figure)
    return files


def comparison_groups(results) -> list[list[str]]:
    """Estimators with moments, in groups of at most 8 (one figure's lines per axes)."""
    names = [n for n, r in results["estimators"].items() if r.get("moments")]
    return [names[i:i + MAX_LINES] for i in range(0, len(names), MAX_LINES)]


def comparison_files(results, family) -> list[str]:
    groups = comparison_groups(results)
    return [f"compare_{family}{'' if len(groups) == 1 else f'_{i + 1}'}.png" for i in range(len(groups))]


def comparison_figures(results) -> dict[str, bytes]:
    """One figure per family: every estimator on the same axes (at most 8 per axes):
    |relative bias| against KL(q||p), against KL(p||q), and std/KL(q||p)."""
    groups = comparison_groups(results)
    families = []
    for group in groups:
        for name in group:
            families += [f for f in results["estimators"][name]["moments"] if f not in families]
    if not groups:
        return {}
    plt = pyplot()
    files = {}
    for group_index, group in enumerate(groups):
        for family in families:
            figure, panels = plt.subplots(1, 3, figsize=(13, 3.8))
            omitted, zero = [], {"qp": [], "pq": []}
            for index, name in enumerate(group):
                sweep = results["estimators"][name]["moments"].get(family)
                if not sweep:
                    continue
                style = dict(marker="os^vD<>p"[index % 8], markersize=3, color=f"C{index % 10}", label=name)
                for axes, direction in zip(panels[:2], ("qp", "pq")):
                    points = _bias_points(sweep, f"relative_bias_{direction}", f"kl_{direction}")
                    if points:
                        axes.loglog(*zip(*points), "-", **style)
                    else:
                        zero[direction].append(name)
                points, missing = _std_points(sweep)
                if missing:
                    omitted.append(name)
                if points:
                    panels[2].loglog(*zip(*points), "-", **style)
            for axes, title, xlabel in zip(panels, ("|relative bias| vs KL(q||p)", "|relative bias| vs KL(p||q)",
                                                    "std / KL(q||p)"),
                                           ("true KL(q||p)", "true KL(p||q)", "true KL(q||p)")):
                axes.set_title(title, fontsize=9)
                axes.set_xlabel(xlabel)
            _zero_note(panels[0], zero["qp"])
            _zero_note(panels[1], zero["pq"])
            note = "; zero bias (within bound) not drawn"
            if omitted:
                note += f"; infinite variance (not drawn) at some pairs: {', '.join(omitted)}"
            figure.suptitle(f"{family}: every estimator{note}", fontsize=9)
            _legend_outside(panels[2])
            lay_out(figure)
            files[f"figures/{comparison_files(results, family)[group_index]}"] = png_bytes(figure)
            plt.close(figure)
    return files
