"""Markdown for evaluation reports: one report as a table, several side by side (``vaelab compare``).

Each row is one number with its standard error and what it was measured on (K, images, feature
space), so a table copied out of context still says what it means.
"""

from __future__ import annotations

import math
from typing import Any

from vaelab.evaluation.sharpness import HALF_NYQUIST

# The rows of a report's table, one number each: label | the number's key in the report | what it was
# measured on. The number's standard error, where it has one, sits beside it under the key plus "_se".
# A label indented by two spaces details the row above and is left out when it has no value. A note is
# a format string over the report's sections; ``_note`` writes {k_gap}, {samples}, {sharpness},
# {normal} and {ceiling},
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
  FD, N(0, I) samples | sample_quality.references.standard_normal.fd | {normal}
precision | sample_quality.precision | k={sample_quality[k]}
recall | sample_quality.recall | k={sample_quality[k]}
  recall / held-out real images' | sample_quality.vs_references.recall_over_ceiling | {ceiling}
density | sample_quality.density | k={sample_quality[k_density_coverage]}, Naeem et al. 2020; 1 = as real data
coverage | sample_quality.coverage | k={sample_quality[k_density_coverage]}, Naeem et al. 2020
  coverage / held-out real images' | sample_quality.vs_references.coverage_over_ceiling | {ceiling}
  class accuracy, samples | sample_quality.class_accuracy | the feature net's class = the class asked for
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
    if template == "{normal}":
        normal = _get(report, "sample_quality.references.standard_normal") or {}
        return "the model's own samples" if normal.get("same_as_model") else "same VAE, T = 1, same labels"
    if template == "{ceiling}":
        ceiling = _get(report, "sample_quality.references.held_out_real") or {}
        if not ceiling:
            return ""
        return (
            f"1 = as real data: {ceiling['fake_images']} samples and as many held-out images of the "
            f"split, both against its other half ({ceiling['real_images']})"
        )
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
        lines += render_references(sq, report["data"]["split"])
    lines += render_spectra(spectra(report))
    inc = report.get("inception_fid", {})
    if not inc.get("available"):
        lines += ["", f"Inception-v3 FID unavailable: {inc.get('reason', 'not computed')}."]
    return "\n".join(lines) + "\n"


_SPECTRA = (("reconstructions / inputs", "reconstruction"), ("samples / data", "sample_sharpness"))


def spectra(report: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """The report's power-spectrum ratio curves by what they compare (reconstructions, samples)."""
    return {label: c for label, key in _SPECTRA if (c := (report.get(key) or {}).get("spectrum"))}


def render_spectra(curves: dict[str, dict[str, list[float]]]) -> list[str]:
    """The curves above half Nyquist as a Markdown table, one column per radius (empty without any)."""
    radius = next(iter(curves.values()))["radius"] if curves else []
    if not (kept := [i for i, r in enumerate(radius) if r > HALF_NYQUIST]):
        return []
    lines = ["", "## Power by frequency above half Nyquist, over the data's (spectrum.png)", ""]
    lines += ["| radius (cycles/pixel) | " + " | ".join(f"{radius[i]:.2f}" for i in kept) + " |"]
    lines += ["|---|" + "---|" * len(kept)]
    for label, curve in curves.items():
        lines += [f"| {label} | " + " | ".join(f"{curve['ratio'][i]:.3g}" for i in kept) + " |"]
    return lines


_REFERENCE_COLUMNS = ("fd", "precision", "recall", "density", "coverage")


def render_references(sq: dict[str, Any], split: str) -> list[str]:
    """The samples beside their references (N(0, I) samples against the whole split; the held-out
    real images of half B, the ceiling, and as many samples against half A) and, for a conditional
    model, class by class: Markdown lines, empty for a report without references."""
    refs = sq.get("references")
    if not refs:
        return []
    lines = [
        "",
        "## Samples beside their references",
        "",
        "| samples | against | images | FD | precision | recall | density | coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    normal = refs["standard_normal"]
    same = " (= the model's)" if normal["same_as_model"] else ""
    whole = f"the {split} split ({sq['real_images']})"
    rows = [("model samples", whole, sq), (f"N(0, I) through the same VAE{same}", whole, normal)]
    if "held_out_real" in refs:
        half = f"half A ({refs['held_out_real']['real_images']})"
        rows += [("model samples", half, refs["model_vs_half"])]
        rows += [(f"held-out real: half B of the {split} split (ceiling)", half, refs["held_out_real"])]
    for name, against, row in rows:
        cells = [fmt(row.get(key), row.get(f"{key}_se")) for key in _REFERENCE_COLUMNS]
        lines.append(f"| {name} | {against} | {row['fake_images']} | " + " | ".join(cells) + " |")
    lines += ["", f"N(0, I) samples: {normal['kind']}."]
    if "held_out_real" in refs:
        lines[-1] += f" Held-out real images: {refs['held_out_real']['kind']}."
    ratios = sq.get("vs_references", {})
    said = [
        f"{key.removesuffix('_over_ceiling')} {ratios[key]:.2f}"
        for key in ("precision_over_ceiling", "recall_over_ceiling", "coverage_over_ceiling")
        if key in ratios
    ]
    if said:
        lines += ["", "Model samples over the ceiling, at matched sizes: " + ", ".join(said) + "."]
    if "fd_standard_normal_over_model" in ratios:
        lines[-1] += f" FD {ratios['fd_standard_normal_over_model']:.2f}x lower than N(0, I) sampling's."
    per_class = sq.get("per_class")
    if per_class:
        lines += _render_per_class(per_class)
    return lines


def _render_per_class(per_class: dict[str, Any]) -> list[str]:
    k, kc = per_class["k"], per_class["k_coverage"]
    lines = [
        "",
        f"### Per class (precision, recall k={k} and coverage k={kc} against the class's half-A images)",
        "",
        "| class | samples | accuracy | precision | recall | coverage | real: accuracy | real: precision "
        "| real: recall | real: coverage | recall / real |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = ("accuracy", "precision", "recall", "coverage")
    for row in per_class["rows"]:
        mine = [fmt(row.get(key), row.get(f"{key}_se")) for key in keys]
        ceiling = [fmt(row["ceiling"].get(key), row["ceiling"].get(f"{key}_se")) for key in keys]
        ratio = fmt(row.get("recall_over_ceiling"))
        lines.append(f"| {row['class']} | {row['images']} | " + " | ".join([*mine, *ceiling, ratio]) + " |")
    lines += [
        "",
        f"Worst class accuracy {fmt(per_class['worst_accuracy'])}; worst recall / real recall "
        f"{fmt(per_class['worst_recall_over_ceiling'])}. Accuracy: the feature net's class is the class "
        "asked for (of every sample of the class); real: the class's half-B images; samples: as many as "
        "those.",
    ]
    return lines


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
