"""The diffusers U-Net builder: block layout by feature-map side, sizes, and clear errors for bad layouts."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention

from genlab.errors import ConfigError
from genlab.models.unet import build_unet, check_unet, fit_channel_mults, level_sides


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: two busy-waiting OpenMP threads slow tiny networks down on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def attention_sides_seen(unet: torch.nn.Module, image_size: int, channels: int, **forward_kwargs) -> list[int]:
    """Sides of the feature maps that reach each attention layer in one forward pass."""
    seen: list[int] = []

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        seen.append(hidden.shape[-1])

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in unet.modules() if isinstance(m, Attention)]
    with torch.no_grad():
        out = unet(torch.randn(2, channels, image_size, image_size), torch.tensor([3, 700]), **forward_kwargs).sample
    for h in handles:
        h.remove()
    assert out.shape == (2, channels, image_size, image_size)
    return seen


def test_seed_baseline_layout():
    # Seed 4.1: 32 px, channel_mults (1, 2, 2, 2), attention at 8 and 16 px (narrow here: layout only).
    unet = build_unet(32, 3, base_channels=32)
    assert unet.config.block_out_channels == (32, 64, 64, 64)
    assert unet.config.down_block_types == ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "DownBlock2D")
    assert unet.config.up_block_types == ("UpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    assert unet.config.norm_num_groups == 32 and unet.config.layers_per_block == 2


def test_wider_unet_layout():
    # Seed 4.4: attention at 8, 16 and 32 px.
    unet = build_unet(32, 3, base_channels=64, attention_resolutions=(8, 16, 32), dropout=0.1)
    assert unet.config.block_out_channels == (64, 128, 128, 128)
    assert unet.config.down_block_types == ("AttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert unet.config.up_block_types == ("UpBlock2D",) + ("AttnUpBlock2D",) * 3
    assert unet.config.dropout == 0.1


def test_attention_runs_at_the_requested_sides():
    unet = build_unet(16, 1, base_channels=8, channel_mults=(1, 2, 2), layers_per_block=1,
                      attention_resolutions=(8,), mid_attention=False)
    # Down level 1 (one resnet) then up level 1 (layers_per_block + 1 resnets), all at 8 px.
    assert attention_sides_seen(unet, 16, 1) == [8, 8, 8]
    with_mid = build_unet(16, 1, base_channels=8, channel_mults=(1, 2, 2), layers_per_block=1,
                          attention_resolutions=(16,))
    assert sorted(set(attention_sides_seen(with_mid, 16, 1))) == [4, 16]  # middle block at the bottom (4 px)


def test_fashion_mnist_layout_and_class_conditioning():
    mults = fit_channel_mults(28)
    assert mults == (1, 2, 2)
    assert level_sides(28, len(mults)) == [28, 14, 7]
    unet = build_unet(28, 1, base_channels=8, channel_mults=mults, layers_per_block=1,
                      attention_resolutions=(7, 14), num_classes=10)
    assert unet.config.num_class_embeds == 10
    assert set(attention_sides_seen(unet, 28, 1, class_labels=torch.tensor([0, 9]))) == {7, 14}


def test_fit_channel_mults():
    assert fit_channel_mults(32) == (1, 2, 2, 2)
    assert fit_channel_mults(64, (1, 2, 3, 4, 4)) == (1, 2, 3, 4, 4)
    assert fit_channel_mults(48, (1, 2, 2, 2, 2)) == (1, 2, 2, 2, 2)  # 48 -> 24 -> 12 -> 6 -> 3
    assert fit_channel_mults(28, (1, 2, 2, 2)) == (1, 2, 2)
    assert fit_channel_mults(27) == (1,)
    with pytest.raises(ConfigError):
        fit_channel_mults(28, ())


def test_narrow_networks_get_fewer_norm_groups():
    assert build_unet(16, 1, base_channels=12, channel_mults=(1, 2), attention_resolutions=()).config.norm_num_groups == 4
    with pytest.raises(ConfigError, match="norm_num_groups"):
        build_unet(16, 1, base_channels=12, channel_mults=(1, 2), attention_resolutions=(), norm_num_groups=8)


def test_attention_at_a_side_never_reached():
    with pytest.raises(ConfigError) as err:
        check_unet(32, (1, 2, 2, 2), (8, 7))
    message = str(err.value)
    assert "[7]" in message and "[32, 16, 8, 4]" in message
    with pytest.raises(ConfigError, match=r"\[8, 16\]"):
        build_unet(28, 1, base_channels=8, channel_mults=(1, 2, 2), attention_resolutions=(8, 16))


def test_size_not_divisible():
    with pytest.raises(ConfigError) as err:
        check_unet(28, (1, 2, 2, 2), (8, 16))
    message = str(err.value)
    assert "divisible by 8" in message
    assert "2 down-sampling levels (28 -> 14 -> 7" in message and "(1, 2, 2)" in message
    assert "pad the images to 32 px" in message
    with pytest.raises(ConfigError, match="pad the images to 28 px") as odd:
        check_unet(27, (1, 2), ())
    assert "down-sampling level" not in str(odd.value)  # no depth works for an odd side


def test_other_bad_arguments():
    with pytest.raises(ConfigError, match="dropout"):
        build_unet(16, 1, base_channels=8, channel_mults=(1, 2), attention_resolutions=(), dropout=1.0)
    with pytest.raises(ConfigError, match="positive"):
        check_unet(16, (1, 0), ())
    check_unet(16, (1, 2), (16, 8))  # fine: no error
