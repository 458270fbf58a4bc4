"""Space-to-depth patching of the convolutional parts (``patch`` in their configs)."""

import pytest
import torch

from vaelab.models import VAE, ModelConfig
from vaelab.models.parts.encoders import ConvEncoder, ConvEncoderConfig
from vaelab.models.parts.layers import from_patches, patched_shape, to_patches

PAIRS = {
    "conv": ({"name": "conv", "channels": [8, 16], "hidden_dim": 16}, {"name": "conv", "channels": [16, 8]}),
    "resnet": ({"name": "resnet", "channels": [8, 16]}, {"name": "resnet", "channels": [16, 8]}),
    "ladder": (
        {"name": "resnet", "channels": [8, 16]},
        {"name": "ladder", "channels": [16, 8], "latent_layers": [1, 1], "latent_channels": 2},
    ),
}


def patched_vae(pair: str, likelihood: dict, shape=(1, 12, 12), patch: int = 2, **decoder) -> VAE:
    enc, dec = PAIRS[pair]
    dec = {**dec, **decoder}
    cfg = ModelConfig.model_validate(
        {
            "image_shape": shape,
            "latent_dim": 3,
            "encoder": {**enc, "patch": patch},
            "decoder": {**dec, "patch": patch},
            "likelihood": likelihood,
        }
    )
    return VAE(cfg)


def test_patched_shape_folds_blocks_into_channels():
    assert patched_shape((1, 28, 28), 2, "x") == (4, 14, 14)
    assert patched_shape((3, 8, 6), 2, "x") == (12, 4, 3)
    assert patched_shape((3, 8, 6), 1, "x") == (3, 8, 6)
    with pytest.raises(ValueError, match="conv encoder: patch 3 does not divide the image sides 28x28"):
        patched_shape((1, 28, 28), 3, "conv encoder")


def test_to_and_from_patches_are_inverse_and_keep_each_pixel():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    folded = to_patches(2)(x)
    assert folded.shape == (2, 12, 2, 3)
    # The 2x2 block at the top-left of channel 0 becomes the first 4 channels of position (0, 0).
    assert folded[0, :4, 0, 0].tolist() == [x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1]]
    assert torch.equal(from_patches(2)(folded), x)
    assert to_patches(1)(x) is x and from_patches(1)(x) is x


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize(
    "likelihood", [{"name": "bernoulli"}, {"name": "logistic_mixture", "components": 2}], ids=["bern", "dmol"]
)
def test_patched_models_train_and_round_trip(pair, likelihood, tmp_path):
    torch.manual_seed(0)
    model = patched_vae(pair, likelihood, shape=(3, 8, 12))
    x = torch.rand(4, 3, 8, 12)
    x = torch.bernoulli(x) if likelihood["name"] == "bernoulli" else (x * 255).round() / 255
    out = model(x)
    # The decoder predicts patches and unfolds them: the likelihood sees full-size parameter maps.
    assert out.px_params.shape == (4, 3 * model.likelihood.params_per_channel, 8, 12)
    assert out.elbo.shape == (4,) and torch.isfinite(out.elbo).all()
    (-out.elbo.mean()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.sample(2).shape == (2, 3, 8, 12)
    model.save_pretrained(tmp_path / "m")
    again = VAE.from_pretrained(tmp_path / "m")
    assert again.config.encoder.patch == 2 and again.config.decoder.patch == 2
    torch.manual_seed(1)
    a = model.eval()(x).elbo
    torch.manual_seed(1)
    assert torch.allclose(again.eval()(x).elbo, a)


def test_patched_encoder_first_convolution_sees_four_times_the_channels():
    enc = ConvEncoder(ConvEncoderConfig(channels=(8,), patch=2), (1, 28, 28), 6)
    first = enc.conv[0]
    assert isinstance(first, torch.nn.Conv2d) and first.in_channels == 4
    # A change to any one pixel reaches the output (patching loses nothing).
    x = torch.zeros(1, 1, 28, 28)
    base = enc(x)
    x[0, 0, 27, 27] = 1.0
    assert not torch.allclose(enc(x), base)


def test_unpatched_parts_keep_their_weight_names():
    # patch = 1 adds no parameters and renames none, so models saved before the option load as before.
    enc = ConvEncoder(ConvEncoderConfig(channels=(8, 16)), (1, 12, 12), 6)
    names = [n for n, _ in enc.named_parameters()]
    assert names == [
        "conv.0.weight", "conv.0.bias", "conv.2.weight", "conv.2.bias",
        "head.1.weight", "head.1.bias", "head.3.weight", "head.3.bias",
    ]  # fmt: skip


def test_patch_must_divide_the_image_and_match_between_encoder_and_ladder():
    with pytest.raises(ValueError, match="resnet encoder: patch 5 does not divide"):
        patched_vae("resnet", {"name": "bernoulli"}, patch=5)
    cfg = ModelConfig.model_validate(
        {
            "image_shape": (1, 12, 12),
            "latent_dim": 3,
            "encoder": {"name": "resnet", "channels": [8, 16], "patch": 2},
            "decoder": {"name": "ladder", "channels": [16, 8], "latent_layers": [1, 1], "latent_channels": 2},
        }
    )
    with pytest.raises(ValueError, match="decoder 'ladder' has patch 1 but encoder 'resnet' has patch 2"):
        VAE(cfg)


def resnet_decoder(output: str):
    from vaelab.models.parts.resnet import ResNetDecoder, ResNetDecoderConfig

    torch.manual_seed(0)
    return ResNetDecoder(ResNetDecoderConfig(channels=(16, 8), patch=2, output=output), 4, (3, 8, 12))


@pytest.mark.parametrize("output", ["subpixel", "resize"])
def test_resnet_decoder_outputs_full_size_maps_either_way(output, tmp_path):
    dec = resnet_decoder(output)
    assert dec(torch.randn(5, 4)).shape == (5, 3, 8, 12)
    # VQGAN's adaptive weight reads the output layer: the resize output's full-resolution convolution.
    last = dec.last_layer_weight()
    assert last.shape[0] == (3 if output == "resize" else 12) and last is dec.net[-1].weight
    model = patched_vae("resnet", {"name": "bernoulli"}, shape=(3, 8, 12), output=output)
    model.save_pretrained(tmp_path / "m")
    assert VAE.from_pretrained(tmp_path / "m").config.decoder.output == output


def test_resize_output_turns_a_constant_feature_map_into_a_constant_image():
    # The last stage's features, constant over space: the resize output's interior pixels are all equal,
    # while the sub-pixel output repeats a 2x2 pattern (the checkerboard a discriminator can grow).
    feats = torch.randn(1, 8, 1, 1).expand(1, 8, 4, 6)
    for output, flat in (("resize", True), ("subpixel", False)):
        dec = resnet_decoder(output)
        tail = torch.nn.Sequential(*list(dec.net)[-3:] if output == "resize" else list(dec.net)[-2:])
        image = dec.from_patches(tail(feats))[0, :, 2:-2, 2:-2]
        spread = (image - image[:, :1, :1]).abs().amax().item()
        assert (spread < 1e-6) == flat, (output, spread)


def test_decoder_output_must_be_known():
    from vaelab.models.parts.resnet import ResNetDecoderConfig

    with pytest.raises(ValueError, match="output"):
        ResNetDecoderConfig(output="transposed")
