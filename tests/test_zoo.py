"""The zoo through the real dvc: models of three families (random weights in three layouts, small
images) on the micro probe set, every stage and the comparison page; then a fourth model added runs
only its own stages, and a model removed reruns only the page."""
import html
import json
import re

import pytest
from safetensors.torch import save_file
from timm.models import save_for_hf

from micro import (audited_stages, copy_project, fails_before_writing, git_commit, micro_config, run,
                   undeclared_reads, write_params)
from test_models import hub_cache_repo, random_model
from tgo.claims import REGISTRY

PER_MODEL = ("zoo_model", "zoo_extract", "zoo_spectral", "zoo_tokens", "zoo_correlation", "zoo_mi", "zoo_qk")
TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 4, "img_size": 16}
AUDIT = {"PYTHONPATH": str(__import__("micro").REPO / "tests" / "audit")}


def ran(output):
    return set(re.findall(r"Running stage '([\w@-]+)'", output))


def stages_of(*ids):
    return {f"{s}@{m}" for s in PER_MODEL for m in ids}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """(project, zoo params): a plain ViT from a safetensors file, DeiT-distilled from a hub cache
    repo, a registers-only gap model from a timm local-dir; and a fourth entry, EVA-02 (RoPE) from
    a snapshot, to add later."""
    root = copy_project(tmp_path_factory.mktemp("zoo"))
    weights = tmp_path_factory.mktemp("weights")
    save_file(random_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", **TINY).state_dict(),
              str(weights / "plain.safetensors"))
    for name, folder in (("deit_tiny_distilled_patch16_224.fb_in1k", "deit"), ("vit_base_patch16_reg4_gap_256", "gap"),
                         ("eva02_tiny_patch14_224.mim_in22k", "eva")):
        save_for_hf(random_model(name, **TINY), weights / folder, safe_serialization=True)
    hub = hub_cache_repo(weights / "hub", "deit_tiny_distilled_patch16_224.fb_in1k", weights / "deit", "a" * 40)
    entries = {
        "plain": {"name": "vit_tiny_patch16_224.augreg_in21k_ft_in1k", "weights": str(weights / "plain.safetensors"),
                  **TINY},
        "deit": {"name": "deit_tiny_distilled_patch16_224.fb_in1k", "weights": str(hub)},
        "gap": {"name": "vit_base_patch16_reg4_gap_256", "weights": f"local-dir:{weights / 'gap'}"},
        "eva": {"name": "eva02_tiny_patch14_224.mim_in22k", "weights": str(weights / "eva")},
    }
    return root, entries


def with_zoo(root, entries):
    params = micro_config()
    params["zoo"] = entries
    write_params(root, params)


def test_zoo_every_stage_then_only_what_changed(zoo, tmp_path):
    root, entries = zoo
    first = {k: entries[k] for k in ("plain", "deit", "gap")}
    with_zoo(root, first)
    git_commit(root, "a zoo of three")
    out = run(["dvc", "repro", "compare"], root, env={**AUDIT, "TGO_READ_AUDIT": str(tmp_path)}).stdout
    assert ran(out) == {"prepare", "compare"} | stages_of(*first)
    assert audited_stages(tmp_path) == {"prepare", "compare"} | stages_of(*first)
    assert not undeclared_reads(root, tmp_path)

    page = (root / "reports/compare/zoo.html").read_text()
    for m, entry in first.items():
        assert entry["name"] in page
    assert "mean of the CLS and distillation tokens" in page and "reg_1, reg_2, reg_3, reg_4" in page
    # Each verdict cell as the report's: the value against its rule, and the untrained network.
    assert "observed when" in page and "trained minus untrained" in page
    # The gap model has no class token: its cells of the claims about CLS say what stood in.
    stand_in = html.escape("no class token: the head's input (average of the patch tokens, then fc_norm) stands "
                           "in for CLS")
    assert page.count(stand_in) == sum("CLS" in c.text for c in REGISTRY.values())
    verdicts = json.loads((root / "reports/metrics/zoo_verdicts.json").read_text())
    probing = [c for c in REGISTRY if c.startswith("probing.")]
    assert set(verdicts) == set(first) and all(len(v["probing"]) == len(probing) for v in verdicts.values())
    # Each model with weights is judged against its architecture at random initialisation (init/).
    assert all((root / f"data/zoo/{m}/activations/init/epoch_000/meta.json").exists() for m in first)
    assert all(v["info_geom"]["alpha_falls"]["init_verdict"] is not None for v in verdicts.values())
    # Each model's own token layout and preprocessing reached its activations.
    meta = json.loads((root / "data/zoo/deit/activations/epoch_000/meta.json").read_text())
    assert meta["prefix_tokens"] == ["cls", "dist"] and meta["input"]["mean"] == [0.485, 0.456, 0.406]
    meta = json.loads((root / "data/zoo/gap/activations/epoch_000/meta.json").read_text())
    assert meta["prefix_tokens"] == [f"reg_{i}" for i in range(1, 5)] and meta["input"]["mean"] == [0.5] * 3
    spectral = json.loads((root / "reports/zoo/gap/metrics/spectral.json").read_text())
    assert "cls" not in spectral and "pooled" in spectral  # no CLS: the head's input stands in
    corr = json.loads((root / "reports/zoo/deit/metrics/correlation.json").read_text())
    assert {"patches", "with_cls", "with_dist"} <= set(corr)
    git_commit(root, "three analysed")

    with_zoo(root, entries)  # EVA-02 added: its own stages and the page, nothing else
    out = run(["dvc", "repro", "compare"], root).stdout
    assert ran(out) == {"compare"} | stages_of("eva")
    assert "qk: skipped" in out and "RoPE" in out
    assert "RoPE" in (root / "reports/compare/zoo.html").read_text()
    assert json.loads((root / "reports/zoo/eva/metrics/spectral.json").read_text())["pooled"]

    with_zoo(root, {k: entries[k] for k in ("plain", "gap", "eva")})  # one removed: the page alone
    out = run(["dvc", "repro", "compare"], root).stdout
    assert ran(out) == {"compare"}
    assert set(json.loads((root / "reports/metrics/zoo_verdicts.json").read_text())) == {"plain", "gap", "eva"}


@pytest.mark.parametrize("entry, args, needles", [
    ({"bad": {"name": "vit_tiny_patch16_224", "weights": "/nonexistent/w.safetensors"}}, ("--zoo", "bad"),
     ("zoo.bad.weights", "/nonexistent/w.safetensors", "does not exist")),
    ({"bad": {"name": "vit_tiny_patch16_22"}}, ("--zoo", "bad"), ("zoo.bad.name", "closest: vit_tiny_patch16_224")),
    ({}, ("--zoo", "nope"), ("zoo.nope", "not in the zoo")),
    ({"bad": {"name": "vit_tiny_patch16_224", "depht": 3}}, ("--zoo", "bad"),
     ("zoo.bad.depht: unknown key; did you mean zoo.bad.depth?",)),
    ({"a b": {"name": "vit_tiny_patch16_224"}}, ("--zoo", "a b"), ("zoo.a b", "rename it")),
    ({"bad": {"weights": "/w.safetensors"}}, ("--zoo", "bad"), ("zoo.bad", "at least a name")),
], ids=["weights_missing", "unknown_name", "unknown_id", "unknown_key", "bad_id", "no_name"])
def test_zoo_entry_errors_name_the_entry(workspace, capsys, entry, args, needles):
    params = micro_config()
    params["zoo"] = entry
    fails_before_writing("zoo_model", workspace, params, capsys, *needles, args=args)
