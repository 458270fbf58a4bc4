"""`vaelab score` and `vaelab evaluate --ood` end to end on a tiny model trained on blob images."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import TINY_OVERRIDES, make_blobs

from vaelab.cli import main
from vaelab.data.ood_sets import LETTERS

FAST_BACKGROUND = ["--background-epochs", "1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny MLP VAE trained 20 epochs on 240 blob images, with its background model fitted."""
    root = tmp_path_factory.mktemp("score")
    images, labels = make_blobs()
    np.savez(root / "blobs.npz", images=images, labels=labels)
    sets = [f"--set={o}" for o in TINY_OVERRIDES]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(root / "cache"))
        args = [
            "train",
            "--dataset",
            str(root / "blobs.npz"),
            "--epochs",
            "20",
            "--run-dir",
            str(root / "run"),
        ]
        assert main([*args, "--no-progress", *sets]) == 0
        assert main(["score", str(root / "run"), "--fit-background", *FAST_BACKGROUND, "--no-progress"]) == 0
    return root / "run"


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run, so a test's calibration stays its own."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def blob_folder(root: Path, n: int = 6) -> Path:
    images, _ = make_blobs(n, seed=9)
    root.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(root / f"blob{i}.png")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_score_on_a_folder_with_one_corrupt_file_scores_all_the_others(run, tmp_path, capsys):
    folder = blob_folder(tmp_path / "in")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "scores.csv"
    assert main(["score", str(run), str(folder), "--out", str(out), "--no-progress"]) == 0
    rows = read_csv(out)
    assert [r["name"] for r in rows] == [f"blob{i}.png" for i in range(6)]
    assert all(np.isfinite(float(r["density_of_states"])) for r in rows)  # the default score
    err = capsys.readouterr().err
    assert "warning: skipped unreadable file corrupt.png" in err
    assert (tmp_path / "scores.png").stat().st_size > 1000  # the histogram beside it


def test_calibrate_then_score_says_in_or_out(run, tmp_path, capsys):
    out = tmp_path / "cal.jsonl"
    assert (
        main(
            [
                "score",
                str(run),
                "--calibrate",
                "--fpr",
                "0.1",
                "--score",
                "nll,likelihood_ratio",
                "--out",
                str(out),
                "--no-progress",
                "--no-plot",
            ]
        )
        == 0
    )
    saved = json.loads((run / "model" / "ood-calibration.json").read_text())["scores"]
    assert set(saved) == {"nll", "likelihood_ratio"}
    cal = saved["nll"]
    assert cal["fpr"] == 0.1 and cal["iw_samples"] == 1 and cal["n"] == 40 and "blobs" in cal["dataset"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    flagged = sum(r["nll"] > cal["threshold"] for r in rows)
    assert flagged == 4 == int(0.1 * cal["n"])  # the asked FPR on the calibration set itself
    capsys.readouterr()
    noise = tmp_path / "noise.csv"
    assert (
        main(
            [
                "score",
                str(run),
                "ood:uniform-noise",
                "--count",
                "20",
                "--score",
                "nll",
                "--out",
                str(noise),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = read_csv(noise)
    assert {r["verdict"] for r in rows} == {"out"}
    assert "20 of 20 out of distribution by nll" in capsys.readouterr().out
    # another K than the calibration's: scores, but no verdicts
    assert (
        main(
            [
                "score",
                str(run),
                "ood:constant",
                "--count",
                "5",
                "--score",
                "nll",
                "--iw-samples",
                "3",
                "--out",
                str(noise),
                "--no-progress",
                "--no-plot",
            ]
        )
        == 0
    )
    assert "verdict" not in read_csv(noise)[0]
    assert "no in/out verdicts" in capsys.readouterr().err


def test_wrong_size_images_are_resized_or_refused(run, tmp_path, capsys):
    folder = blob_folder(tmp_path / "in", 2)
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(folder / "rgb.png")
    out = tmp_path / "s.csv"
    assert main(["score", str(run), str(folder), "--score", "nll", "--out", str(out), "--no-progress"]) == 0
    assert len(read_csv(out)) == 3 and "converted 1 image(s) to 1x12x12" in capsys.readouterr().err
    assert main(["score", str(run), str(folder), "--no-resize", "--out", str(out), "--no-progress"]) == 2
    assert "rgb.png is 20x30 with 3 channel(s) but the model takes 12x12 with 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "x.txt"], "--out must end in .csv or .jsonl"),
        (["--score", "typo"], "unknown score 'typo'"),
        (["--fpr", "1.5", "--calibrate"], "--fpr must lie strictly between 0 and 1"),
        ([], "give INPUTS"),
    ],
)
def test_score_usage_errors(run, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["score", str(run), *extra, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_every_score_from_the_command_line(run, tmp_path):
    out = tmp_path / "all.csv"
    assert (
        main(
            [
                "score",
                str(run),
                "ood:gaussian-noise",
                "--count",
                "8",
                "--score",
                "all",
                "--regret-steps",
                "3",
                "--codec",
                "webp",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    row = read_csv(out)[0]
    assert set(row) == {
        "index",
        "name",
        "nll",
        "bits_per_dim",
        "complexity",
        "likelihood_ratio",
        "density_of_states",
        "likelihood_regret",
    }


def test_evaluate_reports_every_score_against_ood_sets(run, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--ood",
                "ood:uniform-noise",
                "--ood",
                "ood:constant",
                "--ood-only",
                "--ood-count",
                "30",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    section = json.loads((out / "ood.json").read_text())
    assert set(section["pairs"]) == {"ood:uniform-noise", "ood:constant"}
    for pair in section["pairs"].values():
        assert set(pair["scores"]) == {
            "nll",
            "bits_per_dim",
            "complexity",
            "likelihood_ratio",
            "density_of_states",
            "likelihood_regret",
        }
        for metrics in pair["scores"].values():
            assert 0 <= metrics["auroc"] <= 1 and 0 <= metrics["fpr95"] <= 1
    assert section["pairs"]["ood:uniform-noise"]["scores"]["nll"]["auroc"] > 0.9
    text = capsys.readouterr().out
    assert "AUROC" in text and "FPR at 95% TPR" in text and "images/s" in text


def test_all_scores_of_a_hierarchical_model_leave_out_regret_and_name_the_hardest_letters(tmp_path, capsys):
    images, labels = make_blobs()
    np.savez(tmp_path / "blobs.npz", images=images, labels=labels)
    ladder = [
        "model.encoder={name: resnet, channels: [4, 8], blocks_per_stage: 1}",
        "model.decoder={name: ladder, channels: [8, 4], blocks_per_stage: 1, latent_layers: [1, 0]}",
        "model.latent_dim=4",
        "train.batch_size=32",
        "train.device=cpu",
    ]
    run = tmp_path / "run"
    train = ["train", "--dataset", str(tmp_path / "blobs.npz"), "--epochs", "1", "--run-dir", str(run)]
    assert main([*train, "--no-progress", *[f"--set={o}" for o in ladder]]) == 0
    capsys.readouterr()
    out = tmp_path / "all.csv"
    score = ["score", str(run), "ood:constant", "--count", "6", "--score", "all", "--out", str(out)]
    assert main([*score, *FAST_BACKGROUND, "--no-progress"]) == 0
    assert "likelihood_regret left out: likelihood_regret needs an unconditional single-latent" in (
        capsys.readouterr().err
    )
    columns = {"nll", "bits_per_dim", "complexity", "likelihood_ratio", "density_of_states"}
    assert set(read_csv(out)[0]) == {"index", "name", *columns}
    report = tmp_path / "report"
    evaluate = ["evaluate", str(run), "--ood", "ood:letters", "--ood-only", "--ood-count", "60"]
    assert main([*evaluate, "--out", str(report), "--no-progress"]) == 0
    pair = json.loads((report / "ood.json").read_text())["pairs"]["ood:letters"]
    assert "likelihood_regret" not in pair["scores"]
    hardest = pair["hardest"]["likelihood_ratio"]
    assert len(hardest) == 5 and all(name in LETTERS for name, *_ in hardest)
    assert [row[1] for row in hardest] == sorted(row[1] for row in hardest)
    assert (
        "Hardest classes of ood:letters for likelihood_ratio (AUROC of each alone): "
        in (report / "ood.md").read_text()
    )


def test_a_background_saved_without_the_density_of_states_gets_it_added(run, tmp_path, capsys):
    folder = run / "model" / "ood-background"
    info = json.loads((folder / "config.json").read_text())
    assert info["states"]["names"] == ["log_p_model", "log_p_background", "log_p_codec"]
    del info["states"]  # as a background fitted before the density of states existed
    (folder / "config.json").write_text(json.dumps(info))
    (folder / "states.safetensors").unlink()
    out = tmp_path / "s.csv"
    assert main(["score", str(run), "ood:constant", "--count", "4", "--out", str(out), "--no-progress"]) == 0
    assert (
        "fitting the density of states (the background beside the model has none)" in capsys.readouterr().err
    )
    assert (folder / "states.safetensors").is_file() and "states" in json.loads(
        (folder / "config.json").read_text()
    )
    assert len(read_csv(out)) == 4
