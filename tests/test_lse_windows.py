"""LSE's lip windows streamed in chunks: the windows, their reuse of ground-truth embeddings and their scores equal
the whole-clip route for every chunk size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.base import frame_digest
from metrics.lse import LipWindows
from stsa_bench.core.frames import ArrayFrames, map_chunks


def window_digests(frames_bgr: np.ndarray) -> np.ndarray:
    """(T - 4, 80) uint8: the digests of frames v..v+4 side by side, one row per window v (written out here, apart
    from LipWindows, as the test's reference)."""
    d = np.stack([np.frombuffer(frame_digest(f), np.uint8) for f in frames_bgr])
    n = len(d) - 4
    return np.concatenate([d[t : t + n] for t in range(5)], axis=1)


class RecordingNet:
    """A stand-in for FastSyncNet whose embeddings depend on the batch a window went through (like float kernels),
    and which records every batch."""

    def __init__(self):
        self.batches: list[bytes] = []

    def lip_windows(self, x):

        self.batches.append(x.numpy().tobytes())
        m = len(x) - 4
        means = x.float().flatten(1).mean(1)
        return torch.stack([means[i : i + 5] for i in range(m)]) + len(x) * 1e-3


@pytest.mark.parametrize("chunk", [1, 2, 5, 7, 64])
def test_lip_windows_streamed_in_chunks_equal_the_whole_clip(chunk):
    """Windows streamed chunk by chunk go through the network in the very batches of the whole-clip computation
    (runs of windows that are neither the ground truth's nor repeats, `batch` from each run's first), take the same
    embeddings, and the stream keeps at most batch + 3 frames between chunks."""
    from metrics.lse import reusing_lip_embeddings

    rng = np.random.default_rng(3)
    gt = rng.integers(0, 255, (30, 6, 6, 3), np.uint8)
    own = rng.integers(0, 255, (12, 6, 6, 3), np.uint8)
    video = np.concatenate([gt[:9], own[:7], np.repeat(own[7:8], 8, axis=0), gt[15:27], own[8:]])
    known = (window_digests(gt), rng.normal(size=(26, 5)).astype(np.float32))
    n = len(video) - 6
    whole_net, net = RecordingNet(), RecordingNet()
    want = reusing_lip_embeddings(whole_net, video, n, 4, "cpu", known)
    stream = LipWindows(lambda: net, n, 4, known=known)
    kept = []

    def fn(c, s):
        part = stream(c, s)
        kept.append(len(stream.frames))
        return part

    got = stream.assemble(map_chunks(ArrayFrames(video), chunk, fn))
    assert net.batches == whole_net.batches and len(net.batches) >= 3
    digests, first, todo = window_digests(video), {}, []
    for v in range(n):
        key = digests[v].tobytes()
        if not (known[0] == digests[v]).all(1).any() and key not in first:
            first[key] = v
            todo.append(v)
    runs = np.split(np.array(todo), np.flatnonzero(np.diff(todo) != 1) + 1)
    expected = [video[r[i] : r[min(i + 4, len(r)) - 1] + 5].tobytes() for r in runs for i in range(0, len(r), 4)]
    assert net.batches == expected, "runs of new windows, 4 at a time from each run's first"
    assert np.array_equal(got.numpy(), want.numpy())
    assert max(kept) <= 4 + 3
    hits = [i for i in range(n) if (window_digests(video)[i] == known[0]).all(1).any()]
    assert len(hits) >= 13 and all(np.array_equal(got[i].numpy(), known[1][(known[0] == window_digests(video)[i]).all(1)][-1]) for i in hits)
