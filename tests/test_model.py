"""Model: SpinalNet shapes, pretrained weights from a file, the offline message.  pytest tests/test_model.py -q"""
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from kit.model import SpinalHead, create_model


def test_spinal_head_has_the_recipe_shapes():
    head = SpinalHead(2048, 100, width=540, dropout=0.5)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    assert shapes == [(1024, 540), (1564, 540), (1564, 540), (1564, 540), (2160, 100)], shapes
    drops = [m.p for m in head.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.5] * 5, drops
    assert head(torch.randn(3, 2048)).shape == (3, 100)


def test_spinal_layers_see_the_right_halves():
    """Layer 1 sees A only: changing B must not change layer 1's output."""
    head = SpinalHead(8, 2, width=3, dropout=0.0).eval()
    x = torch.randn(1, 8)
    y = x.clone()
    y[:, 4:] += 1.0  # change B
    assert torch.equal(head.layers[0](x[:, :4]), head.layers[0](y[:, :4]))
    assert head.layers[1][1].in_features == 4 + 3, "layer 2 sees B + layer-1 output"


def test_create_model_outputs_logits():
    model = create_model("test_resnet", "spinal", 7, pretrained=False, spinal_width=16)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert create_model("test_resnet", "linear", 7).head[1].out_features == 7


def test_pretrained_file_is_loaded(tmp_path):
    ref = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "w.safetensors")
    model = create_model("test_resnet", "linear", 3, pretrained=True, pretrained_file=str(tmp_path / "w.safetensors"))
    for k, v in ref.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), f"{k} not loaded from the file"


def test_offline_without_weights_says_what_to_do():
    # conftest sets HF_HUB_OFFLINE=1 and nothing is cached: the hub can't be reached
    with pytest.raises(ValueError) as e:
        create_model("test_resnet", "spinal", 3, pretrained=True)
    msg = str(e.value)
    assert "timm/test_resnet" in msg and "pretrained_file=" in msg and "pretrained=false" in msg, msg


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="resnet9000"):
        create_model("resnet9000", "linear", 3)
