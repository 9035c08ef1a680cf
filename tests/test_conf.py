"""params.yaml is DVC's composition of conf/ (Hydra), the presets state only what differs from the
default, and the ImageNet-100 preset composes to the paper setup with the DeiT recipe. Compared
with the committed files, so an experiment in the workspace never turns these tests red."""
import configparser
import subprocess

import yaml

from micro import REPO, compose, defaults
from tgo.models import model_kwargs
from tgo.params import validate

PRESET = ["data=imagenet100", "model=vit_small_patch16", "prepare.path=/data/imagenet"]


def committed(path):
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout


def test_committed_params_yaml_is_the_composed_default():
    # What `dvc exp run` would write: a hand edit of params.yaml (instead of conf/) fails here.
    assert committed("params.yaml") == compose()


def test_defaults_are_valid():
    for group, values in defaults().items():
        validate(group, values)


def test_presets_state_only_what_differs_from_the_default():
    base = defaults()
    for path in sorted((REPO / "conf").glob("*/*.yaml")):
        preset = yaml.safe_load(path.read_text()) or {}
        for group, values in preset.items():
            same = sorted(k for k, v in values.items() if base[group].get(k) == v)
            assert not same, f"{path.relative_to(REPO)} repeats the default of {group}: {same}"


def test_imagenet100_preset():
    p = yaml.safe_load(compose(PRESET))
    for group, values in p.items():
        validate(group, values)
    assert p["prepare"]["source"] == "imagenet100" and p["prepare"]["path"] == "/data/imagenet"
    assert p["prepare"]["image_size"] == 256 and p["prepare"]["resize"] == 256
    m, t = p["model"], p["train"]
    assert (m["name"], m["patch_size"], m["img_size"], m["depth"], m["embed_dim"], m["num_heads"]) == \
        ("vit_small_patch16_224", 16, 224, 12, 384, 6)
    assert m["drop_path_rate"] == 0.1
    assert (t["lr"], t["lr_base_batch"], t["weight_decay"], t["warmup_epochs"], t["epochs"]) == (5e-4, 512, 0.05, 5, 300)
    assert (t["label_smoothing"], t["mixup_alpha"], t["cutmix_alpha"], t["augment"], t["amp"]) == (0.1, 0.8, 1.0, "deit", "bf16")
    assert t["checkpoint_epochs"] == [0, 1, 2, 5, 10, 20, 50, 100, 200, 300]
    assert p["mi"]["n_channels"] == 64 and p["extract"]["probe_size"] == 1000
    kwargs = model_kwargs(m, 100, p["prepare"]["image_size"])
    assert kwargs["img_size"] == 224 and kwargs["patch_size"] == 16
    # The groups change only what they own: the analysis params stay the default's.
    default = defaults()
    assert all(p[g] == default[g] for g in ("spectral", "tokens", "correlation", "qk"))


def test_dvc_config_offline_and_composing():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".dvc" / "config")
    assert cfg["core"]["analytics"] == "false"
    assert cfg["hydra"]["enabled"] == "true"


def test_pretrained_model_and_zoo_presets():
    p = yaml.safe_load(compose(["model=pretrained", "data=imagenet_val", "zoo=timm_hub", "prepare.path=/data/imagenet"]))
    for group, values in p.items():
        validate(group, values)
    m = p["model"]
    assert m["weights"].endswith("models--timm--vit_small_patch16_224.augreg_in21k_ft_in1k")
    assert all(m[k] is None for k in ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio", "img_size"))
    assert p["prepare"]["source"] == "imagenet_val" and len(p["zoo"]) == 4
    assert p["zoo"]["dinov2_s14_reg4"]["img_size"] == 224
    assert defaults()["zoo"] == {}
