"""Lets official code that hard-codes CUDA run on a CPU, without touching its files: put this folder on the job's
PYTHONPATH (`+<method>.env.PYTHONPATH=<this folder>`). A smoke-test aid (docs/methods.md), not a way to score.

- torch.Tensor.cuda and torch.nn.Module.cuda return the object unchanged;
- face_alignment.FaceAlignment(device="cuda...") runs on the CPU;
- with FA_MAX_FACES=N, face_alignment keeps its N best S3FD boxes (formula S3FD weights find dozens of "faces" per
  frame, and face_alignment runs its FAN once per box).
"""

import os

if os.environ.get("CPU_SHIM", "1") != "0":
    import torch

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    try:
        import face_alignment

        _init = face_alignment.FaceAlignment.__init__

        def _cpu_init(self, *args, **kwargs):
            if "cuda" in str(kwargs.get("device", "")):
                kwargs["device"] = "cpu"
            return _init(self, *args, **kwargs)

        face_alignment.FaceAlignment.__init__ = _cpu_init
        if os.environ.get("FA_MAX_FACES"):
            from face_alignment.detection.sfd import sfd_detector

            _detect, _keep = sfd_detector.SFDDetector.detect_from_image, int(os.environ["FA_MAX_FACES"])

            def _best(self, *args, **kwargs):
                return sorted(_detect(self, *args, **kwargs), key=lambda box: -float(box[-1]))[:_keep]

            sfd_detector.SFDDetector.detect_from_image = _best
    except ImportError:
        pass
