"""Pretrained ViTs as the papers study them: timm families at their native resolutions, with random
weights written to disk in every layout a researcher brings them in (a file, a Hugging Face hub
cache repo, one of its snapshots, a timm local-dir), their own preprocessing, token layout,
captured residual stream and attention. Widths and depths are shrunk to keep the tests fast; patch
sizes, input sizes, prefix tokens and pooling are the families' own."""
import hashlib
import os
import pickle
import shutil
import socket
import warnings

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_MEAN, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, resolve_model_data_config
from timm.layers import resample_abs_pos_embed
from timm.models import save_for_hf

from tgo.activations import sample_sets
from tgo.capture import capture, layout
from tgo.checkpoints import checkpoint_name, load_checkpoint, save_weights
from tgo.geometry import qk
from tgo.io import TGOError
from tgo.models import attention_is_bilinear, create_model, input_config, preprocess, to_input

SMALL = {"depth": 2, "embed_dim": 48, "num_heads": 2}
REGS = [f"reg_{i}" for i in range(1, 5)]
# id: (timm name, prefix tokens, does the head read something else than the CLS token)
FAMILIES = {
    "augreg": ("vit_small_patch16_224.augreg_in21k_ft_in1k", ["cls"], False),
    "clip": ("vit_base_patch16_clip_quickgelu_224.openai", ["cls"], False),
    "deit_distilled": ("deit_tiny_distilled_patch16_224.fb_in1k", ["cls", "dist"], True),
    "dinov2_reg": ("vit_small_patch14_reg4_dinov2.lvd142m", ["cls", *REGS], False),
    "gap_reg": ("vit_base_patch16_reg4_gap_256", REGS, True),
    "gap": ("vit_base_patch16_gap_224", [], True),
    "eva02": ("eva02_tiny_patch14_224.mim_in22k", ["cls"], True),
}
LAYOUTS = ("file", "hub_cache", "snapshot", "local_dir")


def random_model(name, seed=0, **overrides):
    torch.manual_seed(seed)
    return timm.create_model(name, **{**SMALL, **overrides}).eval()


def hub_cache_repo(root, name, local_dir, commit):
    """A Hugging Face hub cache repo as huggingface_hub writes it: blobs named by hash, snapshots of
    symlinks into them, refs/main naming the snapshot."""
    repo = root / f"models--timm--{name}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in local_dir.iterdir():
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo


def written(tmp_path, family, where, seed=0):
    """(random model, the path to give as weights) for a family in one of the LAYOUTS."""
    name = FAMILIES[family][0]
    model = random_model(name, seed)
    local = tmp_path / f"local_{seed}"
    save_for_hf(model, local, safe_serialization=True)  # timm's own local-dir / snapshot layout
    if where == "file":
        return model, local / "model.safetensors"
    if where == "local_dir":
        return model, f"local-dir:{local}"
    repo = hub_cache_repo(tmp_path / "hub", name, local, commit=f"{seed:040d}")
    return model, repo if where == "hub_cache" else repo / "snapshots" / f"{seed:040d}"


@pytest.fixture(scope="module")
def models():
    """One random model per family, built once."""
    return {f: random_model(name) for f, (name, _, _) in FAMILIES.items()}


@pytest.mark.parametrize("where", LAYOUTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_weights_from_every_layout_are_the_written_ones(tmp_path, family, where):
    model, weights = written(tmp_path, family, where)
    # A file says nothing about the architecture: its overrides come from the params; a directory's
    # config.json carries them.
    overrides = SMALL if where == "file" else {}
    loaded = create_model(FAMILIES[family][0], weights, **overrides)
    state = model.state_dict()
    assert loaded.state_dict().keys() == state.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    # The checkpoint's kwargs rebuild the same architecture without the weights.
    again = create_model(**loaded.create_kwargs)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in state.items()}


def test_hub_cache_follows_refs_main(tmp_path):
    name = FAMILIES["deit_distilled"][0]
    older, _ = written(tmp_path, "deit_distilled", "hub_cache", seed=1)
    newer = random_model(name, seed=2)
    save_for_hf(newer, tmp_path / "newer", safe_serialization=True)
    repo = tmp_path / "hub" / f"models--timm--{name}"
    shutil.copytree(tmp_path / "newer", repo / "snapshots" / ("2" * 40))
    (repo / "refs" / "main").write_text("2" * 40)
    loaded = create_model(name, repo)
    assert torch.equal(loaded.cls_token, newer.cls_token) and not torch.equal(loaded.cls_token, older.cls_token)


@pytest.mark.parametrize("family", FAMILIES)
def test_input_config_is_timms(models, family):
    model = models[family]
    ours, theirs = input_config(model), resolve_model_data_config(model)
    for key in ("mean", "std", "crop_pct", "interpolation", "crop_mode"):
        assert tuple(ours[key]) == tuple(theirs[key]) if key in ("mean", "std") else ours[key] == theirs[key], key
    assert ours["input_size"] == [3, *model.patch_embed.img_size] == list(theirs["input_size"])  # native


def test_input_config_of_augreg_and_clip_weights():
    augreg = input_config(random_model(FAMILIES["augreg"][0]))
    clip = input_config(random_model(FAMILIES["clip"][0]))
    plain = input_config(random_model("deit_tiny_patch16_224.fb_in1k"))
    assert augreg["mean"] == augreg["std"] == [0.5, 0.5, 0.5]
    assert clip["mean"] == list(OPENAI_CLIP_MEAN) and clip["std"] == list(OPENAI_CLIP_STD)
    assert plain["mean"] == list(IMAGENET_DEFAULT_MEAN)


def test_the_families_are_the_ones_named(models):
    # CLIP: a LayerNorm before the blocks and quick-GELU; DINOv2: patch 14 at 518 px, LayerScale,
    # position embeddings without the prefix tokens; gap: no class token.
    clip, dino = models["clip"], models["dinov2_reg"]
    assert isinstance(clip.norm_pre, torch.nn.LayerNorm) and "QuickGELU" in type(clip.blocks[0].mlp.act).__name__
    assert dino.patch_embed.patch_size == (14, 14) and dino.patch_embed.img_size == (518, 518)
    assert hasattr(dino.blocks[0].ls1, "gamma") and dino.no_embed_class
    assert models["gap_reg"].cls_token is None and models["gap"].num_prefix_tokens == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_tokens_and_sample_sets(models, family):
    _, prefix, pooled = FAMILIES[family]
    info = layout(models[family])
    assert info["prefix_tokens"] == prefix and (info["head_input"] is not None) == pooled
    n, p = 3, info["grid"][0] * info["grid"][1]
    assert info["num_tokens"] == len(prefix) + p
    # Token t holds the value t: every sample set says which tokens it took.
    tokens = np.broadcast_to(np.arange(info["num_tokens"], dtype=np.float32)[None, :, None], (n, info["num_tokens"], 4))
    sets = sample_sets(tokens, info, pooled=np.zeros((n, 4)) if pooled else None)
    assert ("cls" in sets) == ("cls" in prefix) and ("pooled" in sets) == pooled
    if "cls" in sets:
        assert np.all(sets["cls"] == prefix.index("cls"))
    assert sets["patches"].shape == (n * p, 4) and sets["patches"].min() == len(prefix)  # no prefix token
    np.testing.assert_allclose(sets["patch_mean"], len(prefix) + (p - 1) / 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_residual_stream_is_forward_intermediates(models, family, tmp_path):
    model = models[family]
    cfg = input_config(model)
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)  # resized to the input
    info = capture(model, images, 2, tmp_path, cfg)
    x = preprocess(torch.from_numpy(images), cfg)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, norm=False, output_fmt="NLC", return_prefix_tokens=True)
    p0 = info["num_prefix_tokens"]
    expected = [torch.cat([y[1], y[0]], 1) if p0 else (y[0] if isinstance(y, tuple) else y) for y in inter]
    residual = np.load(tmp_path / "residual.npy").astype(np.float32)
    for b, want in enumerate(expected):
        np.testing.assert_allclose(residual[b], want.numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(np.load(tmp_path / "final_norm.npy").astype(np.float32), final.numpy(),
                               rtol=2e-3, atol=2e-3)
    # The sublayers add up: each block's output is its input plus its attention and MLP contributions.
    embed = np.load(tmp_path / "embed.npy").astype(np.float32)
    attn, mlp = np.load(tmp_path / "attn.npy").astype(np.float32), np.load(tmp_path / "mlp.npy").astype(np.float32)
    inputs = [embed, *residual[:-1]]
    for b in range(len(expected)):
        np.testing.assert_allclose(inputs[b] + attn[b] + mlp[b], residual[b], rtol=1e-2, atol=1e-2)
    if info["head_input"]:  # the head's input at the final site is what the head reads
        pooled = np.load(tmp_path / "pooled.npy").astype(np.float32)
        np.testing.assert_allclose(pooled[-1], model.forward_head(final, pre_logits=True).detach().numpy(),
                                   rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "eva02"])
def test_attention_recomputed_from_stored_inputs_is_the_models_own(models, family, tmp_path):
    # What the qk stage does: norm1 of the stored float16 block input, then q k^T from the weights,
    # with the heads and eps that extract records (meta.json's attention) instead of the model.
    model = models[family]
    recorded = layout(model)["attention"]
    assert attention_is_bilinear(model) is None and recorded["not_bilinear"] is None
    cfg = input_config(model)
    images = np.random.default_rng(1).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    capture(model, images, 2, tmp_path, cfg)
    own = {}
    for b, blk in enumerate(model.blocks):
        blk.attn.fused_attn = False  # so that the softmax is a tensor a hook can see
        blk.attn.attn_drop.register_forward_hook(lambda m, i, o, b=b: own.__setitem__(b, o.double().numpy()))
    with torch.no_grad():
        model(preprocess(torch.from_numpy(images), cfg))
    w = {k: v.double().numpy() for k, v in model.state_dict().items()}
    embed, residual = np.load(tmp_path / "embed.npy"), np.load(tmp_path / "residual.npy")
    for b, blk in enumerate(model.blocks):
        stored = embed if b == 0 else residual[b - 1]
        hidden = qk.layer_norm(stored, w[f"blocks.{b}.norm1.weight"], w[f"blocks.{b}.norm1.bias"],
                               recorded["norm_eps"])
        ours = qk.attention_from_inputs(hidden, w[f"blocks.{b}.attn.qkv.weight"], w.get(f"blocks.{b}.attn.qkv.bias"),
                                        recorded["num_heads"])
        assert ours.shape == own[b].shape
        assert np.abs(ours - own[b]).max() < 5e-3  # float16 storage of the block input


def test_attention_that_is_not_bilinear_is_named(models):
    assert "RoPE" in attention_is_bilinear(models["eva02"])
    assert layout(models["eva02"])["attention"] == {"not_bilinear": attention_is_bilinear(models["eva02"])}
    assert "qk-norm" in attention_is_bilinear(random_model("vit_tiny_patch16_224", qk_norm=True))


def test_checkpoints_are_what_safetensors_torch_writes_and_load_back_exactly(tmp_path):
    # tgo.checkpoints goes through safetensors.numpy (qk reads weights without importing torch); the
    # files must stay byte for byte what safetensors.torch writes, so that cached checkpoints and
    # their digests remain valid.
    model = random_model("vit_tiny_patch16_224")
    save_weights(model, tmp_path / checkpoint_name(3))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "torch.safetensors"))
    assert (tmp_path / checkpoint_name(3)).read_bytes() == (tmp_path / "torch.safetensors").read_bytes()
    loaded = load_checkpoint(tmp_path, 3)
    other = random_model("vit_tiny_patch16_224", seed=1)
    other.load_state_dict({k: torch.from_numpy(v) for k, v in loaded.items()})
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


# --- weights in other layouts: timm's checkpoint filter converts them -----------------------------

def to_openai_clip(state):
    """A timm CLIP ViT's state dict in OpenAI's original layout (visual.*)."""
    names = [("blocks.", "transformer.resblocks."), ("norm_pre", "ln_pre"), ("norm1", "ln_1"), ("norm2", "ln_2"),
             ("attn.qkv.", "attn.in_proj_"), ("attn.proj", "attn.out_proj"), ("mlp.fc1", "mlp.c_fc"),
             ("mlp.fc2", "mlp.c_proj"), ("patch_embed.proj", "conv1")]
    out = {}
    for k, v in state.items():
        if k == "cls_token":
            out["visual.class_embedding"] = v[0, 0]
        elif k == "pos_embed":
            out["visual.positional_embedding"] = v[0]
        elif k == "head.weight":
            out["visual.proj"] = v.T.contiguous()
        elif k.startswith("norm."):
            out[k.replace("norm.", "visual.ln_post.")] = v
        elif k != "head.bias":
            for a, b in names:
                k = k.replace(a, b)
            out["visual." + k] = v
    return out


def test_openai_clip_layout(tmp_path):
    model = random_model(FAMILIES["clip"][0])
    torch.nn.init.zeros_(model.head.bias)  # OpenAI's projection has no bias
    torch.save(to_openai_clip(model.state_dict()), tmp_path / "ViT-B-16.pt")
    loaded = create_model(FAMILIES["clip"][0], tmp_path / "ViT-B-16.pt", **SMALL)
    assert loaded.num_classes == model.num_classes == 512
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_original_dinov2_layout(tmp_path):
    model = random_model(FAMILIES["dinov2_reg"][0])
    state = dict(model.state_dict())
    # facebookresearch/dinov2: a mask token, registers named register_tokens, and a position
    # embedding with an entry for the class token (timm folds it into cls_token).
    first = torch.randn(1, 1, SMALL["embed_dim"])
    original = {k: v for k, v in state.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    original.update(mask_token=torch.zeros(1, SMALL["embed_dim"]), register_tokens=state["reg_token"],
                    cls_token=state["cls_token"] - first, pos_embed=torch.cat([first, state["pos_embed"]], 1))
    save_file(original, str(tmp_path / "dinov2_vits14_reg4_pretrain.safetensors"))
    loaded = create_model(FAMILIES["dinov2_reg"][0], tmp_path / "dinov2_vits14_reg4_pretrain.safetensors", **SMALL)
    for k, v in state.items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=1e-6, msg=k)


def test_position_embeddings_are_resampled(tmp_path):
    model = random_model("vit_tiny_patch16_224", patch_size=4, img_size=32)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = create_model("vit_tiny_patch16_224", tmp_path / "w.safetensors", **SMALL, patch_size=4, img_size=16)
    want = resample_abs_pos_embed(model.pos_embed, (4, 4), num_prefix_tokens=1)
    torch.testing.assert_close(loaded.pos_embed, want)
    assert input_config(loaded)["input_size"] == [3, 16, 16]


def to_jax_npz(model, path):
    """A plain ViT in the JAX/Flax layout of the original ViT and AugReg releases."""
    s = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    d, h = model.embed_dim, model.blocks[0].attn.num_heads
    w = {"embedding/kernel": s["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
         "embedding/bias": s["patch_embed.proj.bias"], "cls": s["cls_token"],
         "Transformer/posembed_input/pos_embedding": s["pos_embed"],
         "Transformer/encoder_norm/scale": s["norm.weight"], "Transformer/encoder_norm/bias": s["norm.bias"],
         "head/kernel": s["head.weight"].T, "head/bias": s["head.bias"]}
    for i in range(len(model.blocks)):
        b, j = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        qkv, bias = s[b + "attn.qkv.weight"].reshape(3, d, d), s[b + "attn.qkv.bias"].reshape(3, h, d // h)
        for n, name in enumerate(("query", "key", "value")):
            w[f"{j}MultiHeadDotProductAttention_1/{name}/kernel"] = qkv[n].T.reshape(d, h, d // h)
            w[f"{j}MultiHeadDotProductAttention_1/{name}/bias"] = bias[n]
        out = s[b + "attn.proj.weight"].reshape(d, h, d // h)
        w[f"{j}MultiHeadDotProductAttention_1/out/kernel"] = out.transpose(1, 2, 0)
        w[f"{j}MultiHeadDotProductAttention_1/out/bias"] = s[b + "attn.proj.bias"]
        for ln, norm in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            w[f"{j}{ln}/scale"], w[f"{j}{ln}/bias"] = s[b + norm + ".weight"], s[b + norm + ".bias"]
        for r in range(2):
            w[f"{j}MlpBlock_3/Dense_{r}/kernel"] = s[f"{b}mlp.fc{r + 1}.weight"].T
            w[f"{j}MlpBlock_3/Dense_{r}/bias"] = s[f"{b}mlp.fc{r + 1}.bias"]
    np.savez(path, **w)


def test_jax_npz_and_state_dict_npz(tmp_path):
    model = random_model(FAMILIES["augreg"][0])
    to_jax_npz(model, tmp_path / "augreg.npz")
    np.savez(tmp_path / "state.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    for path in (tmp_path / "augreg.npz", tmp_path / "state.npz"):
        loaded = create_model(FAMILIES["augreg"][0], path, **SMALL)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0, msg=f"{path.name}: {k}")


# --- what is refused ------------------------------------------------------------------------------

class Payload:
    """Unpickling this runs a shell command (the kind of file torch.load must never execute)."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["file", "snapshot"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, where):
    marker = tmp_path / "ran"
    state = {k: v for k, v in random_model("vit_tiny_patch16_224", patch_size=4, img_size=16).state_dict().items()}
    if where == "file":
        path = tmp_path / "evil.pth"
    else:  # a hub snapshot whose weights are a pickle
        path = tmp_path / "snap" / "pytorch_model.bin"
        path.parent.mkdir()
        save_for_hf(random_model("vit_tiny_patch16_224", patch_size=4, img_size=16), path.parent,
                    safe_serialization=False)
    torch.save({**state, "payload": Payload(marker)}, path)
    with pytest.raises(TGOError, match="unpickling refused"):
        create_model("vit_tiny_patch16_224", path if where == "file" else path.parent, **SMALL, patch_size=4,
                     img_size=16)
    assert not marker.exists()


def test_a_raw_pickle_is_refused_without_a_warning(tmp_path):
    # pickle.dump (protocol 4+), not torch.save: torch warns of the protocol before it refuses the
    # file; the user sees the one line only.
    marker, path = tmp_path / "ran", tmp_path / "raw.pth"
    path.write_bytes(pickle.dumps({"payload": Payload(marker)}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TGOError, match="unpickling refused"):
            create_model("vit_tiny_patch16_224", path, **SMALL, patch_size=4, img_size=16)
    assert not caught, [str(w.message) for w in caught]
    assert not marker.exists()


def test_unknown_names_and_tags_name_the_closest():
    with pytest.raises(TGOError, match="closest: vit_small_patch16_224"):
        create_model("vit_smal_patch16_224")
    with pytest.raises(TGOError, match=r"no pretrained tag 'augreg_in2k'; closest: .*augreg_in21k"):
        create_model("vit_small_patch16_224.augreg_in2k")
    with pytest.raises(TGOError, match="not a Vision Transformer"):
        create_model("resnet18")


def test_a_directory_of_another_architecture_is_refused(tmp_path):
    _, weights = written(tmp_path, "deit_distilled", "snapshot")
    with pytest.raises(TGOError, match="holds deit_tiny_distilled_patch16_224.*set model.name"):
        create_model("vit_small_patch16_224", weights)


def test_no_network(tmp_path, monkeypatch):
    assert os.environ["HF_HUB_OFFLINE"] == "1"

    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model, weights = written(tmp_path, "dinov2_reg", "hub_cache")
    assert torch.equal(create_model(FAMILIES["dinov2_reg"][0], weights).reg_token, model.reg_token)


def test_accuracy_only_where_the_head_has_the_datas_classes():
    from timm.data import ImageNetInfo

    from tgo.evaluation import head_classes
    in1k = random_model("deit_tiny_patch16_224.fb_in1k")  # 1000 ImageNet-1k outputs
    wnids = ImageNetInfo("imagenet-1k").label_names()
    subset = [wnids[7], wnids[3], wnids[999]]
    assert head_classes(in1k, subset) == [7, 3, 999]  # e.g. ImageNet-100 in a 1000-class head
    assert head_classes(in1k, wnids) == list(range(1000))
    assert head_classes(in1k, ["disk_solid", "square_hstripes"]) is None
    assert head_classes(random_model("deit_tiny_patch16_224", num_classes=2), ["a", "b"]) == [0, 1]
    assert head_classes(in1k, []) is None  # unlabelled probe images
    assert head_classes(random_model(FAMILIES["dinov2_reg"][0]), wnids) is None  # no head


def test_a_model_trained_here_keeps_its_recipe():
    # vit_tiny_patch16_224's default pretrained tag (augreg) says mean = std = 0.5; a model trained
    # here was fed the ImageNet mean and std and centre crops of the stored images, and says so.
    from tgo.models import model_kwargs, recipe_config
    cfg = {"name": "vit_tiny_patch16_224", "weights": None, "patch_size": 16, "depth": 1, "embed_dim": 48,
           "num_heads": 2, "mlp_ratio": None, "drop_path_rate": None, "img_size": 224}
    model = create_model(**model_kwargs(cfg, num_classes=100, image_size=256))
    assert input_config(model) == recipe_config(224, 256)
    assert input_config(model)["mean"] == list(IMAGENET_DEFAULT_MEAN) and input_config(model)["crop_pct"] == 0.875
    assert input_config(create_model(**model.create_kwargs)) == recipe_config(224, 256)  # as extract rebuilds it
    images = torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8)
    torch.testing.assert_close(preprocess(images, input_config(model)), to_input(images, 224), rtol=0, atol=0)


@pytest.mark.parametrize("family", ["augreg", "clip", "dinov2_reg"])
def test_preprocess_is_timms_evaluation_transform(models, family):
    # timm's own transform (PIL resize to input / crop_pct, centre crop, normalise) on a stored
    # 320 px image; ours resizes with torch's antialiased kernel, so allow interpolation noise.
    from PIL import Image
    from timm.data import create_transform
    cfg = input_config(models[family])
    yy, xx = np.mgrid[0:320, 0:320] / 320
    smooth = np.stack([np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in (0.0, 1.0, 2.0)], -1)
    image = ((smooth + 1) * 127.5).round().astype(np.uint8)
    theirs = create_transform(**resolve_model_data_config(models[family]), is_training=False)(Image.fromarray(image))
    ours = preprocess(torch.from_numpy(image[None]), cfg)[0]
    assert ours.shape == theirs.shape == (3, *cfg["input_size"][1:])
    assert (ours - theirs).abs().mean() < 0.01 and (ours - theirs).abs().max() < 0.1


def test_bf16_capture_is_within_the_stated_tolerance_of_fp32(tmp_path):
    # extract.precision=bf16 (README: each site within 3% relative error of fp32), on ViT-S/16's 12 blocks.
    torch.manual_seed(0)
    model = create_model("vit_small_patch16_224", img_size=64, num_classes=10)
    cfg = input_config(model)
    images = np.random.default_rng(2).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    (tmp_path / "fp32").mkdir(), (tmp_path / "bf16").mkdir()
    capture(model, images, 4, tmp_path / "fp32", cfg)
    capture(model, images, 4, tmp_path / "bf16", cfg, precision="bf16")
    for site in ("embed", "residual", "attn", "mlp", "final_norm"):
        exact = np.load(tmp_path / "fp32" / f"{site}.npy").astype(np.float64)
        fast = np.load(tmp_path / "bf16" / f"{site}.npy").astype(np.float64)
        for a, b in zip(exact.reshape(-1, *exact.shape[-3:]), fast.reshape(-1, *fast.shape[-3:])):
            error = np.linalg.norm(a - b) / np.linalg.norm(a)
            assert 1e-4 < error < 0.03, (site, error)  # bf16 really ran, and stayed within the tolerance
