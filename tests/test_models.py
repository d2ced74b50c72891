"""Model registry, shapes, parameter counts, output modes and the torchvision weight loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cxrbs.core.errors import CxrbsError
from cxrbs.models import create_model, list_models, load_torchvision_weights, model_kind

BS_MODELS = ["ae_bs", "convnet_bs", "resnet_bs", "rl_bs", "unet_bs"]
CLS_MODELS = ["resnet18", "small_cnn", "vgg16", "vgg16_bn"]

# Parameter counts derived by hand (weights k*k*c_in*c_out + c_out biases):
# ae_bs (5x5): 1->16 416, 16->32 12,832, 32->64 51,264, 64->32 51,232, 32->16 12,816,
#   16->1 401 = 128,961.
# convnet_bs (3x3): 1->16 160, 16->32 4,640, 32->64 18,496, 64->128 73,856, 128->256 295,168,
#   256->512 1,180,160, 512->1 4,609 = 1,577,089.
# rl_bs (3x3): 1->8 80, 8->16 1,168, then as convnet from 16->32 on: 4,640 + 18,496 + 73,856
#   + 295,168 + 1,180,160 + 4,609 = 1,578,177.
# resnet_bs: head 640, 16 blocks x 2 x 36,928 = 1,181,696, conv 36,928, output 577 = 1,219,841
#   (the study's published count).
# vgg16 convs: 1,792 + 36,928 + 73,856 + 147,584 + 295,168 + 2 x 590,080 + 1,180,160
#   + 5 x 2,359,808 = 14,714,688; fc 512*2+2 = 1,026 -> 14,715,714.
# vgg16_bn adds BN gamma+beta: 2 x (2*64 + 2*128 + 3*256 + 6*512) = 8,448 -> 14,724,162.
# small_cnn (bias-free convs, BN gamma+beta): block 32: 864+64+9,216+64 = 10,208;
#   64: 18,432+128+36,864+128 = 55,552; 128: 73,728+256+147,456+256 = 221,696;
#   256: 294,912+512+589,824+512 = 885,760; fc 514 -> 1,173,730.
# resnet18 = torchvision's resnet18 (11,689,512 with its 1000-way fc of 513,000) with a 2-way fc
#   (1,026): 11,177,538.
PARAM_COUNTS = {
    "ae_bs": 128_961,
    "convnet_bs": 1_577_089,
    "rl_bs": 1_578_177,
    "resnet_bs": 1_219_841,
    "unet_bs": 449_617,  # beyond the study: width 16, 4 levels
    "vgg16": 14_715_714,
    "vgg16_bn": 14_724_162,
    "small_cnn": 1_173_730,
    "resnet18": 11_177_538,
}

VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_BN_CONVS = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
VGG_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_family_by_kind() -> None:
    assert list_models("bs") == BS_MODELS
    assert list_models("cls") == CLS_MODELS
    assert list_models() == sorted(BS_MODELS + CLS_MODELS)
    assert model_kind("resnet_bs") == "bs" and model_kind("vgg16") == "cls"
    with pytest.raises(CxrbsError, match="seg"):
        list_models("seg")


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_shapes(name: str) -> None:
    model = create_model(name, seed=0)
    gen = torch.Generator().manual_seed(1)
    if model_kind(name) == "bs":
        if model.output == "residual":  # zero-initialised tail: give every layer a gradient
            nn.init.normal_(model.out_conv.weight, std=0.01, generator=gen)
        x = torch.rand(2, 1, 32, 32, generator=gen)
        out = model(x)
        assert out.shape == (2, 1, 32, 32)
        loss = out.square().mean() + model.penalty()
    else:
        for m in model.modules():  # resnet18's zero-initialised block ends: let convs get a gradient
            if isinstance(m, nn.BatchNorm2d) and not m.weight.any():
                nn.init.ones_(m.weight)
        x = torch.rand(2, 3, 32, 32, generator=gen)
        out = model(x)
        assert out.shape == (2, 2)
        loss = nn.functional.cross_entropy(out, torch.tensor([0, 1]))
    assert torch.isfinite(out).all()
    loss.backward()
    no_grad = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert no_grad == []


@pytest.mark.parametrize("name", list_models())
def test_parameter_counts_with_defaults(name: str) -> None:
    assert n_params(create_model(name)) == PARAM_COUNTS[name]


def test_width_and_depth_kwargs_change_counts() -> None:
    # head 320 + 4 blocks x 2 x 9,248 + conv 9,248 + output 289 = 83,841
    assert n_params(create_model("resnet_bs", n_blocks=4, width=32)) == 83_841
    # 1->8 208, 8->16 3,216, 16->32 12,832, 32->16 12,816, 16->8 3,208, 8->1 201 = 32,481
    assert n_params(create_model("ae_bs", widths=[8, 16, 32])) == 32_481
    # 1->4 40, 4->1 37 = 77
    assert n_params(create_model("convnet_bs", widths=(4, 1))) == 77
    # the notebook's 126-wide 4th layer: 64->126 72,702, 126->256 290,560 replace 73,856 + 295,168
    assert n_params(create_model("convnet_bs", widths=(16, 32, 64, 126, 256, 512, 1))) == (
        1_577_089 - 73_856 - 295_168 + 72_702 + 290_560
    )


@pytest.mark.parametrize("name", BS_MODELS)
def test_bs_models_are_fully_convolutional(name: str) -> None:
    model = create_model(name, seed=0).eval()
    x = torch.rand(1, 1, 24, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert model(x).shape == (1, 1, 24, 40)


@pytest.mark.parametrize("name", BS_MODELS)
def test_residual_mode_is_identity_at_init(name: str) -> None:
    model = create_model(name, seed=0, output="residual")
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model(x), x)
        # the bone layer is linear (no sigmoid) even for the sigmoid models: bias 0.25 -> x - 0.25
        model.out_conv.bias.fill_(0.25)
        assert torch.allclose(model(x), x - 0.25, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("name", "zero_out_value"),
    [("ae_bs", "half"), ("convnet_bs", "half"), ("rl_bs", "input"), ("resnet_bs", "zero")],
)
def test_direct_mode_output_transform(name: str, zero_out_value: str) -> None:
    """With the last conv zeroed, the study's transform alone decides the output."""
    model = create_model(name, seed=0)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = model(x)
        assert not torch.equal(out, x)  # direct mode is not identity at init
        if zero_out_value == "half":
            assert ((out > 0) & (out < 1)).all()
        model.out_conv.weight.zero_()
        model.out_conv.bias.zero_()
        expected = {"half": torch.full_like(x, 0.5), "input": x, "zero": torch.zeros_like(x)}
        assert torch.equal(model(x), expected[zero_out_value])


def test_rl_bs_dilates_only_the_fourth_conv() -> None:
    convs = [m for m in create_model("rl_bs").modules() if isinstance(m, nn.Conv2d)]
    assert [c.dilation for c in convs] == [(1, 1)] * 3 + [(2, 2)] + [(1, 1)] * 4
    assert convs[3].padding == (2, 2) and convs[3].out_channels == 64


def test_convnet_penalty_is_l1_of_kernels_and_others_are_zero() -> None:
    model = create_model("convnet_bs", seed=0, l1=1e-3)
    kernels = [p for n, p in model.named_parameters() if n.endswith("weight")]
    assert len(kernels) == 7
    expected = 1e-3 * sum(float(k.detach().abs().double().sum()) for k in kernels)
    pen = model.penalty()
    assert pen.ndim == 0 and pen.item() == pytest.approx(expected, rel=1e-5)
    pen.backward()
    assert torch.equal(kernels[0].grad, 1e-3 * torch.sign(kernels[0].detach()))
    default = create_model("convnet_bs", seed=0).penalty().item()  # same weights, l1 = 1e-9
    assert default == pytest.approx(expected * 1e-6, rel=1e-5)
    for name in ("ae_bs", "rl_bs", "resnet_bs"):
        assert torch.equal(create_model(name).penalty(), torch.tensor(0.0))


def test_create_model_errors_name_the_problem() -> None:
    with pytest.raises(CxrbsError, match="'segnet_bs'.*ae_bs.*vgg16"):
        create_model("segnet_bs")
    with pytest.raises(CxrbsError, match="depth.*'resnet_bs'.*n_blocks"):
        create_model("resnet_bs", depth=3)
    with pytest.raises(CxrbsError, match="residual"):
        create_model("ae_bs", output="bones")
    with pytest.raises(CxrbsError, match="3 entries"):
        create_model("ae_bs", widths=(8, 16))
    with pytest.raises(CxrbsError, match="ending in 1"):
        create_model("convnet_bs", widths=(8, 16))
    with pytest.raises(CxrbsError, match="dilated_index"):
        create_model("rl_bs", dilated_index=7)
    with pytest.raises(CxrbsError, match="divisible by 4"):
        create_model("ae_bs")(torch.zeros(1, 1, 30, 32))
    with pytest.raises(CxrbsError, match=r"\(N,1,H,W\)"):
        create_model("rl_bs")(torch.zeros(1, 3, 8, 8))


def test_seed_makes_init_reproducible_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = create_model("ae_bs", seed=5).state_dict()
    assert torch.equal(torch.rand(3), before)
    b = create_model("ae_bs", seed=5).state_dict()
    c = create_model("ae_bs", seed=6).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["encoder.0.weight"], c["encoder.0.weight"])
    assert create_model("rl_bs", seed=1, output="residual").cxrbs_spec == {
        "name": "rl_bs",
        "kwargs": {"output": "residual"},
    }


@pytest.mark.parametrize(("name", "maps"), [("vgg16", (512, 2, 2)), ("small_cnn", (256, 4, 4)),
                                           ("resnet18", (512, 1, 1))])
def test_classifier_interface(name: str, maps: tuple[int, int, int]) -> None:
    model = create_model(name, seed=0, num_classes=3).eval()
    gray = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        f = model.forward_features(gray)
        assert f.shape == (2, *maps) and (f >= 0).all()  # after ReLU
        logits = model(gray)
        assert torch.equal(logits, model(gray.repeat(1, 3, 1, 1)))
        assert torch.allclose(logits, model.fc(f.mean(dim=(2, 3))), atol=1e-6)
        assert torch.allclose(model.forward_head(f), logits)
        assert model.forward_pooled(gray).shape == (2, maps[0])
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 3


@pytest.mark.parametrize("name", CLS_MODELS)
def test_flip_tta_averages_the_logits_of_image_and_mirror_in_eval_only(name: str) -> None:
    kwargs = {"widths": [4, 8]} if name == "small_cnn" else {}
    plain = create_model(name, seed=0, **kwargs).eval()
    tta = create_model(name, seed=0, tta_hflip=True, **kwargs).eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = (plain(x) + plain(torch.flip(x, dims=[-1]))) / 2
        torch.testing.assert_close(tta(x), expected)
        assert not torch.allclose(tta(x), plain(x))
        torch.testing.assert_close(tta(x), tta(torch.flip(x, dims=[-1])))  # mirror-invariant
    tta.train()
    plain.train()
    torch.manual_seed(0)
    a = tta(x)
    torch.manual_seed(0)
    torch.testing.assert_close(a, plain(x))  # training sees one image


def test_resnet18_keeps_torchvision_names_and_starts_blocks_as_identity() -> None:
    sd = create_model("resnet18", seed=0).state_dict()
    # torchvision's resnet18 keys, less its fc (same name here, 2 outputs).
    expected = {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
                "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
                "layer4.1.conv2.weight", "fc.weight", "fc.bias"}
    assert expected <= set(sd)
    assert not any(k.startswith(("features.", "layer1.0.downsample")) for k in sd)
    assert sd["layer3.0.conv1.weight"].shape == (256, 128, 3, 3)
    assert sd["layer4.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert sum(1 for k in sd if k.endswith("conv2.weight")) == 8  # 4 stages x 2 blocks
    assert all(float(sd[k].abs().sum()) == 0 for k in sd if k.endswith("bn2.weight"))
    plain = create_model("resnet18", seed=0, zero_init_residual=False).state_dict()
    assert float(plain["layer1.0.bn2.weight"].min()) == 1.0
    small = create_model("resnet18", seed=0, widths=[8, 16, 16, 32], blocks=[1, 1, 1, 1])
    assert small.fc.in_features == 32 and "layer1.1.conv1.weight" not in small.state_dict()
    with pytest.raises(CxrbsError, match="blocks"):
        create_model("resnet18", blocks=[2, 2, 0, 2])
    with pytest.raises(CxrbsError, match="widths"):
        create_model("resnet18", widths=[8, 16])


def test_vgg_layouts_match_torchvision_indices() -> None:
    for name, convs, length in (("vgg16", VGG16_CONVS, 30), ("vgg16_bn", VGG16_BN_CONVS, 43)):
        model = create_model(name)
        assert len(model.features) == length
        sd = model.state_dict()
        found = sorted(int(k.split(".")[1]) for k in sd if k.endswith("weight") and sd[k].ndim == 4)
        assert found == convs
        for i, w in zip(convs, VGG_WIDTHS, strict=True):
            assert sd[f"features.{i}.weight"].shape[0] == w
        assert isinstance(model.features[-1], nn.ReLU)
    sd = create_model("vgg16_bn").state_dict()
    assert "features.1.running_mean" in sd
    assert sd["features.41.weight"].shape == (512,) and "features.41.running_var" in sd
    assert not any(k.startswith("features.43") for k in sd)


def _torchvision_file(path: Path, batch_norm: bool, seed: int) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's full vgg16(_bn) layout, built from the index table above."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    c_in = 3
    for i, w in zip(VGG16_BN_CONVS if batch_norm else VGG16_CONVS, VGG_WIDTHS, strict=True):
        sd[f"features.{i}.weight"] = torch.randn(w, c_in, 3, 3, generator=gen)
        sd[f"features.{i}.bias"] = torch.randn(w, generator=gen)
        if batch_norm:
            sd[f"features.{i + 1}.weight"] = torch.rand(w, generator=gen)
            sd[f"features.{i + 1}.bias"] = torch.randn(w, generator=gen)
            sd[f"features.{i + 1}.running_mean"] = torch.randn(w, generator=gen)
            sd[f"features.{i + 1}.running_var"] = torch.rand(w, generator=gen) + 0.5
        c_in = w
    # The real classifier tensors are ~470 MB; the loader ignores classifier.* by key, so tiny
    # stand-ins under the real names are enough.
    for j in (0, 3, 6):
        sd[f"classifier.{j}.weight"] = torch.zeros(2, 2)
        sd[f"classifier.{j}.bias"] = torch.zeros(2)
    torch.save(sd, path)
    return sd


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn"])
def test_load_torchvision_weights_round_trip(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.pth"
    source = _torchvision_file(path, batch_norm=name == "vgg16_bn", seed=7)
    model = create_model(name, seed=0)
    fc_before = model.fc.weight.detach().clone()
    report = load_torchvision_weights(model, path)
    n_features = sum(k.startswith("features.") for k in source)
    assert report["loaded"] == n_features == (26 if name == "vgg16" else 78)
    assert sorted(report["skipped"]) == sorted(k for k in source if k.startswith("classifier."))
    # torchvision's older files carry no num_batches_tracked: not reported as missing
    assert report["missing"] == []
    sd = model.state_dict()
    for k, v in source.items():
        if k.startswith("features."):
            assert torch.equal(sd[k], v), k
    assert torch.equal(model.fc.weight, fc_before)


def test_load_torchvision_weights_mismatch_and_errors(tmp_path: Path) -> None:
    bn_file = tmp_path / "vgg16_bn.pth"
    _torchvision_file(bn_file, batch_norm=True, seed=8)
    model = create_model("vgg16")
    # Wrong layout: only tensors whose index and shape coincide by chance load: conv1_1 weight
    # and bias (index 0 in both) and the biases at 7 (128), 14 (256), 24 and 28 (512). The
    # report shows it (missing/skipped non-empty); strict=True refuses.
    report = load_torchvision_weights(model, bn_file)
    assert report["loaded"] == 6
    assert "features.2.weight" in report["missing"] and "features.3.weight" in report["skipped"]
    with pytest.raises(CxrbsError, match="vgg16_bn.pth.*does not fit"):
        load_torchvision_weights(model, bn_file, strict=True)

    missing = tmp_path / "nope.pth"
    with pytest.raises(CxrbsError, match="nope.pth"):
        load_torchvision_weights(model, missing)
    unrelated = tmp_path / "other.pth"
    torch.save({"encoder.0.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(CxrbsError, match="other.pth.*no features"):
        load_torchvision_weights(model, unrelated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CxrbsError, match="garbage.pth"):
        load_torchvision_weights(model, garbage)
