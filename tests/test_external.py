"""Analysing externally trained weights (model.weights): no training, every metric and the report."""
import json

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from micro import copy_project, git_commit, micro_config, run, run_stage, stage_error, stage_ok, write_params
from tgo.models import create_model
from tgo.runs import STAGES as ANALYSIS

STAGES = ("prepare", "train", "extract", *ANALYSIS, "report")


def micro_vit(img_size, num_classes, depth=2, seed=123, embed_dim=32):
    """A ViT with the micro config's architecture, as someone else might have trained it."""
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, patch_size=4, depth=depth,
                             embed_dim=embed_dim, num_heads=2, img_size=img_size, num_classes=num_classes)


def test_repro_from_safetensors_produces_every_metric_without_training(tmp_path):
    weights = tmp_path / "external.safetensors"
    model = micro_vit(16, 4)
    save_file(model.state_dict(), str(weights))
    root = copy_project(tmp_path / "project")
    write_params(root, micro_config(model={"weights": str(weights), "img_size": 16}))
    git_commit(root, "external weights")

    out = run(["dvc", "repro"], root).stdout
    assert "no training:" in out and "epoch 1/" not in out  # train ran, but trained nothing
    for stage in ANALYSIS:
        metrics = json.loads((root / f"reports/metrics/{stage}.json").read_text())
        assert metrics, stage
    assert (root / "reports/report.html").stat().st_size > 10_000
    assert "No training: the weights" in (root / "reports/report.html").read_text()
    train = json.loads((root / "reports/metrics/train.json").read_text())
    assert train["epochs"] == 0 and train["weights"] == str(weights) and 0 <= train["val_top1"] <= 100
    ckpt = load_file(str(root / "data/checkpoints/epoch_000.safetensors"))
    assert all(torch.equal(ckpt[k], v) for k, v in model.state_dict().items())
    assert json.loads((root / "data/checkpoints/config.json").read_text())["checkpoints"] == [0]
    # Beside the weights, their untrained network: the architecture at timm's random initialisation
    # (seed train.seed), extracted and analysed on the same probe images.
    assert sorted(p.name for p in (root / "data/activations").iterdir()) == ["epoch_000", "init"]
    untrained = load_file(str(root / "data/checkpoints/init/epoch_000.safetensors"))
    torch.manual_seed(micro_config()["train"]["seed"])
    timm_init = create_model(**json.loads((root / "data/checkpoints/config.json").read_text())["model_kwargs"])
    assert all(torch.equal(untrained[k], v) for k, v in timm_init.state_dict().items())
    assert not torch.equal(untrained["blocks.0.attn.qkv.weight"], ckpt["blocks.0.attn.qkv.weight"])
    for stage in ANALYSIS:
        assert (root / f"reports/{stage}/init").is_dir(), stage
    verdicts = json.loads((root / "reports/metrics/verdicts.json").read_text())
    records = {f"{p}.{c}": v for p, claims in verdicts.items() for c, v in claims.items()}
    assert records["tgo1.erank_rises"]["verdict"] == "not applicable"
    judged = [v for k, v in records.items() if v["verdict"] != "not applicable"]
    assert judged and all(v["init_verdict"] is not None for v in judged)
    assert any(v["init_value"] is not None for v in judged)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    stage_ok("prepare", root, micro_config())
    return root


def test_state_dict_with_other_head_and_resolution(prepared, tmp_path):
    # A PyTorch state dict of a 1000-class model trained at 32 px, analysed on 16 px images:
    # the position embedding is resampled, the head kept, and no accuracy is claimed.
    weights = tmp_path / "imagenet1k.pth"
    torch.save(micro_vit(32, 1000).state_dict(), weights)
    proc = stage_ok("train", prepared, micro_config(model={"weights": str(weights), "img_size": 16}))
    assert "1000 outputs" in proc.stdout
    train = json.loads((prepared / "reports/metrics/train.json").read_text())
    assert "val_top1" not in train and train["epochs"] == 0
    config = json.loads((prepared / "data/checkpoints/config.json").read_text())
    assert config["model_kwargs"]["num_classes"] == 1000 and config["model_kwargs"]["img_size"] == 16
    # timm resampled the 8x8 position embedding to the 4x4 grid of 16 px inputs
    ckpt = load_file(str(prepared / "data/checkpoints/epoch_000.safetensors"))
    assert ckpt["pos_embed"].shape == (1, 17, 32)


def test_load_external_weights_keeps_every_tensor(tmp_path):
    model = micro_vit(16, 4, seed=5)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")  # a training checkpoint's nesting
    loaded = create_model("vit_tiny_patch16_224", tmp_path / "ckpt.pth", patch_size=4, depth=2, embed_dim=32,
                          num_heads=2, img_size=16)
    assert loaded.num_classes == 4
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_missing_and_mismatched_weights_are_errors(prepared, tmp_path):
    proc = run_stage("train", prepared, micro_config(model={"weights": str(tmp_path / "nope.safetensors")}))
    stage_error(proc, "train", "model.weights", "nope.safetensors", "does not exist")
    deeper = tmp_path / "depth3.safetensors"
    save_file(micro_vit(16, 4, depth=3).state_dict(), str(deeper))
    proc = run_stage("train", prepared, micro_config(model={"weights": str(deeper), "img_size": 16}))
    stage_error(proc, "train", "model.weights", "does not fit", "blocks.2")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    stage_error(run_stage("train", prepared, micro_config(model={"weights": str(junk)})), "train",
                "model.weights", "cannot read")


def test_weights_that_cannot_be_analysed_are_one_line_errors(prepared, tmp_path):
    wider = tmp_path / "wider.safetensors"
    save_file(micro_vit(16, 4, embed_dim=48).state_dict(), str(wider))
    proc = run_stage("train", prepared, micro_config(model={"weights": str(wider), "img_size": 16}))
    stage_error(proc, "train", "model.weights", "does not fit", "size mismatch")
    state = micro_vit(16, 4).state_dict()
    state["blocks.1.attn.qkv.weight"][0, 0] = float("nan")
    broken = tmp_path / "nan.safetensors"
    save_file(state, str(broken))
    proc = run_stage("train", prepared, micro_config(model={"weights": str(broken), "img_size": 16}))
    stage_error(proc, "train", "model.weights", "non-finite", "blocks.1.attn.qkv.weight")


def test_a_small_probe_folder_runs_with_the_readme_command_alone(tmp_path):
    """README's "Analyse your pretrained ViT": 40 images and a weights file run to the report with
    no extract/spectral/tokens setting: every image is a probe image, and the alpha windows
    ([11, 100] by default) come down to the ranks a 40-image jackknife replicate holds (38 images: 37),
    the report saying so. The model is a small ViT (D = 64 > 37) to keep the test short."""
    from PIL import Image
    images = tmp_path / "probes"
    rng = torch.Generator().manual_seed(0)
    for i in range(40):
        (images / f"class_{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (24, 24, 3), generator=rng, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(images / f"class_{i % 2}" / f"{i}.png")
    weights = tmp_path / "small_vit.safetensors"
    save_file(micro_vit(32, 10, embed_dim=64).state_dict(), str(weights))
    root = copy_project(tmp_path / "project")
    git_commit(root, "committed conf")
    small = ["model.name=vit_tiny_patch16_224", "model.patch_size=4", "model.depth=2", "model.embed_dim=64",
             "model.num_heads=2", "model.img_size=32", "prepare.resize=32", "prepare.image_size=32"]
    cmd = ["dvc", "exp", "run", "-S", "model=pretrained", "-S", "data=probe_folder", "-S", f"prepare.path={images}",
           "-S", f"model.weights={weights}"] + [a for s in small for a in ("-S", s)]
    out = run(cmd, root).stdout
    assert "extracted 40 probe images" in out
    for stage in ("spectral", "tokens"):
        assert f"note: {stage}.alpha_ranks=[11, 100] does not fit" in out and "ranks 11..37" in out
        assert json.loads((root / f"reports/metrics/{stage}.json").read_text())["alpha_ranks"] == [11, 37]
    assert "Alpha is fitted over ranks 11..37, not 11..100" in (root / "reports/report.html").read_text()
