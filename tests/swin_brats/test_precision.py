"""The precision switch is honoured: bfloat16 inside the network on a CPU that has it (with `amp`), fp32 when off or
unsupported, CUDA AMP only on CUDA; training in bf16 only with `cpu_bf16_training`. Nothing is timed."""

from __future__ import annotations

import torch
from conftest import BUNDLE
from monai.bundle import ConfigParser
from scripts.inferers import BrainBoxInferer
from scripts.runtime import amp_enabled, cpu_bf16_forward, cpu_bf16_supported, precision


class DtypeProbe(torch.nn.Module):
    """A 1x1x1 convolution that remembers the dtype its output was computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(4, 3, 1)
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        self.seen.append(out.dtype)
        return out


def test_precision_choice_follows_amp_device_and_processor() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert precision(False, cpu, supported=lambda: True) == "fp32"
    assert precision(True, cpu, supported=lambda: True) == "cpu_bf16"
    assert precision(True, cpu, supported=lambda: False) == "fp32"
    assert precision(True, cuda, supported=lambda: False) == "cuda_amp"
    assert precision(False, cuda) == "fp32"


def test_a_device_given_as_a_string_is_read_like_a_torch_device() -> None:
    """MONAI Label sets the config's `device` to a plain string ("cpu", "cuda", "cuda:0"), not a torch.device."""
    for name, kind in (("cpu", "cpu"), ("cuda", "cuda"), ("cuda:0", "cuda"), (torch.device("cuda:1"), "cuda")):
        assert precision(True, name, supported=lambda: True) == {"cpu": "cpu_bf16", "cuda": "cuda_amp"}[kind]
        assert precision(True, name, supported=lambda: False) == {"cpu": "fp32", "cuda": "cuda_amp"}[kind]
        assert amp_enabled(True, name) is (kind == "cuda")
        assert amp_enabled(False, name) is False
    parser = _parsed("inference.json", device="cuda:0")  # as MONAI Label's BundleInferTask sets it
    assert parser.get_parsed_content("precision") == "cuda_amp" and parser.get_parsed_content("use_amp") is True
    assert _parsed("inference.json", device="cpu").get_parsed_content("use_amp") is False


def test_the_inferer_runs_bf16_only_when_asked() -> None:
    image = torch.randn(1, 4, 40, 40, 40)
    for enabled, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        probe = DtypeProbe()
        logits = BrainBoxInferer((32, 32, 32), sw_batch_size=2, cpu_bf16=enabled)(image, probe)
        assert set(probe.seen) == {dtype} and logits.dtype == torch.float32


def _parsed(config: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / config))
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    return parser


def test_configs_wire_the_switch_into_validation_and_inference() -> None:
    expected = "cpu_bf16" if cpu_bf16_supported() else "fp32"
    for config, inferer in (("inference.json", "inferer"), ("train.json", "validate#inferer")):
        on = _parsed(config)
        assert on.get_parsed_content("precision") == expected
        assert on.get_parsed_content(inferer).cpu_bf16 is (expected == "cpu_bf16")
        off = _parsed(config, amp=False)
        assert off.get_parsed_content("precision") == "fp32" and off.get_parsed_content(inferer).cpu_bf16 is False


def test_cpu_bf16_training_wraps_the_forward_and_keeps_the_state_dict() -> None:
    probe = DtypeProbe()
    keys = list(probe.state_dict())
    assert cpu_bf16_forward(probe, enabled=False)(torch.randn(1, 4, 8, 8, 8)).dtype == torch.float32
    assert probe.seen == [torch.float32]
    wrapped = cpu_bf16_forward(probe, enabled=True)
    out = wrapped(torch.randn(1, 4, 8, 8, 8))
    assert out.dtype == torch.float32 and list(wrapped.state_dict()) == keys
    assert probe.seen[-1] == (torch.bfloat16 if cpu_bf16_supported() else torch.float32)
    out.sum().backward()  # gradients flow through the autocast region into fp32 weights
    assert probe.conv.weight.grad is not None and probe.conv.weight.grad.dtype == torch.float32
    parser = _parsed("train.json", cpu_bf16_training=True, feature_size=12)
    network = parser.get_parsed_content("network")
    assert type(network).__name__ == "SwinUNETR" and ("forward" in vars(network)) is cpu_bf16_supported()
