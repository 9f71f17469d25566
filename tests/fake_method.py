"""A stand-in for a third-party method's inference CLI (used by tests/test_external*.py).

It records how it was called (argv, cwd, interpreter) in `<checkout>/calls.jsonl` and writes an
output video where and how the real method documents it: same frames with the lower half
inverted, with that method's frame count, size and file naming. FAKE_MODE=fail exits 3 with a
traceback on stderr; FAKE_MODE=sleep hangs; FAKE_MODE=silent exits 0 writing nothing.

Wav2Lip and IP-LAP behave as their real code does (found by running it, docs/methods.md): frames go
through OpenCV into an AVI in a scratch folder relative to the working directory (Wav2Lip's
`temp/result.avi`, which must exist: OpenCV writes nothing otherwise), then one shell string
`ffmpeg -y -i {audio} -i {avi} -strict -2 -q:v 1 {outfile}` muxes it (a space in a name splits the
string, `$` expands) and its exit status is ignored; Wav2Lip loads its S3FD file (next to its code)
unless given `--box`. FAKE_BARRIER=<folder>,<n> holds each process between writing its AVI and muxing
it until n processes have written theirs (concurrent jobs that surely overlap).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

METHOD = os.environ["FAKE_METHOD"]
CHECKOUT = Path(os.environ["FAKE_CHECKOUT"])


def arg(name: str) -> str:
    return sys.argv[sys.argv.index(name) + 1]


def dubbed(video: str) -> tuple[np.ndarray, int]:
    from stsa_bench.core.media import decode_video

    frames, _ = decode_video(Path(video), 25)
    out = frames.copy()
    out[:, out.shape[1] // 2 :] = 255 - out[:, out.shape[1] // 2 :]
    return out, len(frames)


def save(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    from stsa_bench.core.media import write_video

    write_video(path, frames, fps, np.zeros(len(frames) * 640, np.float32), lossless=False)


def via_avi_and_shell_ffmpeg(frames: np.ndarray, avi: str, audio: str, outfile: str) -> None:
    import cv2

    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(avi, cv2.VideoWriter_fourcc(*"DIVX"), 25, (w, h))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    barrier = os.environ.get("FAKE_BARRIER")
    if barrier:  # "<folder>,<n>": wait until n processes have written their AVI
        folder, n = barrier.rsplit(",", 1)
        Path(folder, str(os.getpid())).touch()
        deadline = time.time() + 60
        while len(os.listdir(folder)) < int(n) and time.time() < deadline:
            time.sleep(0.05)
    command = f"ffmpeg -y -i {audio} -i {avi} -strict -2 -q:v 1 {outfile}"
    subprocess.call(command, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    with open(CHECKOUT / "calls.jsonl", "a") as f:
        f.write(
            json.dumps({"argv": [os.environ["FAKE_ARGV0"], *sys.argv[1:]], "cwd": os.getcwd(), "python": sys.executable, "method": METHOD})
            + "\n"
        )
    mode = os.environ.get("FAKE_MODE", "ok")
    if mode == "fail":
        print("Loading model...\r 10%|#         |\r 50%|#####     |", file=sys.stderr)
        print('Traceback (most recent call last):\n  File "inference.py", line 1\nRuntimeError: CUDA out of memory', file=sys.stderr)
        sys.exit(3)
    if mode == "sleep":
        time.sleep(120)
    if mode == "silent":
        return
    if METHOD == "wav2lip_official":
        if "--box" in sys.argv and arg("--box") != "-1":
            print("Using the specified bounding box instead of face detection...")
        else:
            detector = Path(os.path.realpath(os.environ["FAKE_ARGV0"])).parent / "face_detection/detection/sfd/s3fd.pth"
            detector.read_bytes()
        frames, n = dubbed(arg("--face"))
        via_avi_and_shell_ffmpeg(frames[: n - 3], "temp/result.avi", arg("--audio"), arg("--outfile"))
    elif METHOD == "dinet":
        video = arg("--source_video_path")
        rows = Path(arg("--source_openface_landmark_path")).read_text().splitlines()
        frames, n = dubbed(video)
        assert len(rows) == n + 1 and len(rows[1].split(", ")) == 5 + 136, "landmark CSV does not match the video"
        out_dir = Path(arg("--res_video_dir"))
        os.mkdir(out_dir)
        save(out_dir / f"{Path(video).name[:-4]}_facial_dubbing_add_audio.mp4", frames)
    elif METHOD == "iplap":
        video = arg("--input")
        frames, n = dubbed(video)
        out_dir = arg("--output_dir")
        temp = "tempfile_of_{}".format(out_dir.split("/")[-1])
        os.makedirs(out_dir, exist_ok=True)
        os.makedirs(temp, exist_ok=True)
        sketch = np.zeros_like(frames)
        outfile = os.path.join(out_dir, Path(video).name[:-4] + "result_N_25_Nl_15.mp4")
        via_avi_and_shell_ffmpeg(np.concatenate([sketch, frames], axis=2), f"{temp}/result.avi", arg("--audio"), outfile)
    elif METHOD == "talklip":
        frames, n = dubbed(arg("--video_path"))
        save(Path(arg("--save_path") + ".mp4"), frames)
    elif METHOD == "musetalk":
        from omegaconf import OmegaConf

        name = arg("--output_vid_name") if "--output_vid_name" in sys.argv else None
        for task_id, task in OmegaConf.load(arg("--inference_config")).items():
            try:
                if task_id in os.environ.get("FAKE_FAIL_TASKS", "").split(","):
                    raise RuntimeError(f"{task_id} failed")
                name = task.get("result_name", name)
                frames, n = dubbed(task["video_path"])
                save(
                    Path(arg("--result_dir"))
                    / arg("--version")
                    / (name or f"{Path(task['video_path']).stem}_{Path(task['audio_path']).stem}.mp4"),
                    frames,
                )
            except Exception as exc:  # MuseTalk catches each task's error, prints it and goes on
                print(f"Error occurred during processing: {exc}", file=sys.stderr)
    elif METHOD == "pcavs":
        import cv2

        for line in Path(arg("--meta_path_vox")).read_text().splitlines():
            try:  # PC-AVS's inference.py prints each line's error and goes on
                id_dir, _, pose_dir, n, audio, *_ = line.split()
                crops = [cv2.imread(str(p))[..., ::-1] for p in sorted(Path(pose_dir).glob("*.jpg"))]
                assert len(crops) == int(n) and crops[0].shape == (224, 224, 3)
                assert len(list(Path(id_dir).glob("*.jpg"))) == 1, "one identity image: PC-AVS shuffles a folder's unseeded"
                out = np.stack(crops)
                out[:, 112:] = 255 - out[:, 112:]
                name = f"id_{Path(id_dir).name}_pose_{Path(pose_dir).name}_audio_{Path(audio).name[:-4]}"
                save(Path("results") / name / "G_Pose_Driven_.mp4", out[:-4])
            except Exception as exc:
                print(f"{line}\n{exc}", file=sys.stderr)
    elif METHOD == "latentsync":
        frames, n = dubbed(arg("--video_path"))
        save(Path(arg("--video_out_path")), frames)
    else:
        raise SystemExit(f"unknown fake method {METHOD}")


if __name__ == "__main__":
    main()
