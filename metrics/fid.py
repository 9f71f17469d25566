"""FID: pytorch-fid's InceptionV3 pool3 features, Frechet distance in float64, pooled over a set."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stsa_bench.core import catalogue
from stsa_bench.core.registry import METRICS
from stsa_bench.core.weights import WeightsMissing, load_state_dict

from .base import EvalPair, PooledFeatures, distinct_frames, to_nchw

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


def inception_features(model, frames: np.ndarray, device: str, batch_size: int = 50) -> np.ndarray:
    """(N, 2048) float32 pool3 activations of RGB uint8 frames (N, H, W, 3); pytorch-fid's
    get_activations on in-memory images (ToTensor scaling to [0, 1], its own 299x299 bilinear resize).
    Identical frames (a frozen output) go through the network once."""
    import torch

    first, inverse = distinct_frames(frames)
    out = np.empty((len(first), 2048), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(first), batch_size):
            x = to_nchw(frames[first[i : i + batch_size]], device)
            out[i : i + len(x)] = model(x)[0].squeeze(-1).squeeze(-1).cpu().numpy()
    return out if len(first) == len(frames) else out[inverse]


def frechet_distance(a: np.ndarray, b: np.ndarray, device: str = "cpu") -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr sqrt(S_a S_b), mu and S (np.cov, rowvar=False) in float64.

    pytorch-fid's definition. Tr sqrt(S_a S_b) = sum sqrt(eig(L^T S_b L)) with S_a = L L^T (Cholesky), or
    with L = S_a^1/2 from a symmetric eigendecomposition when S_a is singular (fewer frames than
    features); both replace scipy's Schur sqrtm, are equal to it within 1e-7 relative (tested), and run
    batched on the GPU when one is there. The result is a squared distance: rounding below 0 (about
    -1e-4 for identical sets) is returned as 0.
    """
    import torch

    mu_a, mu_b = a.mean(axis=0, dtype=np.float64), b.mean(axis=0, dtype=np.float64)
    s_a = torch.from_numpy(np.cov(a, rowvar=False)).to(device)
    s_b = torch.from_numpy(np.cov(b, rowvar=False)).to(device)
    left, info = torch.linalg.cholesky_ex(s_a)
    if int(info) != 0:
        w, v = torch.linalg.eigh(s_a)
        left = v * w.clamp(min=0).sqrt()
    tr_covmean = torch.linalg.eigvalsh(left.T @ s_b @ left).clamp(min=0).sqrt().sum().item()
    diff = mu_a - mu_b
    return max(0.0, float(diff @ diff + torch.trace(s_a).item() + torch.trace(s_b).item() - 2.0 * tr_covmean))


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
        self.add(gt if pair.pred_is_gt else inception_features(self.model(), pair.pred_crops, self.device), gt)

    def _gt_features(self, pair: EvalPair) -> np.ndarray:
        """Ground-truth features, cached by clip content + protocol + weights."""
        self.model()
        return self.cached_ground_truth(pair, "fid-gt", lambda: inception_features(self.model(), pair.gt_crops, self.device))

    def compute(self) -> float:
        if self.count < 2:
            raise ValueError(f"fid needs at least 2 frames, got {self.count}")
        return frechet_distance(np.concatenate(self.pred), np.concatenate(self.target), self.device)
