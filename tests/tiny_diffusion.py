"""Tiny random diffusion models in the layout ``--renderer diffusers`` reads (docs/backends.md).

Built from configs (nothing is downloaded) and saved with ``save_pretrained``, so the renderer
loads them through the same code as a user's weights. Their output is noise-like; they check
the plumbing (loading, crops, masks, seeds, video), not quality. The UNet works at 32 px
(sample_size 16, a VAE that halves), so a frame costs milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

CROSS = 16  # cross-attention width: the text encoder's and the IP-Adapter's


def _unet_blocks() -> dict:
    return {"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4, "cross_attention_dim": CROSS,
            "attention_head_dim": 2, "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D")}


def _tokenizer(folder: Path):
    """A CLIP tokenizer over a small vocabulary written here: the letters, whole words, nothing merged."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz'":
        vocab[letter] = len(vocab)
        vocab[f"{letter}</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def write_base(target: Path, scratch: Path) -> None:
    """A Stable Diffusion 1.5-shaped pipeline folder (model_index.json, unet/, vae/, ...)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=16, up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **_unet_blocks())
    vae = AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=4, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=CROSS, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77, bos_token_id=0,
                                        eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=_tokenizer(scratch), unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None, requires_safety_checker=False
                            ).save_pretrained(target, safe_serialization=True)


def controlnet_model():
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(1)
    return ControlNetModel(conditioning_embedding_out_channels=(4, 8), **_unet_blocks())


def write_ip_adapter(target: Path, unet_folder: Path) -> None:
    """An IP-Adapter (image projection + one key/value pair per cross-attention, numbered as
    the original release numbers them) and its CLIP image encoder."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(2)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                             num_attention_heads=2, image_size=32, patch_size=8,
                                                             projection_dim=16))
    encoder.save_pretrained(target / "image_encoder", safe_serialization=True)
    unet = UNet2DConditionModel.from_pretrained(unet_folder)
    tensors = {"image_proj.proj.weight": torch.randn(4 * CROSS, 16) * 0.1,  # 4 tokens from a 16-d image embedding
               "image_proj.proj.bias": torch.zeros(4 * CROSS),
               "image_proj.norm.weight": torch.ones(CROSS), "image_proj.norm.bias": torch.zeros(CROSS)}
    key = 1  # the release numbers every attention processor; the cross-attentions are the odd ones
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            shape = unet.get_submodule(name.removesuffix(".processor")).to_k.weight.shape
            tensors[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(shape) * 0.1
            tensors[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(shape) * 0.1
            key += 2
    save_file(tensors, str(target / "ip-adapter_sd15.safetensors"))


def write_models(model_dir: Path, style: str = "mediapipe_face", single_file: bool = False,
                 identity: bool = False) -> Path:
    """The tiny models in ``model_dir``/diffusion; ``single_file``: the ControlNet as one
    safetensors file beside its config. Returns the diffusion folder."""
    from safetensors.torch import save_file

    root = model_dir / "diffusion"
    write_base(root / "sd15", model_dir / "scratch")
    net, folder = controlnet_model(), root / f"controlnet-{style}"
    net.save_pretrained(folder, safe_serialization=True)
    if single_file:
        (folder / "diffusion_pytorch_model.safetensors").unlink()
        save_file(net.state_dict(), str(root / f"controlnet-{style}.safetensors"))
    if identity:
        write_ip_adapter(root / "ip_adapter", root / "sd15" / "unet")
    return root
