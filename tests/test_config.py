from pathlib import Path

import pytest
import torch

from vaelab.config import ConfigError, dump_config, load_config
from vaelab.models import VAE

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_classic_vae():
    cfg = load_config()
    assert cfg.model.latent_dim == 32
    assert cfg.model.encoder.name == "mlp" and cfg.model.likelihood.name == "bernoulli"
    assert cfg.data.name == "digits"


def test_seed_config_reproduces_the_article():
    cfg = load_config("configs/seed.yaml")
    assert cfg.model.latent_dim == 32 and cfg.model.encoder.name == "mlp"
    assert cfg.train.epochs == 100 and cfg.data.name == "mnist"


SHIPPED = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.yaml"))


def test_the_recommended_configs_ship():
    assert {"configs/mnist-hour.yaml", "configs/mnist-long.yaml", "configs/mnist-8bit.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_validate_round_trip_and_build(path, tmp_path):
    cfg = load_config(REPO / path)
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg
    # the model builds and runs on two images of the dataset's shape (MNIST 28x28, the folder size, or
    # photos32's 32x32 RGB for the .npz configs, all made for photos32, and for a config whose likelihood
    # couples the colour channels)
    side = cfg.data.image_size if cfg.data.name == "folder" else 28
    channels = cfg.data.channels if cfg.data.name == "folder" else 1
    if cfg.data.name == "npz" or getattr(cfg.model.likelihood, "coupled", False):
        side, channels = 32, 3
    update: dict = {"image_shape": (channels, side, side)}
    labels = None
    if cfg.model.condition is not None:  # conditional: the classes come from the dataset (MNIST: 10)
        update["condition"] = cfg.model.condition.model_copy(update={"num_classes": 10})
        labels = torch.tensor([3, 7])
    model = VAE(cfg.model.model_copy(update=update))
    x = torch.round(torch.rand(2, channels, side, side) * 255) / 255
    out = model(x, labels)
    assert torch.isfinite(out.elbo).all() and out.kl_layers.shape == (2, model.num_stochastic_layers)


def test_bad_value_names_field_and_allowed_values():
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["train.lr=-1"])
    assert "train.lr" in str(exc.value) and "greater than 0" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["model.likelihood.name=poisson"])
    assert "model.likelihood" in str(exc.value) and "bernoulli" in str(exc.value)
    with pytest.raises(ConfigError, match=r"data.binarize.*'none', 'dynamic' or 'static'"):
        load_config(overrides=["data.binarize=yes"])


def test_kl_annealing_is_refused_for_the_iwae_bound():
    with pytest.raises(ConfigError, match=r"train.kl_anneal.*IWAE"):
        load_config(overrides=["objective.name=iwae", "train.kl_anneal=linear", "train.kl_anneal_steps=10"])
    assert load_config(overrides=["objective.name=iwae"]).objective.name == "iwae"


def test_unknown_key_is_an_error(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  epocs: 3\n")
    with pytest.raises(ConfigError, match=r"train.epocs: unknown key"):
        load_config(tmp_path / "c.yaml")


def test_overrides_parse_yaml_values():
    cfg = load_config("configs/seed.yaml", ["model.encoder.hidden_dims=[64, 32]", "train.epochs=3"])
    assert cfg.model.encoder.hidden_dims == (64, 32) and cfg.train.epochs == 3
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(overrides=["train.epochs"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "py.yaml").write_text("!!python/object/apply:os.system ['touch x']\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "py.yaml")


def test_switching_a_part_resets_its_options():
    cfg = load_config("configs/seed.yaml", ["model.encoder.name=conv", "model.encoder.channels=[8, 16]"])
    assert cfg.model.encoder.name == "conv" and cfg.model.encoder.channels == (8, 16)
    cfg = load_config(overrides=["model.encoder.hidden_dims=[32]"])  # the default part keeps its name
    assert cfg.model.encoder.name == "mlp" and cfg.model.encoder.hidden_dims == (32,)
