"""Encoder transfer from a swin_brats_bundle-style SwinUNETR(4, 3, F) checkpoint via the `pretrained_encoder` key."""

from __future__ import annotations

import pytest
import torch
from cls_helpers import CONFIGS
from monai.bundle import ConfigParser
from monai.networks.nets import SwinUNETR


def parse_train(**override) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"feature_size": 12, **override})
    return parser


def test_pretrained_encoder_loads_swinvit_keys_and_adapts_channels(bundle_scripts, tmp_path):
    torch.manual_seed(0)
    source = SwinUNETR(in_channels=4, out_channels=3, feature_size=12).state_dict()
    path = tmp_path / "model.pt"
    torch.save(source, path)

    fresh = parse_train().get_parsed_content("network")
    parser = parse_train(pretrained_encoder=str(path), pretrained_channel_reduction="sum")
    report = parser.get_parsed_content("pretrained_encoder_report")
    net = parser.get_parsed_content("network")
    state = net.state_dict()

    encoder_keys = sorted(k for k in source if k.startswith("swinViT."))
    assert report["loaded"] == encoder_keys and report["missing"] == []
    assert report["adapted"] == ["swinViT.patch_embed.proj.weight"]
    assert sorted(k for k in state if k.startswith("swinViT.")) == encoder_keys
    for key in encoder_keys:
        if key != "swinViT.patch_embed.proj.weight":
            assert torch.equal(state[key], source[key]), key
    # 4 -> 1 input channels: the kernel summed over the source channels (1 target channel)
    w = source["swinViT.patch_embed.proj.weight"]
    assert w.shape[1] == 4 and state["swinViT.patch_embed.proj.weight"].shape[1] == 1
    torch.testing.assert_close(state["swinViT.patch_embed.proj.weight"], w.sum(1, keepdim=True))
    # the head is not part of the checkpoint and keeps its own initialisation (same seed path as a fresh network)
    assert not torch.equal(state["head.2.weight"], torch.zeros_like(state["head.2.weight"]))
    assert not torch.equal(
        fresh.state_dict()["swinViT.layers1.0.blocks.0.attn.qkv.weight"],
        state["swinViT.layers1.0.blocks.0.attn.qkv.weight"],
    )
    # disabled by default
    assert parse_train().get_parsed_content("pretrained_encoder_report") is None


def test_mean_reduction_and_bad_checkpoints(bundle_scripts, tmp_path):
    from scripts.transfer import adapt_input_channels, load_pretrained_encoder

    w = torch.arange(2 * 4 * 8, dtype=torch.float32).reshape(2, 4, 2, 2, 2)
    torch.testing.assert_close(adapt_input_channels(w, 1, "mean"), w.mean(1, keepdim=True))
    torch.testing.assert_close(adapt_input_channels(w, 2, "sum"), (w.sum(1, keepdim=True) / 2).repeat(1, 2, 1, 1, 1))
    net = parse_train().get_parsed_content("network_def")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: no 'swinViT\.\*' keys"):
        load_pretrained_encoder(net, str(tmp_path / "other.pt"))
    torch.save(SwinUNETR(4, 3, feature_size=24).state_dict(), tmp_path / "fs24.pt")
    with pytest.raises(ValueError, match=r"fs24\.pt: encoder does not match"):
        load_pretrained_encoder(net, str(tmp_path / "fs24.pt"))
