"""reshape_transform and the ready-made reshapes: token layouts, equivalence with a grid, networks."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam
from monai.networks.nets import UNETR, SwinUNETR, ViT
from torch import nn
from torchvision.models import VisionTransformer

from captum_medcam import (
    CRM,
    GradCAM3D,
    GradCAMPlusPlus,
    GradCAMPlusPlus3D,
    GuidedGradCAM3D,
    HiResCAM,
    LayerCAM,
    LayerCAM3D,
    ScoreCAM,
    ScoreCAM3D,
    XGradCAM,
)
from captum_medcam.reshapes import (
    ChannelsLastToFirst,
    TokensToGrid,
    monai_vit_reshape,
    patch_grid,
    swin_reshape,
    torchvision_vit_reshape,
    unetr_reshape,
)
from tests.conftest import CONV, assert_unchanged, model_state

# --------------------------------------------------------------------------------------
# Round trips on known token layouts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize("grid", [(3, 4), (2, 3, 4)])
def test_tokens_to_grid_places_every_token(grid: tuple[int, ...], prefix: int) -> None:
    n, e = 2, 5
    t = prefix + int(torch.tensor(grid).prod())
    tokens = torch.randn(n, t, e)
    out = TokensToGrid(grid, prefix_tokens=prefix)(tokens)
    assert out.shape == (n, e, *grid)
    for flat, pos in enumerate(torch.cartesian_prod(*[torch.arange(g) for g in grid]).tolist()):
        pos = pos if isinstance(pos, list) else [pos]
        assert torch.equal(out[(slice(None), slice(None), *pos)], tokens[:, prefix + flat])


@pytest.mark.parametrize("dims", [2, 3])
def test_tokens_of_a_patch_embedding_come_back_as_its_grid(dims: int) -> None:
    conv = CONV[dims](2, 6, kernel_size=4, stride=4)
    x = torch.randn(3, 2, *([16, 8, 12][:dims]))
    grid_map = conv(x)
    tokens = grid_map.flatten(2).transpose(1, 2)  # ViT patch embedding
    with_cls = torch.cat([torch.randn(3, 1, 6), tokens], 1)
    grid = patch_grid(tuple(x.shape[2:]), 4)
    assert torch.equal(TokensToGrid(grid)(tokens), grid_map)
    assert torch.equal(TokensToGrid(grid, prefix_tokens=1)(with_cls), grid_map)


def test_torchvision_vit_tokens_are_its_patch_grid() -> None:
    torch.manual_seed(0)
    tv = VisionTransformer(32, 8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = tv._process_input(x)
    with_cls = torch.cat([tv.class_token.expand(2, -1, -1), tokens], 1)
    assert torch.equal(torchvision_vit_reshape(32, 8)(with_cls), tv.conv_proj(x))


def test_monai_vit_tokens_are_its_patch_grid() -> None:
    torch.manual_seed(0)
    vit = ViT(
        1, img_size=(16, 16, 8), patch_size=4, hidden_size=12, mlp_dim=24, num_layers=1, num_heads=2
    )
    x = torch.randn(2, 1, 16, 16, 8)
    reshape = monai_vit_reshape((16, 16, 8), 4)
    embed = vit.patch_embedding
    got = reshape(embed(x)) - reshape(embed.position_embeddings.expand(2, -1, -1))
    torch.testing.assert_close(got, embed.patch_embeddings(x))


def test_channels_last_to_first() -> None:
    maps = torch.randn(2, 4, 3, 2, 7)
    out = ChannelsLastToFirst((4, 3, 2))(maps)
    assert out.shape == (2, 7, 4, 3, 2)
    assert torch.equal(out.movedim(1, -1), maps)


def test_ready_made_grids() -> None:
    assert torchvision_vit_reshape().grid == (14, 14)
    assert torchvision_vit_reshape().prefix_tokens == 1
    assert monai_vit_reshape(96, 16, classification=True).grid == (6, 6, 6)
    assert monai_vit_reshape((64, 32), 16, spatial_dims=2).prefix_tokens == 0
    assert unetr_reshape((96, 96, 64)).grid == (6, 6, 4)
    assert swin_reshape((64, 64, 32), stage=1).grid == (32, 32, 16)
    assert swin_reshape((64, 64, 32), stage=4).grid == (4, 4, 2)
    assert swin_reshape(None).grid is None


def test_a_token_count_that_does_not_fit_names_the_grid() -> None:
    reshape = monai_vit_reshape(32, 8, classification=True)
    with pytest.raises(ValueError, match=r"grid \(4, 4, 4\).*needs 65"):
        reshape(torch.zeros(1, 64, 12))  # no class token: built for the wrong model
    with pytest.raises(ValueError, match=r"\(N, 65, E\)"):
        reshape(torch.zeros(1, 65))
    with pytest.raises(ValueError, match=r"grid \(4, 4, 2\)"):
        swin_reshape((64, 64, 32))(torch.zeros(1, 4, 4, 4, 8))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        patch_grid((30, 32), 8)
    with pytest.raises(ValueError, match="spatial_dims"):
        patch_grid(32, 8)
    with pytest.raises(ValueError, match="3 entries, expected 2"):
        patch_grid((32, 32, 32), 8, spatial_dims=2)
    with pytest.raises(ValueError, match="prefix_tokens"):
        TokensToGrid((2, 2), prefix_tokens=-1)
    with pytest.raises(ValueError, match="stage"):
        swin_reshape(64, stage=5)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(2))
    for cls in (ScoreCAM, GradCAMPlusPlus, GradCAM3D, GuidedGradCAM3D, CRM):
        with pytest.raises(TypeError, match="reshape_transform must be None or a callable"):
            cls(model, model[0], reshape_transform="tokens")


def test_a_reshape_that_returns_the_wrong_thing_is_a_clear_error() -> None:
    model = _TokenModel(2, cls_token=False).double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="not a tensor"):
        LayerCAM(model, model.mix, reshape_transform=lambda t: t.tolist()).attribute(x, target=0)
    with pytest.raises(ValueError, match="expected \\(N, channels, \\*grid\\) with N = 2"):
        ScoreCAM(model, model.mix, reshape_transform=lambda t: t[0]).attribute(x, target=0)
    with pytest.raises(ValueError, match="reshape_transform="):
        HiResCAM(model, model.mix).attribute(x, target=0)  # tokens without a reshape


# --------------------------------------------------------------------------------------
# A token layer equals the equivalent convolutional grid
# --------------------------------------------------------------------------------------


class _TokenModel(nn.Module):
    """Patch embedding -> tokens (N, [cls +] T, 4) -> per-token Linear (the layer) -> ReLU ->
    mean over patch tokens (+ the class token) -> Linear head."""

    def __init__(self, dims: int, cls_token: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.embed = CONV[dims](1, 4, kernel_size=2, stride=2)
        self.mix = nn.Linear(4, 5)
        self.relu = nn.ReLU()
        self.head = nn.Linear(5, 3)
        self.cls = nn.Parameter(torch.randn(1, 1, 4)) if cls_token else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1)
        hidden = self.relu(self.mix(tokens))
        if self.cls is None:
            return self.head(hidden.mean(1))
        return self.head(hidden[:, 1:].mean(1) + hidden[:, 0])


def _grid_model(tokens: _TokenModel, dims: int) -> nn.Sequential:
    """The same network on a grid: the per-token Linear is a 1x1 convolution."""
    mix = CONV[dims](4, 5, kernel_size=1)
    with torch.no_grad():
        mix.weight.copy_(tokens.mix.weight.view(5, 4, *([1] * dims)))
        mix.bias.copy_(tokens.mix.bias)
    gap = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dims](1)
    return nn.Sequential(tokens.embed, mix, nn.ReLU(), gap, nn.Flatten(), tokens.head)


@pytest.mark.parametrize("cls_token", [False, True], ids=["no-cls", "cls"])
@pytest.mark.parametrize("method", [GradCAMPlusPlus, LayerCAM, HiResCAM, XGradCAM])
def test_gradient_cams_on_tokens_equal_the_grid(method, cls_token: bool, dims: int) -> None:
    token_model = _TokenModel(dims, cls_token).double().eval()
    grid_model = _grid_model(token_model, dims).double().eval()
    x = torch.randn(3, 1, *([8, 6, 4][:dims]), dtype=torch.float64)
    grid = patch_grid(tuple(x.shape[2:]), 2)
    reshape = TokensToGrid(grid, prefix_tokens=int(cls_token))
    kwargs = {"exp_score": False} if method is GradCAMPlusPlus else {}
    got = method(token_model, token_model.mix, reshape_transform=reshape).attribute(
        x, target=[0, 1, 2], **kwargs
    )
    want = method(grid_model, grid_model[1]).attribute(x, target=[0, 1, 2], **kwargs)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("cls_token", [False, True], ids=["no-cls", "cls"])
def test_gradcam3d_on_tokens_equals_captum_on_the_grid(cls_token: bool) -> None:
    token_model = _TokenModel(3, cls_token).double().eval()
    grid_model = _grid_model(token_model, 3).double().eval()
    x = torch.randn(2, 1, 8, 6, 4, dtype=torch.float64)
    reshape = TokensToGrid((4, 3, 2), prefix_tokens=int(cls_token))
    got = GradCAM3D(token_model, token_model.mix, reshape_transform=reshape).attribute(x, target=1)
    want = LayerGradCam(grid_model, grid_model[1]).attribute(x, target=1, relu_attributions=True)
    want = LayerGradCam.interpolate(want, (8, 6, 4), "trilinear")
    torch.testing.assert_close(got, want)
    # Guided Grad-CAM: Captum's on the grid (guided backprop is the same on both models).
    guided = GuidedGradCAM3D(token_model, token_model.mix, reshape_transform=reshape)
    ref = GuidedGradCAM3D(grid_model, grid_model[1])
    torch.testing.assert_close(guided.attribute(x, target=1), ref.attribute(x, target=1))


def test_gradcam3d_without_reshape_is_still_captum_bit_for_bit() -> None:
    token_model = _TokenModel(3, False).double().eval()
    grid_model = _grid_model(token_model, 3).double().eval()
    x = torch.randn(2, 1, 8, 6, 4, dtype=torch.float64)
    got = GradCAM3D(grid_model, grid_model[1]).attribute(x, target=[0, 2])
    want = LayerGradCam(grid_model, grid_model[1]).attribute(
        x, target=[0, 2], relu_attributions=True
    )
    assert torch.equal(got, LayerGradCam.interpolate(want, (8, 6, 4), "trilinear"))


@pytest.mark.parametrize("cls_token", [False, True], ids=["no-cls", "cls"])
def test_perturbation_methods_on_tokens_equal_the_grid(cls_token: bool, dims: int) -> None:
    token_model = _TokenModel(dims, cls_token).double().eval()
    grid_model = _grid_model(token_model, dims).double().eval()
    x = torch.randn(2, 1, *([8, 6, 4][:dims]), dtype=torch.float64)
    reshape = TokensToGrid(patch_grid(tuple(x.shape[2:]), 2), prefix_tokens=int(cls_token))
    # CRM's definition: removing a token changes the score as removing its grid position.
    got = CRM(token_model, token_model.mix, reshape_transform=reshape).attribute(x, target=[0, 1])
    torch.testing.assert_close(got, CRM(grid_model, grid_model[1]).attribute(x, target=[0, 1]))
    if not cls_token:  # same model output, so Score-CAM's weights are the same too
        got = ScoreCAM(token_model, token_model.mix, reshape_transform=reshape).attribute(
            x, target=2
        )
        want = ScoreCAM(grid_model, grid_model[1]).attribute(x, target=2)
        torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------------------
# Small randomly initialised networks
# --------------------------------------------------------------------------------------


class _Logits(nn.Module):
    """MONAI's ViT returns ``(logits, hidden_states)``; the attribution needs the logits."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)[0]


def _monai_vit(dims: int, classification: bool) -> ViT:
    torch.manual_seed(0)
    kwargs = {"classification": True, "num_classes": 3} if classification else {}
    return (
        ViT(
            1,
            img_size=16,
            patch_size=4,
            hidden_size=24,
            mlp_dim=48,
            num_layers=2,
            num_heads=4,
            spatial_dims=dims,
            **kwargs,
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize("method", [GradCAMPlusPlus, ScoreCAM, CRM])
def test_monai_vit_classifier_batch_invariance(method, dims: int) -> None:
    vit = _monai_vit(dims, classification=True)
    model = _Logits(vit).eval()
    before = model_state(model)
    reshape = monai_vit_reshape(16, 4, classification=True, spatial_dims=dims)
    attr = method(model, vit.blocks[0], reshape_transform=reshape)
    x = torch.randn(3, 1, *([16] * dims), dtype=torch.float64)
    target = torch.tensor([0, 2, 1])
    maps = attr.attribute(x, target=target)
    assert maps.shape == (3, 1, *([16] * dims))
    assert maps.abs().sum() > 0
    for i in range(3):
        torch.testing.assert_close(
            maps[i : i + 1], attr.attribute(x[i : i + 1], target=target[i : i + 1])
        )
    assert_unchanged(model, before)


def test_monai_vit_without_class_token_3d() -> None:
    vit = _monai_vit(3, classification=False)

    def score(x: torch.Tensor) -> torch.Tensor:  # an encoder: pool its last hidden state
        return vit(x)[0].mean(1)[:, :3]

    x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64)
    reshape = monai_vit_reshape(16, 4)
    for cls in (GradCAM3D, LayerCAM3D, ScoreCAM3D):
        maps = cls(score, vit.blocks[0], reshape_transform=reshape).attribute(x, target=1)
        assert maps.shape == (2, 1, 16, 16, 16) and maps.abs().sum() > 0


def test_torchvision_vit_2d() -> None:
    torch.manual_seed(0)
    tv = VisionTransformer(
        32, 8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3
    )
    nn.init.normal_(tv.heads.head.weight)  # torchvision starts the head at zero
    tv = tv.double().eval()
    layer = tv.encoder.layers[-1].ln_1
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for cls in (GradCAMPlusPlus, HiResCAM, ScoreCAM):
        maps = cls(tv, layer, reshape_transform=torchvision_vit_reshape(32, 8)).attribute(
            x, target=[0, 2]
        )
        assert maps.shape == (2, 1, 32, 32) and maps.abs().sum() > 0


def test_unetr_encoder_hidden_states_3d() -> None:
    torch.manual_seed(0)
    net = UNETR(1, 2, img_size=32, feature_size=4, hidden_size=24, mlp_dim=48, num_heads=4).eval()

    def score(x: torch.Tensor) -> torch.Tensor:  # a segmentation: mean logit per class
        return net(x).mean((2, 3, 4))

    x = torch.randn(1, 1, 32, 32, 32)
    for cls in (GradCAM3D, GradCAMPlusPlus3D):
        maps = cls(score, net.vit.blocks[3], reshape_transform=unetr_reshape(32)).attribute(
            x, target=1
        )
        assert maps.shape == (1, 1, 32, 32, 32) and maps.abs().sum() > 0


def test_swin_stages_3d_and_2d() -> None:
    torch.manual_seed(0)
    net = SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=3).eval()
    encoder = net.swinViT

    def score(x: torch.Tensor) -> torch.Tensor:  # the encoder's deepest features, pooled
        return encoder(x)[4].mean((2, 3, 4))[:, :3]

    x = torch.randn(2, 1, 32, 32, 32)
    layer = encoder.layers3[0].blocks[-1]
    reshape = swin_reshape(32, stage=3)
    cam = GradCAM3D(score, layer, reshape_transform=reshape)
    maps = cam.attribute(x, target=[0, 2])
    assert maps.shape == (2, 1, 32, 32, 32) and maps.abs().sum() > 0
    torch.testing.assert_close(maps[1:], cam.attribute(x[1:], target=2), rtol=1e-4, atol=1e-6)

    net2 = SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=2).eval()
    layer2 = net2.swinViT.layers4[0].blocks[-1]
    maps2 = HiResCAM(
        lambda x: net2(x).mean((2, 3)),
        layer2,
        reshape_transform=swin_reshape(64, stage=4, spatial_dims=2),
    ).attribute(torch.randn(1, 1, 64, 64), target=1)
    assert maps2.shape == (1, 1, 64, 64) and maps2.abs().sum() > 0


@pytest.mark.slow
def test_torchvision_vit_b_16_with_the_default_reshape() -> None:
    from torchvision.models import vit_b_16

    torch.manual_seed(0)
    model = vit_b_16(weights=None, num_classes=4)
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero
    model.eval()
    layer = model.encoder.layers[-1].ln_1
    cam = GradCAMPlusPlus(model, layer, reshape_transform=torchvision_vit_reshape())
    maps = cam.attribute(torch.randn(1, 3, 224, 224), target=2, exp_score=False, upsample=False)
    assert maps.shape == (1, 1, 14, 14) and maps.abs().sum() > 0
