"""Swin UNETR encoder (`swinViT`) + global average pooling of the deepest stage + dropout + linear head."""

from __future__ import annotations

import torch
from monai.networks.nets import swin_unetr
from torch import nn


class SwinClassifier(nn.Module):
    """Classifier on Swin UNETR's encoder; parameter names match `swinViT.*` in a SwinUNETR state dict."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        feature_size: int = 24,
        dropout: float = 0.2,
        drop_path_rate: float = 0.0,
        window_size: int = 7,
        use_checkpoint: bool = False,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        if feature_size % 12:
            raise ValueError(f"feature_size must be divisible by 12, got {feature_size}")
        # the same arguments SwinUNETR(in_channels, ..., feature_size) gives its encoder
        self.swinViT = swin_unetr.SwinTransformer(
            in_chans=in_channels,
            embed_dim=feature_size,
            window_size=(window_size,) * spatial_dims,
            patch_size=(2,) * spatial_dims,
            depths=(2, 2, 2, 2),
            num_heads=(3, 6, 12, 24),
            drop_path_rate=drop_path_rate,
            use_checkpoint=use_checkpoint,
            spatial_dims=spatial_dims,
            downsample=swin_unetr.MERGING_MODE["merging"],
        )
        self.pool = nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(1), nn.Dropout(dropout), nn.Linear(16 * feature_size, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) from the layer-normalised deepest encoder stage (stride 32, 16 * feature_size)."""
        return self.head(self.pool(self.swinViT(x, normalize=True)[-1]))
