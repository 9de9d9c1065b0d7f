"""The precision switch is honoured: bfloat16 inside the network on a CPU that has it (with `amp`), fp32 when off or
unsupported, CUDA AMP only on CUDA; training in bf16 only with `cpu_bf16_training`. Nothing is timed."""

from __future__ import annotations

import pytest
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


def _fake_native_bf16(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    """Make `cpu_bf16_supported` find AVX512-BF16/AMX (or not), whatever this CPU has: the bf16 path runs on any CPU
    (more slowly where the CPU has no bf16 instructions)."""
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda: present, raising=False)


@pytest.mark.parametrize("native_bf16", [True, False], ids=["bf16_cpu", "plain_cpu"])
def test_configs_wire_the_switch_into_validation_and_inference(monkeypatch, native_bf16: bool) -> None:
    """The configured inferer runs a probe network in bf16 exactly when `amp` is on and the CPU has native bf16."""
    _fake_native_bf16(monkeypatch, native_bf16)
    assert cpu_bf16_supported() is native_bf16
    image = torch.randn(1, 4, 40, 40, 40)
    for config, inferer in (("inference.json", "inferer"), ("train.json", "validate#inferer")):
        for amp in (True, False):
            bf16 = amp and native_bf16
            parser = _parsed(config, amp=amp, roi_size=[32, 32, 32])
            assert parser.get_parsed_content("precision") == ("cpu_bf16" if bf16 else "fp32"), (config, amp)
            probe = DtypeProbe()
            logits = parser.get_parsed_content(inferer)(image, probe)
            assert set(probe.seen) == {torch.bfloat16 if bf16 else torch.float32}, (config, amp)
            assert logits.dtype == torch.float32


def test_cpu_bf16_training_wraps_the_forward_and_keeps_the_state_dict(monkeypatch) -> None:
    _fake_native_bf16(monkeypatch, True)
    probe = DtypeProbe()
    keys = list(probe.state_dict())
    assert cpu_bf16_forward(probe, enabled=False)(torch.randn(1, 4, 8, 8, 8)).dtype == torch.float32
    assert probe.seen == [torch.float32]
    wrapped = cpu_bf16_forward(probe, enabled=True)
    out = wrapped(torch.randn(1, 4, 8, 8, 8))
    assert out.dtype == torch.float32 and list(wrapped.state_dict()) == keys
    assert probe.seen[-1] == torch.bfloat16
    out.sum().backward()  # gradients flow through the autocast region into fp32 weights
    assert probe.conv.weight.grad is not None and probe.conv.weight.grad.dtype == torch.float32
    # the configured switch runs the network's forward in the autocast region: its output in bf16, the result in float32
    # (a 1x1x1 convolution stands in for Swin UNETR, whose bf16 forward a CPU without bf16 instructions emulates slowly)
    conv = "$torch.nn.Sequential(torch.nn.Conv3d(4, 3, 1))"
    network = _parsed("train.json", cpu_bf16_training=True, network_def=conv).get_parsed_content("network")
    seen: list[torch.dtype] = []
    network[0].register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    assert network(torch.randn(1, 4, 8, 8, 8)).dtype == torch.float32 and seen == [torch.bfloat16]
    _fake_native_bf16(monkeypatch, False)  # a CPU without native bf16: the switch leaves the network as it is
    plain = _parsed("train.json", cpu_bf16_training=True, network_def=conv).get_parsed_content("network")
    assert "forward" not in vars(plain)
