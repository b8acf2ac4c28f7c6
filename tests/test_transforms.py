"""Augmentation keeps image and mask aligned and pads with ignore, never with a real class."""

import numpy as np
import torch

from uniseg import IGNORE
from uniseg.backbones import MEAN, STD
from uniseg.transforms import eval_image, to_tv, train_transform

COLOURS = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0]], dtype=np.uint8)


def _pattern(h=48, w=96):
    """Blocks of four classes whose colour tells the class."""
    label = np.zeros((h, w), dtype=np.uint8)
    label[: h // 2, w // 2 :] = 1
    label[h // 2 :, : w // 3] = 2
    label[h // 2 :, 2 * w // 3 :] = 3
    return COLOURS[label], label


def _class_from_colour(image: torch.Tensor) -> np.ndarray:
    rgb = image * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    rgb = (rgb.clamp(0, 1) * 255).permute(1, 2, 0).numpy()
    dist = ((rgb[:, :, None, :] - COLOURS[None, None].astype(np.float32)) ** 2).sum(-1)
    return dist.argmin(-1)


def test_image_and_mask_stay_aligned_and_padding_is_ignore():
    image, label = _pattern()
    transform = train_transform(48, (64, 128), (0.5, 2.0))
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
            assert (out_image[:, torch.from_numpy(padded)] < -1.5).all(), "padded image pixels are black"
        assert set(np.unique(mask)) <= {0, 1, 2, 3, IGNORE}
    assert padded_seen, "the test covered crops larger than the image"


def test_eval_image_keeps_aspect_and_normalises():
    image = torch.full((3, 375, 1242), 128, dtype=torch.uint8)
    out = eval_image(image, 96)
    assert out.shape == (3, 96, round(1242 * 96 / 375))
    assert torch.allclose(out[:, 0, 0], (128 / 255 - torch.tensor(MEAN)) / torch.tensor(STD), atol=1e-3)
