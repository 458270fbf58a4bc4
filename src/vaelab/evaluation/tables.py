"""Markdown for evaluation reports: one report as a table, several side by side (``vaelab compare``).

Each row is one number with its standard error and what it was measured on (K, images, feature
space), so a table copied out of context still says what it means.
"""

from __future__ import annotations

import math
from typing import Any

# The rows of a report's table, one number each: label | the number's key in the report | what it was
# measured on. The number's standard error, where it has one, sits beside it under the key plus "_se".
# A label indented by two spaces details the row above and is left out when it has no value. A note is
# a format string over the report's sections; ``_note`` writes {k_gap}, {samples} and {sharpness},
# and {mig}, {iw_speed}, {hf_recon}, {lap_recon} and {lap_samples} stand for the longer notes of
# ``_LONG_NOTES``.
_TABLE = """\
ELBO (nats) | elbo.elbo | {elbo[images]} images, 1 sample each
  E_q log p(x|z) | elbo.log_px_z |
  KL(q(z|x) || p(z)) | elbo.kl |
-log p(x), IW (nats) | log_likelihood.nll | K={log_likelihood[iw_samples]}, {log_likelihood[images]} images
  bits/dim | log_likelihood.bits_per_dim |
  K-gap of log p(x) | log_likelihood.k_gap.gap | {k_gap}
active units | posterior.active_units | of {posterior[latent_dim]}, Var(E_q z) > 0.01
reconstruction MSE | reconstruction.mse | per pixel
PSNR (dB) | reconstruction.psnr | mean per image
SSIM | reconstruction.ssim | 11x11 Gaussian window
HF power ratio, reconstructions | reconstruction.hf_power_ratio | {hf_recon}
Laplacian variance ratio, reconstructions | reconstruction.laplacian_var_ratio | {lap_recon}
FD, feature net | sample_quality.fd | {samples}
precision | sample_quality.precision | k={sample_quality[k]}
recall | sample_quality.recall | k={sample_quality[k]}
feature-net test accuracy | sample_quality.classifier_test_accuracy |
HF power ratio, samples | sample_sharpness.hf_power_ratio | {sharpness}
Laplacian variance ratio, samples | sample_sharpness.laplacian_var_ratio | {lap_samples}
near-binary pixels, samples | sample_sharpness.near_binary_fraction | within 0.1 of 0 or 1
near-binary pixels, data | sample_sharpness.data_near_binary_fraction | {data[split]} images as stored
Inception FID | inception_fid.fid | torch-fidelity, optional
MIG (disentanglement) | disentanglement.mig | {mig}
  IW time / FLOP time at fp32 peak | log_likelihood.time_over_fp32_peak_time | {iw_speed}
evaluation time (s) | timings_s.total |
"""
# rsplit: a label may hold "|" (the KL row's), a key or a note never does.
ROWS: list[tuple[str, str, str]] = [
    (label.rstrip(), key.strip(), note.strip())
    for label, key, note in (line.rsplit("|", 2) for line in _TABLE.splitlines())
]
_LONG_NOTES = {
    "{mig}": "{disentanglement[images]} images with known factors, Chen et al. 2018",
    "{iw_speed}": "{log_likelihood[seconds]:.0f} s at {log_likelihood[gflop_per_s]:.0f} GFLOP/s, "
    "{log_likelihood[precision]}",
    "{hf_recon}": "power above half Nyquist, reconstructions / inputs; 1 = as sharp",
    "{lap_recon}": "3x3 Laplacian, reconstructions / inputs; 1 = as sharp",
    "{lap_samples}": "3x3 Laplacian, samples / data; 1 = as sharp",
}


def _get(report: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` ("elbo.kl") of a report, or None where any part is missing."""
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _value(report: dict[str, Any], path: str) -> tuple[Any, Any]:
    """(value, standard error or None) of the number at ``path``."""
    return _get(report, path), _get(report, path + "_se")


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
    if template == "{sharpness}":
        sh = report.get("sample_sharpness") or {}
        if not sh.get("available"):
            return str(sh.get("reason", "unavailable"))
        split = report["data"]["split"]
        return f"{sh['samples']} samples / {sh['reference_images']} {split} images; 1 = as sharp"
    template = _LONG_NOTES.get(template, template)
    try:
        return template.format_map(report)
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
    for label, path, template in ROWS:
        value, se = _value(report, path)
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
    for label, path, _ in ROWS:
        cells = [fmt(*_value(r, path)) for r in reports]
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
    for label, path, _ in ROWS:
        table[label.strip()] = {name: list(_value(r, path)) for name, r in zip(names, reports, strict=True)}
    return {"runs": names, "metrics": table}
