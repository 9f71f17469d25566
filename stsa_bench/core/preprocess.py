"""The paper's preprocessing, cached per clip by content.

decode (25 fps, 16 kHz mono) -> FaceMesh landmarks -> square face box from the landmark
extent, missing frames interpolated, Gaussian-smoothed over time -> 128x128 face crops.
Cache entry key = clip sha256 + preprocessing parameters + version + backend versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .arrays import NpyRows
from .config import PREP_VERSION, PreprocessConfig
from .errors import ClipError
from .frames import STREAM_CHUNK
from .paths import build_dir_atomically, cache_key, entry_dir
from .suites import Clip
from .timing import NullTimer, StageTimer

if TYPE_CHECKING:
    from .frames import Frames


AUDIO_LEAD_NOTE_S = 0.005
"""Silence put before a late audio stream is noted in the rows from this many seconds on."""


@dataclass
class Prepared:
    """A clip after preprocessing. `boxes` rows are (cx, cy, side) in pixels."""

    clip: Clip
    n_frames: int
    width: int
    height: int
    audio: np.ndarray
    landmarks: np.ndarray
    has_face: np.ndarray
    boxes: np.ndarray
    crops: np.ndarray
    meta: dict

    @property
    def n_face(self) -> int:
        return int(self.has_face.sum())

    @property
    def note(self) -> str | None:
        """What the rows of this clip should say about its input: frames without a face (box
        interpolated), declared frames the decoder did not get, frames turned upright, audio that starts late, an
        audio stream chosen among several, audio upsampled from a lower rate or downmixed from more than two channels."""
        notes = []
        if self.n_face < self.n_frames:
            notes.append(f"no face in {self.n_frames - self.n_face} of {self.n_frames} frames (box interpolated)")
        declared, got = self.meta.get("declared_frames") or 0, self.meta.get("src_frames") or 0
        if declared > got:
            notes.append(f"{declared - got} of the {declared} frames the container declares are missing")
        if self.meta.get("upright"):
            notes.append(f"frames {self.meta['upright']} for display, as the video's display matrix says")
        if (self.meta.get("audio_lead_s") or 0.0) >= AUDIO_LEAD_NOTE_S:
            notes.append(f"audio starts {self.meta['audio_lead_s']:.2f} s after the video (silence before it)")
        if (self.meta.get("audio_streams") or 1) > 1:
            notes.append(f"audio from the first of {self.meta['audio_streams']} audio streams")
        if 0 < (self.meta.get("audio_rate") or 0) < self.meta.get("sample_rate", 0):
            notes.append(f"audio upsampled from {self.meta['audio_rate']} Hz to {self.meta['sample_rate']} Hz (it lacks the band above {self.meta['audio_rate'] // 2} Hz)")
        if (self.meta.get("audio_channels") or 0) > 2:
            notes.append(f"audio downmixed from {self.meta['audio_channels']} channels to mono")
        short = (self.meta.get("video_s") or 0.0) - (self.meta.get("audio_s") or 0.0)
        if self.n_frames and short > self.meta["video_s"] / self.n_frames:
            notes.append(f"audio {short:.2f} s shorter than the video (padded with silence)")
        return "; ".join(notes) or None


def prep_key(clip: Clip, cfg: PreprocessConfig) -> str:
    import av

    from .faces import backend_version
    from .media import DECODE_VERSION

    params = {"pp": cfg.params(), "backend": backend_version(), "av": av.__version__, "decode": DECODE_VERSION}
    return cache_key("prep", content=[clip.sha256], params=params, version=PREP_VERSION)


def load_media(clip: Clip, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames at cfg.fps and audio at cfg.sample_rate trimmed/padded to exactly n_frames (the whole clip in memory)."""
    from .media import decode_video

    frames, info = decode_video(clip.video, cfg.fps, cfg.fps_mode)
    check_frames(clip, len(frames), cfg)
    audio, meta = load_audio(clip, cfg, len(frames), info)
    return frames, audio, meta


def check_frames(clip: Clip, n: int, cfg: PreprocessConfig) -> None:
    if n < cfg.min_frames:
        raise ClipError(f"{clip.video}: {n} frame(s) at {cfg.fps} fps, need at least {cfg.min_frames} (preprocess.min_frames)")


def load_audio(clip: Clip, cfg: PreprocessConfig, n: int, info) -> tuple[np.ndarray, dict]:
    """Audio at cfg.sample_rate trimmed/padded to exactly n frames, and the clip's media facts.

    Audio and video may differ in length by at most cfg.max_av_mismatch_s; beyond that the
    clip fails with both lengths in the reason.
    """
    from .media import audio_source, read_audio

    audio_path = clip.audio or clip.video
    audio, lead_s = read_audio(audio_path, cfg.sample_rate, max_lead_s=n / cfg.fps + cfg.max_av_mismatch_s)
    video_s, audio_s = n / cfg.fps, len(audio) / cfg.sample_rate
    if abs(audio_s - video_s) > cfg.max_av_mismatch_s:
        raise ClipError(
            f"{audio_path}: audio lasts {audio_s:.2f} s but the video {video_s:.2f} s "
            f"(differ by more than preprocess.max_av_mismatch_s={cfg.max_av_mismatch_s})"
        )
    want = n * cfg.sample_rate // cfg.fps
    audio = np.pad(audio[:want], (0, max(0, want - len(audio))))
    meta = {
        "src_fps": info.src_fps,
        "src_frames": info.src_frames,
        "declared_frames": info.declared_frames,
        **dict(zip(("audio_streams", "audio_rate", "audio_channels"), audio_source(audio_path))),
        "variable_rate": info.variable_rate,
        "upright": info.upright,
        "video_s": video_s,
        "audio_s": audio_s,
        "audio_lead_s": lead_s,
        "sample_rate": cfg.sample_rate,
    }
    return audio, meta


def face_boxes(landmarks: np.ndarray, has_face: np.ndarray, width: int, height: int, scale: float, sigma: float) -> np.ndarray:
    """(cx, cy, side) per frame: landmark extent squared and scaled, gaps interpolated, smoothed."""
    return smooth_boxes(raw_boxes(landmarks, has_face, width, height, scale), has_face, sigma)


def raw_boxes(landmarks: np.ndarray, has_face: np.ndarray, width: int, height: int, scale: float) -> np.ndarray:
    """(cx, cy, side) float64 of each frame's landmark extent, squared and scaled; 0 rows where no face."""
    raw = np.zeros((len(landmarks), 3), dtype=np.float64)
    idx = np.flatnonzero(has_face)
    xy = landmarks[idx, :, :2].astype(np.float64) * [width, height]
    lo, hi = xy.min(axis=1), xy.max(axis=1)
    raw[idx, :2] = (lo + hi) / 2
    raw[idx, 2] = (hi - lo).max(axis=1) * scale
    return raw


def smooth_boxes(raw: np.ndarray, has_face: np.ndarray, sigma: float) -> np.ndarray:
    """`raw_boxes` with the rows without a face interpolated (held at the ends), Gaussian-smoothed over time, float32."""
    from scipy.ndimage import gaussian_filter1d

    n = len(raw)
    idx = np.flatnonzero(has_face)
    if len(idx) == 0:
        raise ValueError("no face in any frame")
    raw = raw.copy()
    for c in range(3):
        raw[:, c] = np.interp(np.arange(n), idx, raw[idx, c])
    if sigma > 0 and n > 1:
        raw = gaussian_filter1d(raw, sigma, axis=0, mode="nearest")
    return raw.astype(np.float32)


def box_pixels(cx: float, cy: float, side: float) -> tuple[int, int, int]:
    """Integer (x0, y0, s) of a square box (cx, cy, side): s = round(side) >= 1, x0 = round(cx - side / 2)."""
    return int(round(cx - side / 2)), int(round(cy - side / 2)), max(int(round(side)), 1)


def _inside(x0: int, y0: int, s: int, w: int, h: int) -> tuple[slice, slice, slice, slice] | None:
    """(frame rows, frame cols, patch rows, patch cols) where an s x s patch at (x0, y0) overlaps a w x h frame."""
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return None
    return slice(sy0, sy1), slice(sx0, sx1), slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square crops (N, size, size, 3) uint8; outside the frame is black.

    Resize: cv2 INTER_AREA when shrinking, INTER_LINEAR when enlarging.
    """
    import cv2

    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, (frame, box) in enumerate(zip(frames, boxes)):
        x0, y0, s = box_pixels(*box)
        patch = np.zeros((s, s, 3), dtype=np.uint8)
        overlap = _inside(x0, y0, s, frame.shape[1], frame.shape[0])
        if overlap:
            fy, fx, py, px = overlap
            patch[py, px] = frame[fy, fx]
        interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(patch, (size, size), interpolation=interp)
    return out


def paste_faces(frames: np.ndarray, crops: np.ndarray, boxes: np.ndarray) -> None:
    """Inverse of crop_faces, in place: each crop resized to its box and written where the box lies inside the frame."""
    import cv2

    for frame, crop, box in zip(frames, crops, boxes):
        x0, y0, s = box_pixels(*box)
        overlap = _inside(x0, y0, s, frame.shape[1], frame.shape[0])
        if overlap:
            fy, fx, py, px = overlap
            interp = cv2.INTER_AREA if crop.shape[0] > s else cv2.INTER_LINEAR
            frame[fy, fx] = cv2.resize(crop, (s, s), interpolation=interp)[py, px]


def smoothing_radius(sigma: float) -> int:
    """Frames on each side that scipy's gaussian_filter1d reads (truncate 4): int(4 sigma + 0.5)."""
    return int(4.0 * sigma + 0.5) if sigma > 0 else 0


class StreamingCropper:
    """Face crops cut while the clip is decoded, equal to `crop_faces(frames, face_boxes(...))` on the whole clip.

    The smoothed box of frame t reads the raw boxes within the Gaussian's radius r, and a raw box is
    known up to the last frame with a face (gaps are interpolated to the next face), so frame t is cut
    once a face is found at t + r or later; until then its pixels wait here. Past `max_pending` waiting
    frames (a long stretch without a face) the oldest are let go and cut by `finish` from a second read.
    Cut crops go to `sink` (the cache file) when given, else they are kept until `finish` stacks them.
    """

    def __init__(self, cfg: PreprocessConfig, width: int, height: int, max_pending: int, sink: NpyRows | None = None):
        self.cfg, self.width, self.height = cfg, width, height
        self.radius = smoothing_radius(cfg.smooth_sigma)
        self.max_pending = max(max_pending, 1)
        self.landmarks: list[np.ndarray] = []
        self.found: list[np.ndarray] = []
        self.raw: list[np.ndarray] = []
        self.last_face = -1
        self.pending: list[tuple[int, np.ndarray]] = []
        self.crops: dict[int, np.ndarray] = {}
        self.sink = sink
        self.dropped: list[int] = []
        self.n = 0

    def push(self, frames: np.ndarray, landmarks: np.ndarray, found: np.ndarray) -> None:
        self.landmarks.append(landmarks)
        self.found.append(found)
        self.raw.append(raw_boxes(landmarks, found, self.width, self.height, self.cfg.box_scale))
        self.pending.extend((self.n + i, f) for i, f in enumerate(frames))
        if found.any():
            self.last_face = self.n + int(np.flatnonzero(found)[-1])
        self.n += len(frames)
        if self.last_face >= 0:
            self._cut(upto=self.last_face - self.radius, known=self.last_face + 1)
        while len(self.pending) > self.max_pending:
            self.dropped.append(self.pending.pop(0)[0])

    def _cut(self, upto: int, known: int) -> None:
        ready = [(i, f) for i, f in self.pending if i <= upto]
        if not ready:
            return
        boxes = self.boxes(known)
        idx = [i for i, _ in ready]
        self._keep(idx, crop_faces(np.stack([f for _, f in ready]), boxes[idx], self.cfg.crop_size))
        self.pending = [(i, f) for i, f in self.pending if i > upto]

    def _keep(self, idx: list[int], crops: np.ndarray) -> None:
        if self.sink is not None:
            self.sink.write(idx, crops)
        else:
            self.crops.update(zip(idx, crops))

    def boxes(self, known: int | None = None) -> np.ndarray:
        """The smoothed boxes of frames 0..known, from the raw boxes kept per chunk (the landmarks are not re-read)."""
        raw, found = np.concatenate(self.raw)[:known], np.concatenate(self.found)[:known]
        return smooth_boxes(raw, found, self.cfg.smooth_sigma)

    def finish(self, frames: Frames | None = None) -> np.ndarray | None:
        """Every crop: the waiting frames cut with the final boxes, the let-go ones read again from `frames`;
        stacked, or (with a sink) written and the sink closed."""
        self._cut(upto=self.n, known=self.n)
        if self.dropped:
            boxes, want = self.boxes(), set(self.dropped)
            for start, chunk in frames.chunks(STREAM_CHUNK, min(want), max(want) + 1):
                idx = [start + j for j in range(len(chunk)) if start + j in want]
                self._keep(idx, crop_faces(chunk[[i - start for i in idx]], boxes[idx], self.cfg.crop_size))
        if self.sink is not None:
            self.sink.close(self.n)
            return None
        return np.stack([self.crops[i] for i in range(self.n)])


class Preprocessor:
    """Prepares clips into the cache, reusing one FaceMesh instance.

    Frames are decoded `chunk_frames` at a time (`prefetch_chunks` ahead, in a background thread). A clip
    whose frames take at most `memory_mb` is kept in memory after its first decode (decoded once); a
    longer one is read from its file again by each pass (memory bounded by a chunk, not by the clip)."""

    def __init__(
        self,
        cfg: PreprocessConfig,
        cache_dir: Path,
        timer: StageTimer | None = None,
        chunk_frames: int = 32,
        memory_mb: float = 256,
        prefetch_chunks: int = 2,
    ):
        self.cfg = cfg
        self.cache_dir = Path(cache_dir)
        self.timer = timer or NullTimer()
        self.chunk_frames, self.memory_bytes, self.prefetch_chunks = max(1, chunk_frames), memory_mb * 2**20, prefetch_chunks
        self._detector = None

    def detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FaceMesh landmarks (N, 478, 3) and found mask, with this preprocessor's settings."""
        if self._detector is None:
            from .faces import FaceMeshDetector

            c = self.cfg
            self._detector = FaceMeshDetector(c.static_image_mode, c.refine_landmarks, c.min_detection_confidence)
        return self._detector(frames)

    def entry(self, clip: Clip) -> Path:
        return entry_dir(self.cache_dir, "prep", prep_key(clip, self.cfg))

    def is_cached(self, clip: Clip) -> bool:
        return (self.entry(clip) / "meta.json").is_file()

    def prepare(self, clip: Clip) -> Prepared:
        """Load from cache, or compute and store atomically. Raises ClipError for bad input."""
        return self.prepare_with_frames(clip, keep_frames=False)[0]

    def prepare_with_frames(self, clip: Clip, keep_frames: bool = True, lazy: bool = False) -> tuple[Prepared, Frames | None]:
        """`prepare` and the clip's frames at cfg.fps: in memory when they fit `memory_mb` (a cold cache then
        decodes the clip once for both), else a source that decodes them chunk by chunk. `lazy`: a source
        unless the preparation has just decoded them, so nothing is decoded until they are read."""
        from .frames import ArrayFrames

        if clip.error:
            raise ClipError(clip.error)
        final, kept = self.entry(clip), []
        if not (final / "meta.json").is_file():
            build_dir_atomically(final, lambda tmp: kept.append(self._build(clip, tmp, keep_frames)))
        prepared = self._load(clip, final)
        if not keep_frames:
            return prepared, None
        if kept and kept[0] is not None:
            return prepared, ArrayFrames(kept[0])
        source = self.source(clip, prepared.n_frames, prepared.height, prepared.width)
        if not lazy and source.nbytes <= self.memory_bytes:
            with self.timer.stage("decode"):
                return prepared, ArrayFrames(source.read())
        return prepared, source

    def source(self, clip: Clip, n: int, height: int, width: int) -> Frames:
        """The clip's n frames, decoded again at each read."""
        from .frames import VideoFrames

        return VideoFrames(clip.video, self.cfg.fps, self.cfg.fps_mode, n, height, width)

    def _build(self, clip: Clip, tmp: Path, keep_frames: bool) -> np.ndarray | None:
        """One streaming pass: decode -> landmarks -> crops; the frames are returned when asked for and small enough."""
        from .frames import prefetch
        from .media import VideoChunks, probe_frames

        cfg = self.cfg
        stream = VideoChunks(clip.video, cfg.fps, cfg.fps_mode, self.chunk_frames)
        chunks, cropper, size = prefetch(stream, self.prefetch_chunks), None, 0
        kept: list[np.ndarray] | None = [] if keep_frames else None
        while True:
            with self.timer.stage("decode"):
                chunk = next(chunks, None)
            if chunk is None:
                break
            if cropper is None:
                h, w = chunk.shape[1:3]
                sink = NpyRows(tmp / "crops.npy", (cfg.crop_size, cfg.crop_size, 3), np.uint8)
                cropper = StreamingCropper(cfg, w, h, max(4 * self.chunk_frames, self.memory_bytes // chunk[0].nbytes), sink)
                if kept is not None and probe_frames(clip.video, cfg.fps) * chunk[0].nbytes > self.memory_bytes:
                    kept = None
            with self.timer.stage("landmarks"):
                landmarks, found = self.detect(chunk)
            with self.timer.stage("crop"):
                cropper.push(chunk, landmarks, found)
            size += chunk.nbytes
            if kept is not None and size <= self.memory_bytes:
                kept.append(chunk)
            elif kept is not None:
                kept = None
        n = cropper.n
        check_frames(clip, n, cfg)
        audio, meta = load_audio(clip, cfg, n, stream.info)
        landmarks, has_face = np.concatenate(cropper.landmarks), np.concatenate(cropper.found)
        n_face = int(has_face.sum())
        if n_face == 0:
            raise ClipError(f"{clip.video}: no face found in any of {n} frames")
        if n_face < cfg.min_face_ratio * n:
            raise ClipError(
                f"{clip.video}: face found in only {n_face} of {n} frames (preprocess.min_face_ratio={cfg.min_face_ratio})"
            )
        with self.timer.stage("crop"):
            boxes = cropper.boxes()
            cropper.finish(self.source(clip, n, h, w))
        np.save(tmp / "audio.npy", audio)
        np.save(tmp / "landmarks.npy", landmarks)
        np.save(tmp / "has_face.npy", has_face)
        np.save(tmp / "boxes.npy", boxes)
        meta.update(clip=clip.id, sha256=clip.sha256, n_frames=n, n_face=n_face, width=w, height=h, prep=cfg.params())
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        return np.concatenate(kept) if kept else None

    def _load(self, clip: Clip, final: Path) -> Prepared:
        meta = json.loads((final / "meta.json").read_text())
        return Prepared(
            clip=clip,
            n_frames=meta["n_frames"],
            width=meta["width"],
            height=meta["height"],
            audio=np.load(final / "audio.npy"),
            landmarks=np.load(final / "landmarks.npy"),
            has_face=np.load(final / "has_face.npy"),
            boxes=np.load(final / "boxes.npy"),
            crops=self._load_large(final / "crops.npy"),
            meta=meta,
        )

    def _load_large(self, path: Path) -> np.ndarray:
        """The array in memory when it fits `memory_mb`, else mapped from the cache file (copy-on-write)."""
        return np.load(path, mmap_mode="c" if path.stat().st_size > self.memory_bytes else None)

    def spill(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An array to fill, held in memory when it fits `memory_mb`, else mapped from a temporary file (`spill_array`)."""
        from .arrays import spill_array

        return spill_array(shape, dtype, self.memory_bytes, self.cache_dir / "tmp")

    def frames(self, clip: Clip) -> np.ndarray:
        """The clip's frames at cfg.fps, all in memory (decoded again: cheaper than caching raw frames)."""
        from .media import decode_video

        with self.timer.stage("decode"):
            return decode_video(clip.video, self.cfg.fps, self.cfg.fps_mode)[0]

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None
