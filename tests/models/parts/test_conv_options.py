"""The conv encoder's and decoder's shape options: ``convs_per_stage`` and ``upsample``."""

import pytest
import torch
from torch import nn

from vaelab.models import VAE, ModelConfig
from vaelab.models.parts.layers import Upsample


def conv_vae(shape=(1, 28, 28), **options) -> VAE:
    enc = {k: v for k, v in options.items() if k in ("convs_per_stage", "patch")}
    cfg = ModelConfig.model_validate(
        {
            "image_shape": shape,
            "latent_dim": 4,
            "encoder": {"name": "conv", "channels": [8, 16], "hidden_dim": 16, **enc},
            "decoder": {"name": "conv", "channels": [16, 8], "hidden_dim": 16, **options},
        }
    )
    return VAE(cfg)


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 10, 14), (1, 12, 12)])
@pytest.mark.parametrize("upsample", ["transposed", "nearest"])
@pytest.mark.parametrize("convs_per_stage", [0, 2])
def test_every_combination_gives_image_sized_parameters_and_trains(shape, upsample, convs_per_stage):
    torch.manual_seed(0)
    model = conv_vae(shape, upsample=upsample, convs_per_stage=convs_per_stage, patch=2)
    x = torch.rand(3, *shape).bernoulli()
    out = model(x)
    assert out.px_params.shape == (3, *shape)  # odd sides (7 at 28 / 2 / 2, 5 at 10 / 2) come out exact
    assert torch.isfinite(out.elbo).all()
    (-out.elbo.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_convs_per_stage_adds_stride_one_convolutions_at_each_resolution():
    plain, deep = conv_vae(), conv_vae(convs_per_stage=2)
    # Encoder: per stage, 2 stride-1 convolutions (the first widens) before the stride-2 one.
    strides = [c.stride[0] for c in convs(deep.encoder)]
    assert strides == [1, 1, 2, 1, 1, 2] and [c.stride[0] for c in convs(plain.encoder)] == [2, 2]
    assert [c.out_channels for c in convs(deep.encoder)] == [8, 8, 8, 16, 16, 16]
    # Decoder: the mirror; each stage upsamples at its input width and narrows in its last convolution.
    mirror = conv_vae(convs_per_stage=2, upsample="nearest")
    widths = [(c.in_channels, c.out_channels) for c in convs(mirror.decoder)]
    assert widths == [(16, 16), (16, 16), (16, 8), (8, 8), (8, 8), (8, 8), (8, 1)]


def test_nearest_upsampling_replaces_transposed_convolutions():
    model = conv_vae(upsample="nearest")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.decoder.modules())
    ups = [m for m in model.decoder.modules() if isinstance(m, Upsample)]
    assert [u.size for u in ups] == [(14, 14), (28, 28)]  # 7 -> 14 -> 28 from the encoder's sides
    z = torch.zeros(1, 8, 7, 7)
    z[0, :, 3, 4] = 1.0
    up = nn.functional.interpolate(z, size=(14, 14), mode="nearest")
    assert torch.equal(up[0, 0, 6:8, 8:10], torch.ones(2, 2))  # one pixel -> a 2x2 block, no artefacts


def test_defaults_keep_the_classic_layers_and_weight_names():
    model = conv_vae()
    names = [n for n, _ in model.decoder.named_parameters()]
    assert names[:4] == ["head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"]
    assert "conv.0.weight" in names and "conv.2.weight" in names and "conv.4.weight" in names
    assert isinstance(model.decoder.conv[0], nn.ConvTranspose2d)


def test_options_round_trip_through_a_saved_model(tmp_path):
    torch.manual_seed(0)
    model = conv_vae(upsample="nearest", convs_per_stage=1, patch=2).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = VAE.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.decoder.upsample == "nearest" and loaded.config.encoder.convs_per_stage == 1
    z = torch.randn(2, 4)
    torch.testing.assert_close(loaded.decoder(z), model.decoder(z))


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError, match="convs_per_stage"):
        conv_vae(convs_per_stage=-1)
