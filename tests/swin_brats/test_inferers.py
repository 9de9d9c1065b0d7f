"""The brain-box sliding window: same logits inside the brain, background outside, input grid and metadata kept."""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from scripts.inferers import BACKGROUND_LOGIT, BrainBoxInferer, brain_box


def _brain_volume() -> MetaTensor:
    image = torch.zeros(1, 4, 96, 80, 72)
    image[:, :, 20:61, 10:55, 30:70] = torch.rand(1, 4, 41, 45, 40) + 0.1
    affine = torch.tensor([[-1.0, 0, 0, 119], [0, -1.0, 0, 119], [0, 0, 2.0, -77], [0, 0, 0, 1]])
    return MetaTensor(image, affine=affine)


class CountingNetwork(torch.nn.Module):
    """A pointwise (1x1x1) convolution, so tiling cannot change its output; counts the voxels it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(4, 3, 1)
        self.voxels = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.voxels += x[0, 0].numel() * x.shape[0]
        return self.conv(x)


def test_brain_box_is_the_tight_box_of_nonzero_voxels() -> None:
    assert brain_box(_brain_volume()) == (slice(20, 61), slice(10, 55), slice(30, 70))
    assert brain_box(_brain_volume(), margin=25) == (slice(0, 86), slice(0, 80), slice(5, 72))
    assert brain_box(torch.zeros(1, 4, 8, 8, 8)) == (slice(0, 8), slice(0, 8), slice(0, 8))


def test_logits_inside_the_brain_match_the_whole_volume_window_and_outside_are_background() -> None:
    image, network = _brain_volume(), CountingNetwork().eval()
    whole = SlidingWindowInferer(roi_size=32, sw_batch_size=2, overlap=0.5)(image, network)
    whole_voxels, network.voxels = network.voxels, 0
    boxed = BrainBoxInferer(roi_size=32, sw_batch_size=2, overlap=0.5)(image, network)

    assert isinstance(boxed, MetaTensor) and boxed.shape == (1, 3, 96, 80, 72)
    assert torch.equal(boxed.affine, image.affine)
    inside = (slice(None), slice(None), slice(20, 61), slice(10, 55), slice(30, 70))
    torch.testing.assert_close(boxed[inside].as_tensor(), whole[inside].as_tensor(), atol=1e-5, rtol=1e-5)
    outside = torch.ones(96, 80, 72, dtype=torch.bool)
    outside[inside[2:]] = False
    assert bool((boxed[0][:, outside] == BACKGROUND_LOGIT).all())
    assert network.voxels < whole_voxels / 3  # the windows cover the brain's box, not the whole volume
    assert not boxed.requires_grad and not boxed.is_inference()  # usable by ordinary post-processing


def test_flip_tta_averages_the_flipped_predictions() -> None:
    image = _brain_volume()
    network = torch.nn.Conv3d(4, 3, 3, padding=1).eval()  # not flip-symmetric: each flip gives other logits
    plain = BrainBoxInferer(roi_size=32, overlap=0.25)(image, network)
    tta = BrainBoxInferer(roi_size=32, overlap=0.25, flip_tta=True)(image, network)
    box = (slice(None), slice(None), *brain_box(image))
    cropped = image.as_tensor()[box]
    with torch.no_grad():
        flips = [SlidingWindowInferer(32, overlap=0.25)(cropped.flip(a), network).flip(a) for a in (2, 3, 4)]
        expected = (plain[box].as_tensor() + sum(flips)) / 4
    torch.testing.assert_close(tta[box].as_tensor(), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(tta[box].as_tensor(), plain[box].as_tensor(), atol=1e-3)
