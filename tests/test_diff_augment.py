"""DiffAugment for the discriminator: each op on images with known answers, gradients, paired draws."""

from __future__ import annotations

import pytest
import torch

from vaegan.diff_augment import CUTOUT_RATIO, OPS, diff_augment, parse_policy


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_an_empty_policy_is_the_identity() -> None:
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    assert diff_augment(images, policy=(), generator=_generator()) is images
    assert parse_policy([]) == () and parse_policy("") == () and parse_policy(None) == ()
    assert parse_policy("color, cutout") == ("color", "cutout")


def test_unknown_ops_are_named_with_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"unknown op\(s\) \['rotate'\]; choose from \['blur', 'color', 'cutout', 'translation'\]"
    ):
        parse_policy(["color", "rotate"])


def test_translation_moves_a_pixel_and_pads_with_zero() -> None:
    images = torch.zeros(64, 1, 16, 16)
    images[:, :, 8, 8] = 1.0
    shifted = diff_augment(images, policy=("translation",), generator=_generator())
    assert shifted.shape == images.shape
    # The one bright pixel is still there, exactly once per image, within 2 px (1/8 of 16) of where it was.
    assert torch.equal(shifted.flatten(1).sum(1), torch.ones(64))
    rows, cols = (shifted[:, 0] == 1).nonzero()[:, 1], (shifted[:, 0] == 1).nonzero()[:, 2]
    assert ((rows - 8).abs() <= 2).all() and ((cols - 8).abs() <= 2).all()
    assert len({(int(r), int(c)) for r, c in zip(rows, cols)}) > 1  # shifts differ between rows
    constant = diff_augment(torch.ones(64, 1, 16, 16), policy=("translation",), generator=_generator())
    assert (constant == 0).any() and set(constant.unique().tolist()) <= {0.0, 1.0}  # zero padding


def test_cutout_zeroes_one_square_of_the_set_size() -> None:
    images = torch.ones(8, 3, 32, 32)
    cut = diff_augment(images, policy=("cutout",), generator=_generator())
    side = int(32 * CUTOUT_RATIO)
    assert torch.equal((cut[:, 0] == 0).flatten(1).sum(1), torch.full((8,), side * side))
    assert torch.equal(cut[:, 0], cut[:, 2])  # the same square on every channel


def test_blur_removes_pixel_speckle_and_keeps_flat_regions_and_coarse_shapes() -> None:
    """A checkerboard at the Nyquist frequency (the decoder's speckle) is cut to a third or less; a constant
    image is unchanged (edges reflected, weights sum to 1); a dark 16 px square (a mouth-sized shape at 64 px)
    keeps its centre."""
    side = 64
    checker = ((torch.arange(side)[:, None] + torch.arange(side)[None, :]) % 2).float() * 2 - 1
    speckle = checker.expand(8, 3, side, side).contiguous()
    out = diff_augment(speckle, policy=("blur",), generator=_generator())
    # Every row's sigma (>= 0.5 px) leaves at most a third of the +-1 pattern (the discrete kernel at 0.5: 0.33).
    assert out.abs().max() < 0.34 and out.abs().mean() < 0.2
    constant = torch.full((8, 3, side, side), 0.3)
    assert torch.allclose(diff_augment(constant, policy=("blur",), generator=_generator()), constant, atol=1e-6)
    square = torch.ones(8, 1, side, side)
    square[:, :, 24:40, 24:40] = -1.0
    blurred = diff_augment(square, policy=("blur",), generator=_generator())
    assert (blurred[:, 0, 32, 32] < -0.99).all() and (blurred[:, 0, 4, 4] > 0.99).all()
    # Sigmas differ between rows: the square's edge is softened by different amounts.
    assert blurred[:, 0, 32, 24].unique().numel() > 1


def test_color_keeps_a_grey_image_grey_and_changes_brightness() -> None:
    grey = torch.full((16, 3, 8, 8), 0.2)
    out = diff_augment(grey, policy=("color",), generator=_generator())
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])  # saturation acts on colour
    assert out.mean(dim=(1, 2, 3)).std() > 0.1  # brightness differs between rows


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_passes_the_gradient_to_its_input(name: str) -> None:
    images = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    diff_augment(images, policy=(name,), generator=_generator()).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_blocks_share_their_draws_and_seeds_repeat() -> None:
    """A face and its reconstruction (same row of two blocks) are transformed alike; the same seed, the same draw."""
    block = torch.rand(6, 3, 16, 16) * 2 - 1
    policy = ("color", "translation", "cutout")
    out = diff_augment(torch.cat([block, block]), policy=policy, generator=_generator(3), groups=2)
    assert torch.equal(out[:6], out[6:])
    again = diff_augment(torch.cat([block, block]), policy=policy, generator=_generator(3), groups=2)
    assert torch.equal(out, again)
    other = diff_augment(torch.cat([block, block]), policy=policy, generator=_generator(4), groups=2)
    assert not torch.equal(out, other)
    with pytest.raises(ValueError, match="does not split into 4 equal blocks"):
        diff_augment(block, policy=policy, generator=_generator(), groups=4)


def test_channels_last_input_gives_the_same_images() -> None:
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    policy = ("color", "translation", "cutout")
    plain = diff_augment(images, policy=policy, generator=_generator())
    strided = diff_augment(images.contiguous(memory_format=torch.channels_last), policy=policy, generator=_generator())
    assert torch.allclose(plain, strided, atol=1e-6)
