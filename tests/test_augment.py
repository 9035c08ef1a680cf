"""The device-side DeiT augmentation (tgo.augment) and the batch loader, on the CPU: exact geometry
for known crops, the random-resized-crop distribution, properties of the colour ops."""
import numpy as np
import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from tgo import augment as A
from tgo.models import to_input
from tgo.augment import flip_shift
from tgo.loader import device_batches

CFG = {"rrc_scale": [0.08, 1.0], "hflip": 0.5, "randaug_ops": 2, "randaug_magnitude": 9, "randaug_std": 0.5}


def images(n=4, size=16, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def draws(n, box, flip=False, ops=()):
    chosen = torch.zeros(n, len(A.OPS), dtype=torch.bool)
    for op in ops:
        chosen[:, A.OPS.index(op)] = True
    return {"box": torch.tensor([box] * n, dtype=torch.float32), "flip": torch.full((n,), flip),
            "chosen": chosen, "mag": torch.full((n, len(A.OPS)), 0.5), "sign": torch.ones(n, len(A.OPS))}


def test_whole_image_box_is_the_identity_and_flip_mirrors():
    x = images()
    out = A.deit_augment(x, draws(4, [0.5, 0.5, 1, 1]), 16)
    torch.testing.assert_close(out, to_input(x), atol=1e-5, rtol=0)
    flipped = A.deit_augment(x, draws(4, [0.5, 0.5, 1, 1], flip=True), 16)
    torch.testing.assert_close(flipped, to_input(x.flip(2)), atol=1e-5, rtol=0)


def test_quarter_box_at_half_size_is_the_top_left_quadrant():
    x = images()
    out = A.deit_augment(x, draws(4, [0.25, 0.25, 0.5, 0.5]), 8)
    torch.testing.assert_close(out, to_input(x[:, :8, :8]), atol=1e-5, rtol=0)


def test_rrc_boxes_follow_the_scale_and_ratio_and_stay_inside():
    gen = torch.Generator().manual_seed(0)
    cx, cy, w, h = A.rrc_boxes(20_000, gen, (0.08, 1.0))
    area, ratio = w * h, w / h
    full = (w == 1) & (h == 1)  # the fallback after 10 misses
    assert full.float().mean() < 0.01
    assert area[~full].min() >= 0.08 - 1e-6 and area.max() <= 1 + 1e-6
    assert ratio[~full].min() >= 3 / 4 - 1e-5 and ratio[~full].max() <= 4 / 3 + 1e-5
    assert (cx - w / 2).min() >= -1e-6 and (cx + w / 2).max() <= 1 + 1e-6
    assert (cy - h / 2).min() >= -1e-6 and (cy + h / 2).max() <= 1 + 1e-6
    # The same rule as torchvision's RandomResizedCrop (an independent implementation).
    torch.manual_seed(0)
    ref = [RandomResizedCrop.get_params(torch.empty(3, 1000, 1000), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(5000)]
    ref_area = np.array([h * w for _, _, h, w in ref]) / 1e6
    ref_w = np.array([w for _, _, _, w in ref]) / 1000
    assert abs(area.mean().item() - ref_area.mean()) < 0.01
    assert abs(w.mean().item() - ref_w.mean()) < 0.01


@pytest.mark.parametrize("op", ["brightness", "color", "contrast", "sharpness", "posterize", "solarize"])
def test_colour_ops_are_the_identity_at_zero_strength(op):
    x = images().permute(0, 3, 1, 2).float() / 255
    out = A._colour(x, op, torch.zeros(4))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_colour_ops_do_what_they_say():
    x = images().permute(0, 3, 1, 2).float() / 255 * 0.5 + 0.25  # inside (0.25, 0.75)
    m = torch.full((4,), 0.5)
    assert (A._colour(x, "brightness", m) > x).all()  # factor 1.45
    gray = A._colour(x, "color", -torch.ones(4) / 0.9)  # factor 0: grey
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    flat = A._colour(x, "contrast", -torch.ones(4) / 0.9)  # factor 0: the mean grey level everywhere
    assert flat.std(dim=(1, 2, 3)).max() < 1e-6
    stretched = A._colour(x, "autocontrast", m)
    assert torch.allclose(stretched.amin((2, 3)), torch.zeros(4, 3)) and torch.allclose(stretched.amax((2, 3)), torch.ones(4, 3))
    levels = A._colour(x, "posterize", torch.ones(4))  # 4 bits: multiples of 16/255
    assert torch.allclose(levels * 255 / 16, (levels * 255 / 16).round(), atol=1e-4)
    solar = A._colour(x, "solarize", torch.ones(4))  # threshold 0: everything inverted
    torch.testing.assert_close(solar, 1 - x)


def test_a_ranks_rows_get_what_a_single_process_gives_them():
    x = images(8)
    full = A.deit_augment(x, A.draw(8, torch.Generator().manual_seed(3), CFG), 12)
    d = A.draw(8, torch.Generator().manual_seed(3), CFG)
    half = A.deit_augment(x[4:], A.slice_draws(d, slice(4, 8)), 12)
    torch.testing.assert_close(half, full[4:])
    light_full = flip_shift(x, torch.Generator().manual_seed(3), 2)
    light_half = flip_shift(x[4:], torch.Generator().manual_seed(3), 2, 8, 4)
    assert torch.equal(light_half, light_full[4:])


def test_device_batches_gathers_the_rows_in_order():
    data = np.random.default_rng(1).integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(50)
    index = [np.array([3, 1, 4]), np.array([15, 9, 2]), np.array([6, 5]), np.array([35, 8])]
    got = list(device_batches(data, labels, index, torch.device("cpu")))
    assert len(got) == 4
    for (x, y), idx in zip(got, index):
        assert torch.equal(x, torch.from_numpy(data[idx])) and y.tolist() == idx.tolist()


def test_to_input_takes_the_centre_crop():
    x = images(2, 16)
    torch.testing.assert_close(to_input(x, 8), to_input(x[:, 4:12, 4:12]))
