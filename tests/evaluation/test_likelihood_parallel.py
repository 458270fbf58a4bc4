"""The IW estimate shared out over CPU worker processes: the same numbers as one process, whatever the
split, and a clear refusal where it does not apply."""

import pytest
import torch

from vaelab.cli import main
from vaelab.data import ImageDataset
from vaelab.evaluation import evaluate_log_likelihood
from vaelab.models import VAE, ModelConfig

from .helpers import random_images_vae


def test_two_processes_give_the_estimate_of_one_image_for_image():
    model, ds = random_images_vae(23)
    one = evaluate_log_likelihood(model, ds, iw_samples=20, seed=5, batch_size=4)
    two = evaluate_log_likelihood(model, ds, iw_samples=20, seed=5, batch_size=4, processes=2)
    assert two.processes == 2 and two.images == 23
    for k in one.by_k:
        torch.testing.assert_close(two.by_k[k], one.by_k[k], rtol=1e-6, atol=1e-6)
    # the draws follow each batch's number: the same images in other batches get other draws
    other = evaluate_log_likelihood(model, ds, iw_samples=20, seed=5, batch_size=5)
    assert not torch.allclose(other.log_px, one.log_px)


def test_a_process_count_below_one_is_refused_naming_the_option(capsys):
    assert main(["evaluate", "no-such-run", "--processes", "0"]) == 2
    assert "--processes must be at least 1" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU refusal needs a CUDA GPU")
def test_several_processes_on_a_gpu_are_refused():
    model = VAE(ModelConfig(image_shape=(1, 6, 6), latent_dim=3)).cuda().eval()
    ds = ImageDataset(torch.zeros(4, 1, 6, 6, dtype=torch.uint8), None, "zeros", None)
    with pytest.raises(Exception, match="several evaluation processes are for CPUs"):
        evaluate_log_likelihood(model, ds, iw_samples=2, processes=2)
