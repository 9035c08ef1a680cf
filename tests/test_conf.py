"""params.yaml is DVC's composition of conf/ (Hydra), and the ImageNet-100 preset composes to the paper
setup with the DeiT recipe."""
import configparser

import yaml
from dvc.utils.hydra import compose_and_dump

from micro import REPO
from tgo.models import model_kwargs

PRESET = ["data=imagenet100", "model=vit_small_patch16", "prepare.path=/data/imagenet"]


def compose(tmp_path, overrides=()):
    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(REPO / "conf"), None, "config", "", list(overrides))
    return out


def test_params_yaml_is_the_composed_default(tmp_path):
    # What `dvc exp run` would write: a hand edit of params.yaml (instead of conf/) fails here.
    assert (REPO / "params.yaml").read_text() == compose(tmp_path).read_text()


def test_imagenet100_preset(tmp_path):
    p = yaml.safe_load(compose(tmp_path, PRESET).read_text())
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
    default = yaml.safe_load((REPO / "params.yaml").read_text())
    assert all(p[g] == default[g] for g in ("spectral", "tokens", "correlation", "qk"))


def test_dvc_config_offline_and_composing():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".dvc" / "config")
    assert cfg["core"]["analytics"] == "false"
    assert cfg["hydra"]["enabled"] == "true"
