"""Markdown for evaluation reports: one report as a table, several side by side (``vaelab compare``).

Each row is one number with its standard error and what it was measured on (K, images, feature
space), so a table copied out of context still says what it means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Row = tuple[str, Callable[[dict[str, Any]], tuple[Any, Any]], str]


def _get(report: dict[str, Any], path: str) -> Any:
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _pair(value: str, se: str | None = None) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
    return lambda r: (_get(r, value), _get(r, se) if se else None)


def _k_gap(r: dict[str, Any]) -> tuple[Any, Any]:
    return _get(r, "log_likelihood.k_gap.gap"), _get(r, "log_likelihood.k_gap.gap_se")


ROWS: list[Row] = [
    ("ELBO (nats)", _pair("elbo.elbo", "elbo.elbo_se"), "{d[elbo][images]} images, 1 sample each"),
    ("  E_q log p(x|z)", _pair("elbo.log_px_z", "elbo.log_px_z_se"), ""),
    ("  KL(q(z|x) || p(z))", _pair("elbo.kl", "elbo.kl_se"), ""),
    (
        "-log p(x), IW (nats)",
        _pair("log_likelihood.nll", "log_likelihood.nll_se"),
        "K={d[log_likelihood][iw_samples]}, {d[log_likelihood][images]} images",
    ),
    ("  bits/dim", _pair("log_likelihood.bits_per_dim", "log_likelihood.bits_per_dim_se"), ""),
    ("  K-gap of log p(x)", _k_gap, "{k_gap}"),
    ("active units", _pair("posterior.active_units"), "of {d[posterior][latent_dim]}, Var(E_q z) > 0.01"),
    ("reconstruction MSE", _pair("reconstruction.mse", "reconstruction.mse_se"), "per pixel"),
    ("PSNR (dB)", _pair("reconstruction.psnr", "reconstruction.psnr_se"), "mean per image"),
    ("SSIM", _pair("reconstruction.ssim", "reconstruction.ssim_se"), "11x11 Gaussian window"),
    ("FD, feature net", _pair("sample_quality.fd", "sample_quality.fd_se"), "{samples}"),
    (
        "precision",
        _pair("sample_quality.precision", "sample_quality.precision_se"),
        "k={d[sample_quality][k]}",
    ),
    ("recall", _pair("sample_quality.recall", "sample_quality.recall_se"), "k={d[sample_quality][k]}"),
    ("feature-net test accuracy", _pair("sample_quality.classifier_test_accuracy"), ""),
    ("Inception FID", _pair("inception_fid.fid"), "torch-fidelity, optional"),
    (
        "MIG (disentanglement)",
        _pair("disentanglement.mig"),
        "{d[disentanglement][images]} images with known factors, Chen et al. 2018",
    ),
    (
        "  IW time / FLOP time at fp32 peak",
        _pair("log_likelihood.time_over_fp32_peak_time"),
        "{d[log_likelihood][seconds]:.0f} s at {d[log_likelihood][gflop_per_s]:.0f} GFLOP/s, "
        "{d[log_likelihood][precision]}",
    ),
    ("evaluation time (s)", _pair("timings_s.total"), ""),
]


def fmt(value: Any, se: Any = None) -> str:
    """``12.345 ± 0.067`` with digits set by the standard error; ``n/a`` for missing numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool | int):
        return str(value)
    if not isinstance(value, float):
        return str(value)
    if se is None or not isinstance(se, float) or not math.isfinite(se) or se <= 0:
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.1f}"
    digits = max(0, min(6, 1 - math.floor(math.log10(se))))
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def _note(template: str, report: dict[str, Any]) -> str:
    if not template:
        return ""
    if template == "{k_gap}":
        gap = (report.get("log_likelihood") or {}).get("k_gap")
        return f"K={gap['k_high']} minus K={gap['k_low']}, same images and samples" if gap else ""
    if template == "{samples}":
        sq = report.get("sample_quality") or {}
        if not sq.get("available"):
            return str(sq.get("reason", "unavailable"))
        return f"{sq['fake_images']} samples vs {sq['real_images']} {report['data']['split']} images"
    try:
        return template.format(d=report)
    except (KeyError, TypeError):
        return ""


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (a bare '|' would start a new column)."""
    return text.replace("|", "\\|")


def render_report(report: dict[str, Any]) -> str:
    """The Markdown of one report: a header saying what was evaluated, the table, the caveats."""
    data = report["data"]
    ll = report["log_likelihood"]
    env = report.get("environment", {})
    lines = [
        "# vaelab evaluation",
        "",
        f"- data: {data['dataset']} {data['split']} split, {data['images']} of {data['split_images']} images"
        + (f" (seeded subset, seed {data['subset_seed']})" if data.get("subset_seed") is not None else ""),
        f"- binarisation: {data['binarize']}"
        + (f", once, seed {data['binarize_seed']}" if data.get("binarize_seed") is not None else ""),
        f"- likelihood: {ll['unit_note']}",
        f"- seed {report['seed']}; {env.get('cpu')}; torch {env.get('torch')}",
        "",
        "| metric | value ± standard error | measured on |",
        "|---|---|---|",
    ]
    for label, get, template in ROWS:
        value, se = get(report)
        if value is None and label.startswith("  "):
            continue
        lines.append(f"| {_cell(label)} | {fmt(value, se)} | {_cell(_note(template, report))} |")
    by_k = ll.get("by_k", {})
    if len(by_k) > 1:
        lines += ["", "log p(x) at nested K (the first K samples of the same draws):", ""]
        lines += ["| K | log p(x) ± SE |", "|---|---|"]
        lines += [f"| {k} | {fmt(v['log_px'], v['log_px_se'])} |" for k, v in by_k.items()]
    sq = report.get("sample_quality", {})
    if sq.get("available"):
        lines += ["", f"Feature space: {sq['feature_space']}. Samples: {sq['sample_kind']}."]
    inc = report.get("inception_fid", {})
    if not inc.get("available"):
        lines += ["", f"Inception-v3 FID unavailable: {inc.get('reason', 'not computed')}."]
    return "\n".join(lines) + "\n"


def render_comparison(reports: list[dict[str, Any]], names: list[str]) -> str:
    """Markdown with one column per report; the last column says what the rows were measured on."""
    header = "| metric | " + " | ".join(names) + " |"
    lines = [header, "|---" * (len(names) + 1) + "|"]
    for label, get, _ in ROWS:
        cells = [fmt(*get(r)) for r in reports]
        if label.startswith("  ") and all(c == "n/a" for c in cells):
            continue
        lines.append(f"| {_cell(label.strip())} | " + " | ".join(cells) + " |")
    facts = [
        ("K", "log_likelihood.iw_samples"),
        ("images", "data.images"),
        ("dataset / split", None),
        ("binarisation", "data.binarize"),
    ]
    for label, path in facts:
        if path is None:
            cells = [f"{r['data']['dataset']} / {r['data']['split']}" for r in reports]
        else:
            cells = [fmt(_get(r, path)) for r in reports]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_json(reports: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """The numbers of ``render_comparison`` as JSON: {metric: {run: [value, se]}}."""
    table: dict[str, Any] = {}
    for label, get, _ in ROWS:
        table[label.strip()] = {name: list(get(r)) for name, r in zip(names, reports, strict=True)}
    return {"runs": names, "metrics": table}
