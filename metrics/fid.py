"""FID: pytorch-fid's InceptionV3 pool3 features, Frechet distance in float64, pooled over a set."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from stsa_bench.core import catalogue
from stsa_bench.core.registry import METRICS
from stsa_bench.core.weights import WeightsMissing, load_state_dict

from .base import EvalPair, PooledFeatures, distinct_frames, match_frames, to_nchw

FID_WEIGHTS = catalogue.FID_INCEPTION
FC_KEYS = ("fc.weight", "fc.bias")


@contextmanager
def _local_weights(state_dict: Mapping[str, Any]):
    """Let pytorch-fid build its FID Inception from `state_dict` instead of downloading it."""
    import pytorch_fid.inception as inception

    original = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = lambda *a, **k: state_dict
    try:
        yield
    finally:
        inception.load_state_dict_from_url = original


def build_inception(path: Path, device: str = "cpu"):
    """pytorch-fid InceptionV3([pool3], resize_input=True, normalize_input=True, use_fid_inception=True).

    Accepts the official file or a conv/BN-only copy: only `fc.*` (unused for pool3) may be missing.
    """
    import torch
    from pytorch_fid.inception import InceptionV3

    sd = load_state_dict(path)
    missing = [k for k in FC_KEYS if k not in sd]
    if missing:
        sd = dict(sd)
        sd["fc.weight"] = torch.zeros(1008, 2048)
        sd["fc.bias"] = torch.zeros(1008)
    try:
        with _local_weights(sd):
            model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True)
    except RuntimeError as exc:
        raise WeightsMissing(f"{path}: not the FID Inception weights ({' '.join(str(exc).split())[:200]})") from exc
    return model.eval().to(device)


def inception_features(
    model, frames: np.ndarray, device: str, batch_size: int = 50, on_device: Any = None, known: tuple | None = None
) -> np.ndarray:
    """(N, 2048) float32 pool3 activations of RGB uint8 frames (N, H, W, 3); pytorch-fid's
    get_activations on in-memory images (ToTensor scaling to [0, 1], its own 299x299 bilinear resize).
    Identical frames (a frozen output) go through the network once; with `known` = (frames, features) of
    another set (the ground truth), a frame byte-identical to one of them takes its features (a shifted or
    partly copied output). `on_device`: the same frames already moved to the device (`EvalPair.crops_on`),
    batches are taken from there."""
    import torch

    def take(idx: np.ndarray):
        if on_device is None or isinstance(on_device, np.ndarray):
            return frames[idx]
        return on_device[torch.from_numpy(idx).to(on_device.device)]

    first, inverse = distinct_frames(frames)
    out = np.empty((len(first), 2048), dtype=np.float32)
    found = np.full(len(first), -1)
    if known is not None:
        found = match_frames(frames[first], known[0])
        out[found >= 0] = known[1][found[found >= 0]]
    todo = np.flatnonzero(found < 0)
    with torch.inference_mode():
        for i in range(0, len(todo), batch_size):
            rows = todo[i : i + batch_size]
            out[rows] = model(to_nchw(take(first[rows]), device))[0].squeeze(-1).squeeze(-1).cpu().numpy()
    return out if len(first) == len(frames) else out[inverse]


RESOLUTION = 1e-12
"""Relative resolution of a Frechet distance in float64: smaller values are rounding (returned as 0)."""


def frechet_distance(a: np.ndarray, b: np.ndarray, device: str = "cpu") -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr sqrt(S_a S_b), mu and S (np.cov, rowvar=False) in float64.

    pytorch-fid's definition, without scipy's Schur sqrtm. With fewer samples than features
    (S = A^T A, A the centred rows / sqrt(n - 1)): Tr sqrt(S_a S_b) = sum of the singular values of
    A_a A_b^T, since S_a S_b and (A_a A_b^T)(A_a A_b^T)^T share their non-zero eigenvalues: an
    n_a x n_b problem instead of d x d. Otherwise sum sqrt(eig(L^T S_b L)) with S_a = L L^T (Cholesky,
    or L = S_a^1/2 by eigh when S_a is singular). Both are equal to scipy's within 1e-7 relative
    (tested) and run on the GPU when one is there. The result is a squared distance: a value within the
    float64 rounding of its terms (`RESOLUTION` of Tr S_a + Tr S_b; about 1e-13 for a set against itself or a
    reordering of it) is returned as 0.
    """
    import torch

    x_a = torch.from_numpy(np.asarray(a, dtype=np.float64)).to(device)
    x_b = torch.from_numpy(np.asarray(b, dtype=np.float64)).to(device)
    mu_a, mu_b = x_a.mean(0), x_b.mean(0)
    c_a = (x_a - mu_a) / (len(x_a) - 1) ** 0.5
    c_b = (x_b - mu_b) / (len(x_b) - 1) ** 0.5
    tr_a, tr_b = (c_a * c_a).sum().item(), (c_b * c_b).sum().item()
    if min(len(x_a), len(x_b)) < x_a.shape[1]:
        tr_covmean = torch.linalg.svdvals(c_a @ c_b.T).sum().item()
    else:
        s_a, s_b = c_a.T @ c_a, c_b.T @ c_b
        left, info = torch.linalg.cholesky_ex(s_a)
        if int(info) != 0:
            w, v = torch.linalg.eigh(s_a)
            left = v * w.clamp(min=0).sqrt()
        tr_covmean = torch.linalg.eigvalsh(left.T @ s_b @ left).clamp(min=0).sqrt().sum().item()
    diff = mu_a - mu_b
    value = float((diff @ diff).item() + tr_a + tr_b - 2.0 * tr_covmean)
    return value if value > RESOLUTION * (tr_a + tr_b) else 0.0


@METRICS.register("fid")
class FID(PooledFeatures):
    """Frechet Inception Distance of all generated face crops vs all ground-truth face crops (pooled over clips)."""

    higher_is_better = False
    group = "Visual Quality"
    WEIGHTS = (FID_WEIGHTS,)

    def protocol_fields(self) -> tuple[str, ...]:
        return ("inception-pool3", "resize299-bilinear", "pooled")

    def model(self):
        return self.lazy_weights(FID_WEIGHTS, lambda path: build_inception(path, self.device))

    def update_pair(self, pair: EvalPair) -> None:
        """The ground truth's features come from the cache; a method that returns them unchanged reuses them."""
        gt = self._gt_features(pair)
        if pair.pred_is_gt:
            self.add(gt, gt)
        else:
            on_device, known = pair.crops_on(self.device)[0], (pair.gt_crops, gt)
            self.add(inception_features(self.model(), pair.pred_crops, self.device, on_device=on_device, known=known), gt)

    def _gt_features(self, pair: EvalPair) -> np.ndarray:
        """Ground-truth features, cached by clip content + protocol + weights."""
        self.model()

        def compute() -> np.ndarray:
            return inception_features(self.model(), pair.gt_crops, self.device, on_device=pair.crops_on(self.device)[1])

        return self.cached_ground_truth(pair, "fid-gt", compute)

    def compute(self) -> float:
        if self.count < 2:
            raise ValueError(f"fid needs at least 2 frames, got {self.count}")
        return frechet_distance(np.concatenate(self.pred), np.concatenate(self.target), self.device)

    def exchange(self, a, b):
        return exchange_engine(a, b)


def exchange_engine(a, b) -> FrechetExchange:
    """FrechetExchange over two methods' per-clip PooledFeatures states of the same clips (their targets agree)."""
    return FrechetExchange([s["pred"] for s in a], [s["pred"] for s in b], np.concatenate([s["target"] for s in a]))


class FrechetExchange:
    """value(A') - value(B') for the Frechet distances of two methods' per-clip feature rows to one fixed reference,
    when A' and B' exchange the clips where a mask is True: the exchange test's statistic without recomputing the
    reference. With the reference covariance S_r = L L^T, Tr sqrt(S S_r) is the sum of the square roots of the
    eigenvalues of L^T S L, the covariance of the rows y = x L; each draw updates Gram matrices of y by the swapped
    clips' rows and takes two eigvalsh. float32 Grams and eigenvalues: a test statistic needs the same computation
    for the observed and the exchanged sets, not float64 (the reported difference comes from the rows)."""

    def __init__(self, a: list[np.ndarray], b: list[np.ndarray], reference: np.ndarray):
        ref = np.asarray(reference, dtype=np.float64)
        cov_r = np.cov(ref, rowvar=False)
        try:
            left = np.linalg.cholesky(cov_r)
        except np.linalg.LinAlgError:
            w, v = np.linalg.eigh(cov_r)
            left = v * np.sqrt(np.clip(w, 0, None))
        self.tr_r, self.mu_r, self.n = float(np.trace(cov_r)), ref.mean(0), sum(len(x) for x in a)
        self.owner = np.concatenate([np.full(len(x), i) for i, x in enumerate(a)])
        self.y, self.gram, self.sums, self.ysums, self.sq = [], [], [], [], []
        for side in (a, b):
            raw = [np.asarray(x, dtype=np.float64) for x in side]
            y = (np.concatenate(raw) @ left).astype(np.float32)
            self.y.append(y)
            self.gram.append(y.T @ y)
            self.sums.append(np.stack([x.sum(0) for x in raw]))
            self.ysums.append(np.stack([y[self.owner == i].sum(0, dtype=np.float64) for i in range(len(side))]))
            self.sq.append(np.array([float((x * x).sum()) for x in raw]))

    def _distance(self, gram, s, ys, sq) -> float:
        from scipy.linalg import eigh

        n = self.n
        mu, mu_y = s / n, (ys / n).astype(np.float32)
        cov_y = (gram - n * np.outer(mu_y, mu_y)) / np.float32(n - 1)
        tr = (sq - n * float(mu @ mu)) / (n - 1)
        eig = eigh(cov_y, eigvals_only=True, overwrite_a=True, check_finite=False)
        diff = mu - self.mu_r
        return float(diff @ diff + tr + self.tr_r - 2.0 * np.sqrt(np.clip(eig, 0, None), dtype=np.float64).sum())

    def __call__(self, mask: np.ndarray) -> float:
        clips = np.asarray(mask, dtype=bool)
        rows = clips[self.owner]
        swap = [y[rows] for y in self.y]
        g = [y.T @ y for y in swap]
        out = []
        for me, other in ((0, 1), (1, 0)):
            out.append(self._distance(
                self.gram[me] - g[me] + g[other],
                self.sums[me].sum(0) - self.sums[me][clips].sum(0) + self.sums[other][clips].sum(0),
                self.ysums[me].sum(0) - self.ysums[me][clips].sum(0) + self.ysums[other][clips].sum(0),
                float(self.sq[me].sum() - self.sq[me][clips].sum() + self.sq[other][clips].sum()),
            ))  # fmt: skip
        return out[0] - out[1]
