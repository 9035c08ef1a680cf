"""Tests for tgo.geometry.qk: the factored spectra against dense float64 numpy on M = W_Q W_K^T,
the per-head split against the full qkv weight, the recomputed attention against timm's own, and
the qk stage's outputs on the micro workspace against the angles computed directly."""

import json
import math

import numpy as np
import pytest
import scipy.stats
import timm
import torch
from safetensors.torch import load_file

from micro import micro_config
from tgo import activations
from tgo.capture import capture
from tgo.checkpoints import load_checkpoint, save_weights
from tgo.geometry import qk
from tgo.geometry.stats import image_groups
from tgo.io import read_csv
from tgo.models import recipe_config, to_input


def _weights(seed, dim=48, d_head=8):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((dim, d_head)), rng.standard_normal((dim, d_head))


def _padded(values, n):
    return np.sort(np.concatenate([values, np.zeros(n - values.size)]))[::-1]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_decompose_matches_dense(seed):
    w_q, w_k = _weights(seed)
    dim, d_head = w_q.shape
    m = w_q @ w_k.T
    m_sym, m_asym = (m + m.T) / 2, (m - m.T) / 2
    np.testing.assert_allclose(m_sym + m_asym, m, rtol=0, atol=1e-12)
    out = qk.decompose(w_q, w_k)

    # Symmetric part: nonzero eigenvalues, all other eigenvalues of the dense matrix are 0.
    dense_sym = np.linalg.eigvalsh(m_sym)[::-1]
    scale = np.abs(dense_sym).max()
    assert out["sym_eigenvalues"].shape == (2 * d_head,)
    assert np.all(np.diff(out["sym_eigenvalues"]) <= 0)
    np.testing.assert_allclose(_padded(out["sym_eigenvalues"], dim), dense_sym, rtol=0, atol=1e-9 * scale)
    # Generic random weights: 2 d_head nonzero eigenvalues, d_head of each sign
    # (M_sym = ½[A B][B A]^T has signature (d_head, d_head)).
    assert out["sym_fraction_positive"] == pytest.approx(0.5)
    assert out["sym_mass_positive"] == pytest.approx(dense_sym[dense_sym > 0].sum() / np.abs(dense_sym).sum(), rel=1e-9)

    # Antisymmetric part: a general eig here only, as the independent reference.
    ev = np.linalg.eigvals(m_asym)
    ascale = np.abs(ev).max()
    np.testing.assert_allclose(ev.real, 0, atol=1e-9 * ascale)
    imag = np.sort(ev.imag)
    np.testing.assert_allclose(imag, -imag[::-1], atol=1e-9 * ascale)  # ± pairs
    dense_mag = np.sort(imag[imag > 1e-9 * ascale])[::-1]
    assert dense_mag.size == d_head
    np.testing.assert_allclose(out["asym_magnitudes"], dense_mag, rtol=1e-9)
    sv_asym = np.linalg.svd(m_asym, compute_uv=False)
    np.testing.assert_allclose(sv_asym[0:2 * d_head:2], sv_asym[1:2 * d_head:2], rtol=1e-9)
    np.testing.assert_allclose(out["asym_magnitudes"], sv_asym[0:2 * d_head:2], rtol=1e-9)

    # Singular values of M.
    sv = np.linalg.svd(m, compute_uv=False)
    np.testing.assert_allclose(out["singular_values"], sv[:d_head], rtol=1e-9)
    assert np.all(sv[d_head:] < 1e-9 * sv[0])
    assert out["sv1_energy_share"] == pytest.approx(sv[0] ** 2 / np.sum(sv ** 2), rel=1e-9)
    assert out["top10pct_sv_energy_share"] == pytest.approx(sv[0] ** 2 / np.sum(sv ** 2), rel=1e-9)  # 10% of 8 -> 1 value

    assert out["asym_sym_norm_ratio"] == pytest.approx(np.linalg.norm(m_asym) / np.linalg.norm(m_sym), rel=1e-9)


def test_decompose_top10pct_energy_uses_top_tenth():
    w_q, w_k = _weights(5, dim=64, d_head=32)
    sv = np.linalg.svd(w_q @ w_k.T, compute_uv=False)[:32]
    out = qk.decompose(w_q, w_k)
    assert out["top10pct_sv_energy_share"] == pytest.approx(np.sum(sv[:3] ** 2) / np.sum(sv ** 2), rel=1e-9)


def test_decompose_symmetric_case():
    w, _ = _weights(7)
    out = qk.decompose(w, w)
    assert out["asym_sym_norm_ratio"] == pytest.approx(0, abs=1e-12)
    np.testing.assert_allclose(out["asym_magnitudes"], 0, atol=1e-12 * out["sym_eigenvalues"][0])
    assert out["sym_fraction_positive"] == 1.0
    assert out["sym_mass_positive"] == pytest.approx(1.0, abs=1e-12)
    # M = W W^T: eigenvalues are the squared singular values of W.
    sv_w = np.linalg.svd(w, compute_uv=False)
    np.testing.assert_allclose(out["sym_eigenvalues"][:8], sv_w ** 2, rtol=1e-9)
    np.testing.assert_allclose(out["singular_values"], sv_w ** 2, rtol=1e-9)


def test_decompose_antisymmetric_case():
    # M = A B^T - B A^T is skew, so M_sym = 0 up to round-off.
    a, b = _weights(8, d_head=4)
    m = a @ b.T - b @ a.T
    out = qk.decompose(np.concatenate([a, b], 1), np.concatenate([b, -a], 1))
    assert out["asym_sym_norm_ratio"] > 1e12
    np.testing.assert_allclose(out["sym_eigenvalues"], 0, atol=1e-12 * np.abs(m).max())
    # rank(M) = 8: 4 ± pairs, the other 4 of the 8 returned magnitudes are 0.
    ev = np.sort(np.linalg.eigvals(m).imag)[::-1]
    np.testing.assert_allclose(out["asym_magnitudes"][:4], ev[:4], rtol=1e-9)
    np.testing.assert_allclose(out["asym_magnitudes"][4:], 0, atol=1e-12 * ev[0])


def test_decompose_wide_head():
    # D < 2 d_head (as for all heads together): the small problem is D x D.
    w_q, w_k = _weights(9, dim=12, d_head=8)
    m = w_q @ w_k.T
    out = qk.decompose(w_q, w_k)
    m_sym = (m + m.T) / 2
    np.testing.assert_allclose(out["sym_eigenvalues"], np.linalg.eigvalsh(m_sym)[::-1],
                               atol=1e-9 * np.abs(m_sym).max() * 12)
    np.testing.assert_allclose(out["singular_values"], np.linalg.svd(m, compute_uv=False)[:8], rtol=1e-9, atol=1e-9)


def test_head_projections_and_heads_together():
    rng = np.random.default_rng(11)
    dim, heads, d_head = 24, 3, 8
    weight = rng.standard_normal((3 * heads * d_head, dim))
    w_q, w_k = qk.head_projections(weight, heads)
    assert w_q.shape == w_k.shape == (heads, dim, d_head)

    # Per-head q from the projections equals timm's reshape(B, N, 3, H, d_head) of x W^T.
    x = rng.standard_normal((5, dim))
    full = (x @ weight.T).reshape(5, 3, heads, d_head)
    for h in range(heads):
        np.testing.assert_allclose(x @ w_q[h], full[:, 0, h], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x @ w_k[h], full[:, 1, h], rtol=1e-12, atol=1e-12)

    # Sum of per-head score matrices = W_Q W_K^T from the full weight.
    m_sum = sum(w_q[h] @ w_k[h].T for h in range(heads))
    m_full = weight[:dim].T @ weight[dim:2 * dim]
    np.testing.assert_allclose(m_sum, m_full, rtol=1e-12, atol=1e-10)
    together = qk.heads_together(w_q, w_k)
    np.testing.assert_allclose(together["singular_values"], np.linalg.svd(m_full, compute_uv=False), rtol=1e-9,
                               atol=1e-9)
    ratio = np.linalg.norm(m_full - m_full.T) / np.linalg.norm(m_full + m_full.T)
    assert together["asym_sym_norm_ratio"] == pytest.approx(ratio, rel=1e-9)

    # Accepts torch tensors (state dict values) too.
    tq, _ = qk.head_projections(torch.from_numpy(weight), heads)
    np.testing.assert_array_equal(tq, w_q)


HEAD_STATISTICS = ("sym_fraction_positive", "sym_mass_positive", "asym_sym_norm_ratio", "sv1_energy_share",
                   "top10pct_sv_energy_share")


def test_heads_together_leave_one_out_is_the_other_heads():
    rng = np.random.default_rng(12)
    heads, dim, d_head = 4, 24, 5
    w_q, w_k = rng.standard_normal((2, heads, dim, d_head))
    full = sum(w_q[h] @ w_k[h].T for h in range(heads))
    reps = qk.heads_together_leave_one_out(w_q, w_k)
    assert len(reps) == heads
    for h, rep in enumerate(reps):
        direct = qk.heads_together(np.delete(w_q, h, axis=0), np.delete(w_k, h, axis=0))
        for k in HEAD_STATISTICS:
            assert rep[k] == direct[k]
        # Dense: the full score matrix less head h's.
        m = full - w_q[h] @ w_k[h].T
        m_sym = (m + m.T) / 2
        ev = np.linalg.eigvalsh(m_sym)
        sv = np.linalg.svd(m, compute_uv=False)
        assert rep["sym_mass_positive"] == pytest.approx(ev[ev > 0].sum() / np.abs(ev).sum(), rel=1e-9)
        assert rep["asym_sym_norm_ratio"] == pytest.approx(np.linalg.norm(m - m.T) / np.linalg.norm(m + m.T),
                                                           rel=1e-9)
        assert rep["sv1_energy_share"] == pytest.approx(sv[0] ** 2 / np.sum(sv ** 2), rel=1e-9)
        np.testing.assert_allclose(rep["singular_values"], sv[:(heads - 1) * d_head], rtol=1e-9)
    with pytest.raises(ValueError, match="2 heads"):
        qk.heads_together_leave_one_out(w_q[:1], w_k[:1])


def test_heads_together_leave_one_out_of_identical_heads_changes_nothing():
    # H identical heads sum to H M_1 and any H - 1 of them to (H - 1) M_1: shares and ratios are scale-free.
    w_q, w_k = _weights(13, dim=20, d_head=4)
    stack_q, stack_k = np.stack([w_q] * 3), np.stack([w_k] * 3)
    full = qk.heads_together(stack_q, stack_k)
    for rep in qk.heads_together_leave_one_out(stack_q, stack_k):
        for k in HEAD_STATISTICS:
            assert rep[k] == pytest.approx(full[k], rel=1e-9)
        np.testing.assert_allclose(rep["singular_values"][:4], full["singular_values"][:4] * 2 / 3, rtol=1e-9)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_is_torchs(affine):
    """torch.nn.functional.layer_norm with a random weight and bias (or none): a weight of ones would
    let a division pass for a product."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 5, 16)) * 3 + 1
    w, b = (rng.uniform(0.5, 2.0, 16), rng.standard_normal(16)) if affine else (None, None)
    want = torch.nn.functional.layer_norm(torch.from_numpy(x), (16,), None if w is None else torch.from_numpy(w),
                                          None if b is None else torch.from_numpy(b), 1e-5).numpy()
    np.testing.assert_allclose(qk.layer_norm(x, w, b, 1e-5), want, rtol=1e-12, atol=1e-12)


def test_layer_norm_without_bias_plus_the_bias_is_the_full_output():
    # The qk stage measures angles on norm1's output without beta and adds beta for the attention:
    # that must be exactly the attention of the full norm1 output.
    rng = np.random.default_rng(14)
    x = rng.standard_normal((3, 7, 16)).astype(np.float16)
    gamma, beta = rng.standard_normal(16), rng.standard_normal(16)
    np.testing.assert_array_equal(qk.layer_norm(x, gamma, None, 1e-6) + beta, qk.layer_norm(x, gamma, beta, 1e-6))


TINY_VIT = dict(model_name="vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, depth=2,
                embed_dim=32, num_heads=2, num_classes=4)


def _tiny_vit():
    torch.manual_seed(0)
    model = timm.create_model(**TINY_VIT).eval()
    with torch.no_grad():  # sharpen attention so the comparison is not against ~uniform rows
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(20.0)
            blk.attn.qkv.bias.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("block", [0, 1])
def test_attention_matches_timm(block):
    model = _tiny_vit()
    blk = model.blocks[block]
    captured = {}
    hooks = [blk.register_forward_pre_hook(lambda m, args: captured.__setitem__("x", args[0].detach().clone())),
             blk.norm1.register_forward_hook(lambda m, i, o: captured.__setitem__("norm1", o.detach().clone())),
             blk.attn.attn_drop.register_forward_hook(lambda m, i, o: captured.__setitem__("attn", o.detach().clone()))]
    blk.attn.fused_attn = False
    try:
        with torch.no_grad():
            model(torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    finally:
        for hk in hooks:
            hk.remove()
    timm_attn = captured["attn"].double().numpy()
    n_tok = timm_attn.shape[-1]
    assert timm_attn.shape == (3, 2, 17, 17)
    assert timm_attn.max() > 5.0 / n_tok  # not trivially uniform

    ln = blk.norm1
    hidden = qk.layer_norm(captured["x"].numpy(), ln.weight.detach(), ln.bias.detach(), ln.eps)
    np.testing.assert_allclose(hidden, captured["norm1"].double().numpy(), atol=1e-5)
    ours = qk.attention_from_inputs(hidden, blk.attn.qkv.weight, blk.attn.qkv.bias, 2)
    assert ours.dtype == np.float64 and ours.shape == timm_attn.shape
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-12)
    assert np.abs(ours - timm_attn).max() < 1e-5

    # From float16 stored inputs (as capture writes them) the error stays small.
    x16 = captured["x"].numpy().astype(np.float16)
    hidden16 = qk.layer_norm(x16, ln.weight.detach(), ln.bias.detach(), ln.eps)
    ours16 = qk.attention_from_inputs(hidden16, blk.attn.qkv.weight, blk.attn.qkv.bias, 2)
    assert np.abs(ours16 - timm_attn).max() < 2e-3


def test_attention_is_a_stable_softmax_of_large_scores():
    """Scores in the thousands (exp overflows float64 above 709): each row still the softmax, the
    largest score's token taking all of it."""
    h = np.array([[[40.0, 0.0], [0.0, 40.0], [-40.0, 0.0]]])  # (1, 3, 2)
    w = np.vstack([np.eye(2), np.eye(2), np.eye(2)])        # 1 head: q = k = v = h, d_head 2
    a = qk.attention_from_inputs(h, w, None, 1)
    scores = (h[0] @ h[0].T) / np.sqrt(2)
    want = np.exp(scores - scores.max(axis=1, keepdims=True))
    assert scores.max() > 709
    np.testing.assert_allclose(a[0, 0], want / want.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(a[0, 0].diagonal()[:2], 1.0)


def test_attention_from_stored_inputs_of_a_checkpoint_equals_timm(tmp_path):
    # The qk stage's path: a safetensors checkpoint, activations written by tgo.capture (float16),
    # norm1 and qkv from the checkpoint's tensors -> the attention timm computes in every block.
    save_weights(_tiny_vit(), tmp_path / "epoch_001.safetensors")
    weights = load_file(str(tmp_path / "epoch_001.safetensors"))
    model = timm.create_model(**TINY_VIT)
    model.load_state_dict(weights)
    images = np.random.default_rng(2).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    capture(model, images, batch_size=2, out_dir=tmp_path, input_cfg=recipe_config(16, 16))

    timm_attn = {}
    for b, blk in enumerate(model.blocks):
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(lambda m, i, o, b=b: timm_attn.__setitem__(b, o.double().numpy()))
    with torch.no_grad():
        model(to_input(torch.from_numpy(images)))
    embed, residual = np.load(tmp_path / "embed.npy"), np.load(tmp_path / "residual.npy")
    w = {k: v.double().numpy() for k, v in weights.items()}
    for b in range(2):
        stored = embed if b == 0 else residual[b - 1]
        hidden = qk.layer_norm(stored, w[f"blocks.{b}.norm1.weight"], w[f"blocks.{b}.norm1.bias"],
                               model.blocks[b].norm1.eps)
        ours = qk.attention_from_inputs(hidden, w[f"blocks.{b}.attn.qkv.weight"], w[f"blocks.{b}.attn.qkv.bias"], 2)
        assert timm_attn[b].max() > 5.0 / 17  # not trivially uniform
        assert np.abs(ours - timm_attn[b]).max() < 2e-3  # float16 storage of the block input
        # The qk stage's head mean, a few images at a time (5 images in chunks of 2), is the same array.
        mean = qk.head_mean_attention(hidden, w[f"blocks.{b}.attn.qkv.weight"], w[f"blocks.{b}.attn.qkv.bias"], 2,
                                      chunk=2)
        np.testing.assert_array_equal(mean, ours.mean(axis=1))


def _uniform_attention(n, t, heads=2):
    return np.full((n, heads, t, t), 1.0 / t)


def test_angles_orthogonal_exactly_90():
    # CLS (anything) + 6 patches along distinct scaled basis vectors: every pair at 90°.
    n, p, dim = 2, 6, 8
    h = np.zeros((n, 1 + p, dim))
    h[:, 0] = 1.0
    for i in range(p):
        h[:, 1 + i, i] = 0.5 + i
    rng = np.random.default_rng(0)
    attn = rng.random((n, 2, 1 + p, 1 + p))
    attn /= attn.sum(-1, keepdims=True)
    st = qk.angle_attention_stats(h, attn, num_prefix_tokens=1, bins=18)
    assert st["n_pairs"] == n * p * (p - 1)
    assert st["share_obtuse"] == 0.0
    # All pairs in the bin [90, 100); its mean is the head-averaged patch->patch attention.
    patch = attn.mean(1)[:, 1:, 1:][:, ~np.eye(p, dtype=bool)]
    expected = np.full(18, np.nan)
    expected[9] = patch.mean()
    np.testing.assert_allclose(st["attention_by_angle"], expected, rtol=1e-12)
    np.testing.assert_allclose(st["bin_centres"], np.arange(5, 180, 10))
    assert np.isnan(st["spearman"])  # constant angle


def test_spearman_of_hard_attention_is_scipys():
    """One-hot attention rows (every attention 0 or 1): Spearman's rho of angle and attention over
    every ordered patch pair is scipy's."""
    rng = np.random.default_rng(8)
    h = rng.standard_normal((2, 6, 4))
    attn = np.zeros((2, 6, 6))
    attn[:, np.arange(6), (np.arange(6) + 1) % 6] = 1.0
    st = qk.angle_attention_stats(h, attn, num_prefix_tokens=1, bins=4)
    u = h[:, 1:] / np.linalg.norm(h[:, 1:], axis=-1, keepdims=True)
    off = ~np.eye(5, dtype=bool)
    theta = np.degrees(np.arccos(np.clip(np.einsum("nid,njd->nij", u, u), -1, 1)))[:, off]
    assert st["spearman"] == pytest.approx(scipy.stats.spearmanr(theta.ravel(), attn[:, 1:, 1:][:, off].ravel())
                                           .statistic, rel=1e-12)


def test_angle_statistics_default_to_one_prefix_token_and_18_bins():
    rng = np.random.default_rng(9)
    h, attn = rng.standard_normal((2, 6, 4)), _uniform_attention(2, 6)
    got, want = qk.angle_attention_stats(h, attn), qk.angle_attention_stats(h, attn, num_prefix_tokens=1, bins=18)
    assert got["n_pairs"] == want["n_pairs"] == 2 * 5 * 4 and got["bin_centres"].size == 18
    np.testing.assert_array_equal(got["attention_by_angle"], want["attention_by_angle"])


def test_identical_patches_are_at_0_degrees():
    """Two copies of a vector whose unit vector's dot product with itself rounds to 1 + 4e-16: the
    cosine is clipped to 1 (0 degrees), not an arccos of nan."""
    v = np.array([0.36159505, 1.30400005, 0.94708096, -0.70373524, -1.26542147])
    u = v / np.linalg.norm(v)
    assert u @ u > 1.0
    h = np.stack([np.ones(5), v, v])[None]
    st = qk.angle_attention_stats(h, _uniform_attention(1, 3), num_prefix_tokens=1, bins=2)
    assert st["share_obtuse"] == 0.0
    np.testing.assert_allclose(st["attention_by_angle"], [1 / 3, np.nan])


def test_angles_antipodal_and_obtuse_share():
    # Patches v, -v, w, -w with v ⟂ w: 4 antipodal ordered pairs (180°), 8 at 90°.
    v, w = np.array([1.0, 2.0, 0.0]), np.array([-2.0, 1.0, 0.0])
    h = np.stack([np.array([9.0, 9.0, 9.0]), v, -v, 3 * w, -0.5 * w])[None]
    st = qk.angle_attention_stats(h, _uniform_attention(1, 5), num_prefix_tokens=1, bins=4)
    assert st["n_pairs"] == 12
    assert st["share_obtuse"] == pytest.approx(4 / 12)
    by = st["attention_by_angle"]
    assert np.isnan(by[0]) and np.isnan(by[1])  # bins [0,45) [45,90) [90,135) [135,180]
    np.testing.assert_allclose(by[[2, 3]], 0.2)

    # Angles themselves: a known mixture, checked via the obtuse share and the bins.
    rng = np.random.default_rng(3)
    pts = rng.standard_normal((2, 9, 5))
    st = qk.angle_attention_stats(pts, _uniform_attention(2, 9), num_prefix_tokens=1, bins=36)
    u = pts[:, 1:] / np.linalg.norm(pts[:, 1:], axis=-1, keepdims=True)
    cos = np.einsum("nid,njd->nij", u, u)[:, ~np.eye(8, dtype=bool)]
    assert st["share_obtuse"] == pytest.approx(np.mean(cos < 0))


def test_antipodal_is_180_degrees():
    v = np.random.default_rng(4).standard_normal(16)
    h = np.stack([v, v, -2.5 * v])[None]
    st = qk.angle_attention_stats(h, _uniform_attention(1, 3), num_prefix_tokens=1, bins=180)
    assert st["share_obtuse"] == 1.0
    assert np.isfinite(st["attention_by_angle"][179]) and np.all(np.isnan(st["attention_by_angle"][:179]))


def test_spearman_sign_and_subsample():
    # Attention that decreases with angle -> rho = -1; large enough to trigger the subsample.
    rng = np.random.default_rng(5)
    n, p, dim = 6, 200, 10
    h = rng.standard_normal((n, 1 + p, dim))
    u = h / np.linalg.norm(h, axis=-1, keepdims=True)
    cos = np.einsum("nid,njd->nij", u, u)
    attn = np.exp(3 * cos)[:, None]  # monotone in cos, rows need not be normalised here
    st = qk.angle_attention_stats(h, attn, num_prefix_tokens=1, bins=18)
    assert st["n_pairs"] == n * p * (p - 1) > 200_000
    assert st["spearman"] == pytest.approx(-1.0, abs=1e-9)
    again = qk.angle_attention_stats(h, attn, num_prefix_tokens=1, bins=18)
    assert again["spearman"] == st["spearman"]


def test_jackknife_stats_equal_the_stats_without_each_group():
    rng = np.random.default_rng(8)
    n, t, dim = 12, 9, 6
    h = rng.standard_normal((n, t, dim))
    attn = rng.dirichlet(np.ones(t), size=(n, 2, t))
    labels = np.arange(n) % 4
    full, reps = qk.jackknife_angle_attention_stats(h, attn, labels, num_prefix_tokens=1, bins=6)
    direct = qk.angle_attention_stats(h, attn, num_prefix_tokens=1, bins=6)
    assert full["spearman"] == direct["spearman"] and full["share_obtuse"] == direct["share_obtuse"]
    np.testing.assert_allclose(full["attention_by_angle"], direct["attention_by_angle"], rtol=1e-12)
    assert len(reps) == 4
    for g, rep in enumerate(reps):
        alone = qk.angle_attention_stats(h[labels != g], attn[labels != g], num_prefix_tokens=1, bins=6)
        assert rep["spearman"] == pytest.approx(alone["spearman"], abs=1e-12)
        assert rep["share_obtuse"] == alone["share_obtuse"]


def test_jackknife_spearman_leaves_images_out_of_one_sample_of_pairs(monkeypatch):
    # With a subsample, replicate g is scipy's spearmanr over the full sample's pairs of the other
    # images; the attention is rounded so the ranks have ties (averaged, as scipy's).
    monkeypatch.setattr(qk, "_MAX_SPEARMAN_PAIRS", 300)
    rng = np.random.default_rng(9)
    n, t, dim = 12, 9, 6
    h = rng.standard_normal((n, t, dim))
    attn = np.round(rng.dirichlet(np.ones(t), size=(n, 2, t)), 2)
    labels = np.arange(n) % 4
    _, reps = qk.jackknife_angle_attention_stats(h, attn, labels, num_prefix_tokens=1, bins=6)
    thetas, attns, *_ = qk._angle_pairs(h, attn, 1, 6)
    image, pair = qk._spearman_sample(*thetas.shape)
    assert image.size == 300 < thetas.size
    for g, rep in enumerate(reps):
        inside = labels[image] != g
        expected = scipy.stats.spearmanr(thetas[image[inside], pair[inside]], attns[image[inside], pair[inside]])
        assert rep["spearman"] == pytest.approx(expected.statistic, abs=1e-12)


# --- the qk stage on the micro workspace (tests/conftest.py) -----------------------------------------

def _obtuse_share(vectors, p0):
    """Share of ordered patch pairs (i != j) at more than 90 degrees, from the signs of dot products."""
    v = vectors[:, p0:]
    off = ~np.eye(v.shape[1], dtype=bool)
    return float(np.mean(np.einsum("nid,njd->nij", v, v)[:, off] < 0))


def _spearman_angle_attention(vectors, attn, p0):
    """Spearman rho(angle, attention) over all ordered patch pairs, from cosines: the angle falls as
    the cosine rises, so rho(angle, A) = -rho(cos, A)."""
    v = vectors[:, p0:]
    u = v / np.linalg.norm(v, axis=-1, keepdims=True)
    off = ~np.eye(u.shape[1], dtype=bool)
    cos = np.einsum("nid,njd->nij", u, u)[:, off]
    return -scipy.stats.spearmanr(cos.ravel(), attn[:, p0:, p0:][:, off].ravel()).statistic


def test_qk_stage_angles_without_and_with_beta_and_intervals_at_first_and_last(workspace):
    plots = workspace / "reports/qk"
    angles, reps = read_csv(plots / "angles.csv"), read_csv(plots / "replicates.csv")
    params = micro_config()  # the workspace's (other tests rewrite its params.yaml)
    found = activations.checkpoints(workspace / "data/activations")
    epochs = [m["epoch"] for _, m in found]
    meta = found[0][1]
    heads, eps, p0 = meta["attention"]["num_heads"], meta["attention"]["norm_eps"], meta["num_prefix_tokens"]
    n = min(params["qk"]["max_images"], meta["n_images"])
    assert len(epochs) >= 3 and len(angles) == len(epochs) * meta["n_blocks"]
    for act_dir, m in found:
        w = {k: v.astype(np.float64) for k, v in load_checkpoint(workspace / "data/checkpoints", m["epoch"]).items()}
        for b in range(m["n_blocks"]):
            x = activations.load(act_dir, "embed" if b == 0 else "residual")
            x = np.asarray(x[:n] if b == 0 else x[b - 1, :n], dtype=np.float64)
            gamma, beta = w[f"blocks.{b}.norm1.weight"], w[f"blocks.{b}.norm1.bias"]
            # Independent of the stage's code path: LayerNorm written out, attention averaged over heads.
            x_hat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
            attn = qk.attention_from_inputs(x_hat * gamma + beta, w[f"blocks.{b}.attn.qkv.weight"],
                                            w[f"blocks.{b}.attn.qkv.bias"], heads).mean(axis=1)
            row = next(r for r in angles if r["epoch"] == m["epoch"] and r["depth"] == b + 1)
            for end, vectors in (("", x_hat * gamma), ("_with_beta", x_hat * gamma + beta)):
                assert row[f"share_obtuse{end}"] == pytest.approx(_obtuse_share(vectors, p0), abs=1e-12)
                assert row[f"spearman{end}"] == pytest.approx(_spearman_angle_attention(vectors, attn, p0), abs=1e-6)
                # Intervals at the first checkpoint (the untrained network) and the last only.
                has_ci = m["epoch"] in (epochs[0], epochs[-1])
                for k in (f"share_obtuse{end}", f"spearman{end}"):
                    low, high = row[f"{k}_ci_low"], row[f"{k}_ci_high"]
                    assert (low <= row[k] <= high) if has_ci else (math.isnan(low) and math.isnan(high))

    assert list(reps[0]) == ["epoch", "site", "depth", "group", "spearman", "share_obtuse", "spearman_with_beta",
                             "share_obtuse_with_beta"]
    assert sorted({r["epoch"] for r in reps}) == [epochs[0], epochs[-1]]
    # Paired: replicate g leaves out the same images at both checkpoints; its share is theirs.
    groups = image_groups(n, params["ci"]["groups"], params["ci"]["seed"])
    for act_dir, m in (found[0], found[-1]):
        w = load_checkpoint(workspace / "data/checkpoints", m["epoch"])
        x = np.asarray(activations.load(act_dir, "embed")[:n], dtype=np.float64)
        vectors = qk.layer_norm(x, w["blocks.0.norm1.weight"], None, eps)
        for g in range(groups.max() + 1):
            rep = next(r for r in reps if r["epoch"] == m["epoch"] and r["depth"] == 1 and r["group"] == g)
            assert rep["share_obtuse"] == pytest.approx(_obtuse_share(vectors[groups != g], p0), abs=1e-12)

    binned = read_csv(plots / "attention_by_angle.csv")
    assert {r["vectors"] for r in binned} == {"no_beta", "with_beta"}
    summary = json.loads((workspace / "reports/metrics/qk.json").read_text())
    assert set(summary["angle"]["block_1"]) == {f"{k}{vec}{end}" for k in ("spearman", "share_obtuse")
                                                 for vec in ("", "_with_beta") for end in ("", "_ci_low", "_ci_high")}


def test_qk_stage_head_replicates_leave_one_head_out(workspace):
    # With 2 heads, leaving one out leaves the other alone: its own decomposition in heads.csv.
    plots = workspace / "reports/qk"
    heads, reps = read_csv(plots / "heads.csv"), read_csv(plots / "head_replicates.csv")
    assert list(reps[0]) == ["epoch", "site", "depth", "group", *HEAD_STATISTICS]
    per_head = [r for r in heads if r["head"] != "all"]
    assert {r["head"] for r in per_head} == {0.0, 1.0}
    assert len(reps) == len(per_head)
    for r in reps:
        other = next(h for h in per_head if h["epoch"] == r["epoch"] and h["depth"] == r["depth"]
                     and h["head"] == 1 - r["group"])
        for k in HEAD_STATISTICS:
            assert r[k] == pytest.approx(other[k], rel=1e-12)


def test_decompose_of_zero_and_of_a_rank_one_head():
    """M = 0: every share and ratio is 0 / 0, nan. M = v v^T (d_head = 1): one nonzero eigenvalue
    |v|^2, positive, so the positive fraction and mass are exactly 1, as is sigma_1's energy share."""
    zero = qk.decompose(np.zeros((4, 2)), np.zeros((4, 2)))
    for k in HEAD_STATISTICS:
        assert np.isnan(zero[k]), k
    np.testing.assert_array_equal(zero["sym_eigenvalues"], 0.0)
    v = np.array([[1.0], [2.0], [-2.0]])
    one = qk.decompose(v, v)
    assert one["sym_fraction_positive"] == 1.0 and one["sv1_energy_share"] == 1.0
    assert one["sym_mass_positive"] == pytest.approx(1.0, abs=1e-15)
    assert one["sym_eigenvalues"][0] == pytest.approx(9.0, rel=1e-14)
    np.testing.assert_allclose(one["singular_values"], [9.0], rtol=1e-14)


def test_decompose_of_an_exactly_skew_score_matrix():
    """W_Q = [e1 e2], W_K = [e2 -e1]: M = e1 e2^T - e2 e1^T is skew, its symmetric part exactly 0, so
    ||M_asym|| / ||M_sym|| is 1 / 0 = inf and the sign shares of M_sym are 0 / 0 = nan."""
    w_q = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    w_k = np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 0.0]])
    out = qk.decompose(w_q, w_k)
    np.testing.assert_array_equal(out["sym_eigenvalues"], 0.0)
    assert out["asym_sym_norm_ratio"] == np.inf
    assert np.isnan(out["sym_fraction_positive"]) and np.isnan(out["sym_mass_positive"])
    np.testing.assert_allclose(out["asym_magnitudes"], [1.0, 0.0], atol=1e-15)
    assert out["sv1_energy_share"] == pytest.approx(0.5, rel=1e-14)


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_decompose_shares_are_scale_free(scale):
    """c M for c = 1e-6 and 1e6: the same eigenvalue signs, so the same shares and ratios, for a
    generic head (d_head of each sign) and a symmetric one (W_Q = W_K: d_head positive eigenvalues,
    the other d_head round-off zeros that the relative tolerance must not count)."""
    w_q, w_k = _weights(16)
    for a, b in ((w_q, w_k), (w_q, w_q)):
        base, scaled = qk.decompose(a, b), qk.decompose(scale * a, b)
        assert scaled["sym_fraction_positive"] == base["sym_fraction_positive"]
        for k in HEAD_STATISTICS:
            assert scaled[k] == pytest.approx(base[k], rel=1e-9, abs=1e-12), k
    assert qk.decompose(scale * w_q, w_q)["sym_fraction_positive"] == 1.0


def test_decompose_rejects_empty_weights():
    """D = 0 or d_head = 0 is a ValueError naming the shape; the smallest head, D = d_head = 1, is
    accepted: M = w_q w_k, one eigenvalue."""
    out = qk.decompose([[2.0]], [[3.0]])
    assert out["sym_eigenvalues"].tolist() == [6.0] and out["singular_values"].tolist() == [6.0]
    assert out["sym_fraction_positive"] == 1.0 and out["asym_sym_norm_ratio"] == 0.0
    for shape in ((5, 0), (0, 3)):
        with pytest.raises(ValueError, match=rf"^w_q, w_k of shape \({shape[0]}, {shape[1]}\): need D, d_head >= 1$"):
            qk.decompose(np.zeros(shape), np.zeros(shape))


def test_attention_rejects_a_qkv_weight_that_does_not_split_into_heads():
    """3 heads need 3 x 3 x d_head rows: 9 rows (d_head = 1) are the smallest, 12 rows split into
    3 x 4 but not into 3 x 3 x d_head."""
    h = np.random.default_rng(17).standard_normal((2, 5, 4))
    w = np.random.default_rng(18).standard_normal((12, 4))
    a = qk.attention_from_inputs(h, w[:9], None, 3)
    assert a.shape == (2, 3, 5, 5)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match=r"qkv weight of shape \(12, 4\) do not match .* H=3"):
        qk.attention_from_inputs(h, w, None, 3)


def test_spearman_subsample_is_seeded_and_without_replacement(monkeypatch):
    """More pairs than the cap (here 300 of 672): rho is scipy's over the pairs at the sorted
    indices of numpy default_rng(0).choice(672, 300, replace=False), every pair at most once, the
    angles and head-mean attention computed directly."""
    monkeypatch.setattr(qk, "_MAX_SPEARMAN_PAIRS", 300)
    rng = np.random.default_rng(19)
    n, t = 12, 9
    h = rng.standard_normal((n, t, 6))
    attn = rng.dirichlet(np.ones(t), size=(n, 2, t))
    st = qk.angle_attention_stats(h, attn, num_prefix_tokens=1, bins=6)
    u = h[:, 1:] / np.linalg.norm(h[:, 1:], axis=-1, keepdims=True)
    off = ~np.eye(t - 1, dtype=bool)
    theta = np.degrees(np.arccos(np.clip(np.einsum("nid,njd->nij", u, u), -1, 1)))[:, off].ravel()
    a = attn.mean(axis=1)[:, 1:, 1:][:, off].ravel()
    keep = np.sort(np.random.default_rng(0).choice(theta.size, 300, replace=False))
    assert theta.size == 672 and np.unique(keep).size == 300
    assert st["spearman"] == pytest.approx(scipy.stats.spearmanr(theta[keep], a[keep]).statistic, abs=1e-12)


def test_spearman_of_angles_spanning_exactly_one_degree():
    """Patches e1, (x, 0, 1) and e2 with x chosen so that the first pair's angle computes to exactly
    91 degrees and the other two are exactly 90 (dot product 0): angles that differ by exactly one
    degree are not constant, and rho is scipy's over the 6 ordered pairs."""
    x = -0.017455064928217655  # -tan(1 degree), adjusted to give exactly 91.0
    h = np.array([[[5.0, 5.0, 5.0], [1.0, 0.0, 0.0], [x, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    attn = np.random.default_rng(20).dirichlet(np.ones(4), size=(1, 4))
    st = qk.angle_attention_stats(h, attn, num_prefix_tokens=1, bins=180)
    assert np.flatnonzero(np.isfinite(st["attention_by_angle"])).tolist() == [90, 91]
    theta = [91.0, 90.0, 91.0, 90.0, 90.0, 90.0]  # ordered pairs (1,2) (1,3) (2,1) (2,3) (3,1) (3,2)
    a = attn[0, 1:, 1:][~np.eye(3, dtype=bool)]
    assert st["spearman"] == pytest.approx(scipy.stats.spearmanr(theta, a).statistic, abs=1e-12)


def test_jackknife_angle_statistics_default_to_one_prefix_token_and_18_bins():
    rng = np.random.default_rng(21)
    h, attn = rng.standard_normal((4, 6, 4)), rng.dirichlet(np.ones(6), size=(4, 6))
    labels = np.arange(4) % 2
    got, reps = qk.jackknife_angle_attention_stats(h, attn, labels)
    want, want_reps = qk.jackknife_angle_attention_stats(h, attn, labels, num_prefix_tokens=1, bins=18)
    assert got["n_pairs"] == 4 * 5 * 4 and got["attention_by_angle"].size == 18
    np.testing.assert_array_equal(got["attention_by_angle"], want["attention_by_angle"])
    assert reps == want_reps
