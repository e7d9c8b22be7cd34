"""The few-channel tokenizer: a whitened PCA folded into a VAE's 1×1 convolutions, exactly."""

import json

import pytest
import torch

from tokenbridge import checkpoints
from tokenbridge.classifier import ClassifierConfig, build_classifier
from tokenbridge.evaluation import encode_in_batches, shapes_images
from tokenbridge.latent_projection import fit_projection, main, projected_vae
from tokenbridge.shapes import DATASETS
from tokenbridge.vae import small


@pytest.fixture(scope="module")
def source_and_latents(seeded):
    vae = seeded(small)
    images = shapes_images(40, kind="icons")
    return vae, images, encode_in_batches(vae, images)


def test_projection_whitens_the_top_components(source_and_latents):
    _, _, latents = source_and_latents
    projection = fit_projection(latents, 3)
    z = projection.project(latents)
    assert z.shape == (40, 3, 8, 8)
    per_channel = z.permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.allclose(per_channel.mean(dim=1), torch.zeros(3), atol=1e-4)
    assert torch.allclose(per_channel.std(dim=1), torch.ones(3), atol=1e-2)
    assert torch.allclose(torch.corrcoef(per_channel), torch.eye(3), atol=1e-3)  # decorrelated
    assert (projection.variance[:-1] >= projection.variance[1:]).all() and 0 < projection.explained <= 1
    with pytest.raises(ValueError, match="channels must be in 1..16"):
        fit_projection(latents, 17)


def test_folded_vae_encodes_and_decodes_as_projection_plus_source(source_and_latents):
    """encode_latents = project(source.encode_latents); decode_latents(z) = source.decode_latents(unproject(z))."""
    vae, images, latents = source_and_latents
    projection = fit_projection(latents, 4)
    folded = projected_vae(vae, projection)
    assert folded.config.embed_dim == 4 and folded.config.scale_factor == 1.0
    with torch.no_grad():
        z = folded.encode_latents(images[:8])
        assert torch.allclose(z, projection.project(latents[:8]), atol=1e-4)
        unprojected = (z.permute(0, 2, 3, 1).double() * projection.variance.sqrt()) @ projection.basis.T
        unprojected = (unprojected + projection.mean).permute(0, 3, 1, 2).float()
        assert torch.allclose(folded.decode_latents(z), vae.decode_latents(unprojected), atol=1e-4)
        # the encoder and decoder trunks are the source's, unchanged
        assert torch.equal(folded.encoder.conv_in.weight, vae.encoder.conv_in.weight)


def test_command_line_writes_a_loadable_vae_and_its_sidecar(seeded, tmp_path, capsys):
    vae_path = checkpoints.save_model(seeded(small), tmp_path / "vae.safetensors", "vae", small().config.to_dict())
    classifier = seeded(lambda: build_classifier(ClassifierConfig(num_classes=10, image_size=64)))
    clf_path = checkpoints.save_model(
        classifier, tmp_path / "clf.safetensors", "classifier", classifier.config.to_dict()
    )
    argv = ["--vae", str(vae_path), "--classifier", str(clf_path), "--images", "20", "--heldout", "10"]
    main([*argv, "--channels", "2", "--export", str(tmp_path / "out")])
    assert checkpoints.load_model(tmp_path / "out.safetensors", kind="vae").config.embed_dim == 2
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["command"].startswith("python -m tokenbridge.latent_projection --vae")
    assert set(sidecar["metrics"]["reconstruction"]) == set(DATASETS)
    assert set(sidecar["metrics"]["reconstruction"]["icons"]) == {"continuous", "b64", "b16"}
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--channels", "17", "--export", str(tmp_path / "bad")])
    assert stop.value.code == 2
    assert "argument --channels: 17 is more than the VAE's 16" in capsys.readouterr().err
