"""Augmentation keeps image and mask aligned and pads with ignore, never with a real class; resizing
only the crop window draws the same scales and crops as resizing the whole image; the batch normalised
on the device is what per-image normalisation gave."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from uniseg import IGNORE
from uniseg.model.backbones import MEAN, STD
from uniseg.model.inputs import eval_image, normalise_batch
from uniseg.train.transforms import to_tv, train_transform

COLOURS = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0]], dtype=np.uint8)


def _pattern(h=48, w=96):
    """Blocks of four classes whose colour tells the class."""
    label = np.zeros((h, w), dtype=np.uint8)
    label[: h // 2, w // 2 :] = 1
    label[h // 2 :, : w // 3] = 2
    label[h // 2 :, 2 * w // 3 :] = 3
    return COLOURS[label], label


def _class_from_colour(image: torch.Tensor) -> np.ndarray:
    rgb = image.permute(1, 2, 0).numpy().astype(np.float32)
    dist = ((rgb[:, :, None, :] - COLOURS[None, None].astype(np.float32)) ** 2).sum(-1)
    return dist.argmin(-1)


@pytest.mark.parametrize("resize", ["image", "window"])
def test_image_and_mask_stay_aligned_and_padding_is_ignore(resize):
    image, label = _pattern()
    transform = train_transform(48, (64, 128), (0.5, 2.0), resize)
    padded_seen = False
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out_mask = transform(*to_tv(image, label))
        mask = out_mask.numpy()
        valid = mask != IGNORE
        agree = (_class_from_colour(out_image)[valid] == mask[valid]).mean()
        assert agree > 0.97, f"seed {seed}: image and mask disagree on {1 - agree:.1%} of pixels"
        padded = ~valid
        if padded.any():
            padded_seen = True
            assert (out_image[:, torch.from_numpy(padded)] == 0).all(), "padded image pixels are black"
        assert out_image.dtype == torch.uint8 and out_image.shape == (3, 64, 128)
        assert set(np.unique(mask)) <= {0, 1, 2, 3, IGNORE}
    assert padded_seen, "the test covered crops larger than the image"


def test_eval_image_keeps_aspect_and_normalises():
    image = torch.full((3, 375, 1242), 128, dtype=torch.uint8)
    out = eval_image(image, 96)
    assert out.shape == (3, 96, round(1242 * 96 / 375))
    assert torch.allclose(out[:, 0, 0], (128 / 255 - torch.tensor(MEAN)) / torch.tensor(STD), atol=1e-3)


def _smooth(h, w):
    """A smooth uint8 image and a blocky label (no detail finer than the resampling's support)."""
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (h + w)], -1).astype(np.uint8)
    return image, ((x // 40 + y // 40) % 5).astype(np.uint8)


@pytest.mark.parametrize("crop", [(96, 96), (200, 300)])  # a crop inside the image; one larger than it
def test_resizing_the_window_draws_what_resizing_the_image_draws(crop):
    """Same seed -> the same scale and crop position: the outputs differ only by the window's rounding to
    source pixels (and the state of the random generator afterwards is the same)."""
    image, label = _smooth(120, 180)
    whole, window = train_transform(120, crop, (0.5, 2.0)), train_transform(120, crop, (0.5, 2.0), "window")
    for seed in range(12):
        torch.manual_seed(seed)
        a_img, a_mask = whole(*to_tv(image, label))
        after_a = torch.rand(1)
        torch.manual_seed(seed)
        b_img, b_mask = window(*to_tv(image, label))
        assert torch.equal(after_a, torch.rand(1)), "both draw the same random numbers"
        assert torch.equal(a_mask == IGNORE, b_mask == IGNORE), f"seed {seed}: the same padding"
        valid = a_mask != IGNORE
        assert (a_mask[valid] == b_mask[valid]).float().mean() > 0.97, f"seed {seed}: labels differ"
        diff = (a_img.float() - b_img.float()).abs()[:, valid]
        assert diff.mean() < 1.0, f"seed {seed}: mean |difference| {diff.mean():.2f} grey levels"


def test_the_batch_normalised_on_the_device_equals_per_image_normalisation():
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (3, 3, 17, 23), dtype=torch.uint8)
    per_image = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    expected = torch.stack([per_image(x) for x in batch])
    assert torch.equal(normalise_batch(batch), expected)
