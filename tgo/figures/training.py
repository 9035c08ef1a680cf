"""The report's first section: the model, its preprocessing and its training (DVCLive's curves)."""
import matplotlib.pyplot as plt


def fig_training(curves):
    """curves: {name: (steps, values)} from DVCLive's TSV files."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in ("train/loss", "val/loss"):
        if name in curves:
            axes[0].plot(*curves[name], marker="o", label=name)
    for name in ("val/top1", "val/top5"):
        if name in curves:
            axes[1].plot(*curves[name], marker="o", label=name)
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy", ylim=(0, 100))
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def report(r, curves):
    """The section's text and its figure [(name, caption, Figure)]; curves: DVCLive's, none when the
    one checkpoint is pretrained weights."""
    figures = [("training", "Training and validation loss; validation top-1/top-5 accuracy per epoch (DVCLive).",
                fig_training(curves))] if curves else []
    return {"text": training_text(r["train"]) + " " + model_text(r["layout"]), "figures": figures}


def training_text(train):
    accuracy = (f"validation top-1 {train['val_top1']:.2f}%, top-5 {train['val_top5']:.2f}%" if "val_top1" in train
                else "no validation accuracy (no classifier head, or its classes are not the data's)")
    if "weights" in train:
        return (f"No training: the weights {train['weights']} ({train['params_M']} M parameters) "
                f"are the one checkpoint analysed (epoch 0), beside their untrained network (the same "
                f"architecture at random initialisation) that every claim is also decided on; {accuracy}.")
    return f"Final {accuracy} after {train['epochs']} epochs ({train['params_M']} M parameters)."


def model_text(layout):
    """The model's token layout and preprocessing, in words."""
    p, (gh, gw) = layout["input"], layout["grid"]
    prefix = ", ".join(layout["prefix_tokens"]) or "none"
    head = layout["head_input"] or "the CLS token"
    return (f"Tokens: prefix tokens {prefix}, then {gh}x{gw} patches; {layout['n_blocks']} blocks, width "
            f"{layout['dim']}; the head reads {head}. Preprocessing: stored {p['stored_size']} px images, "
            f"{p['resize']}, centre crop {p['input_size'][-1]} px (crop_pct {p['crop_pct']:.3f}), mean "
            f"{_fmt(p['mean'])}, std {_fmt(p['std'])}.")


def _fmt(values):
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"
