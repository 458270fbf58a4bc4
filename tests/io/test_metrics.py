"""metrics.jsonl: appended one row per epoch, read back past a torn last line, rewritten on resume."""

from vaelab.io.metrics import METRICS_NAME, MetricsLogger, plot_loss_curve, read_metrics, write_metrics


def test_rows_round_trip_and_a_torn_last_line_is_ignored(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    rows = [{"epoch": 1, "train_loss": 3.0, "train_kl": 1.0, "train_log_px_z": -2.0}]
    rows.append({"epoch": 2, "train_loss": 2.5, "train_kl": 1.1, "train_log_px_z": -1.4})
    for row in rows:
        logger.log(row, step=row["epoch"])
    logger.close()
    with open(tmp_path / METRICS_NAME, "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a crash in the middle of an append
    assert read_metrics(tmp_path) == rows
    write_metrics(tmp_path, rows[:1])  # what a resume from epoch 1's checkpoint keeps
    assert read_metrics(tmp_path) == rows[:1]
    assert plot_loss_curve(rows, tmp_path / "loss.png").stat().st_size > 0


def test_a_run_without_metrics_reads_as_empty(tmp_path):
    assert read_metrics(tmp_path) == []
    assert plot_loss_curve([], tmp_path / "loss.png") is None
