"""The weights catalogue: every file a metric, method or training stage loads, in one place.

Each entry states the official source, the sha256 where it is published or carried in the
file name (the torchvision / pytorch-fid 8-hex prefix), the licence and who uses it. Metrics and
methods refer to these entries instead of declaring their own. Where no hash is published,
any file is accepted and its sha256 is recorded in every row that used it.
"""

from __future__ import annotations

from .weights import WeightsSpec

_WAV2LIP = "https://github.com/Rudrabha/Wav2Lip#getting-the-weights"
"""The official repository links its checkpoints from a README section (Google Drive / SharePoint
folders) and publishes no hashes: no automatic download."""

FID_INCEPTION = WeightsSpec(
    name="fid",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256="6726825d",
    licence="Apache-2.0 (pytorch-fid)",
    used_by="fid",
)
LPIPS_ALEX = WeightsSpec(
    name="lpips_alex",
    filename="alexnet-owt-7be5be79.pth",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256="7be5be79",
    licence="BSD-3-Clause (torchvision)",
    used_by="lpips",
)
LPIPS_VGG = WeightsSpec(
    name="lpips_vgg",
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    sha256="397923af",
    licence="BSD-3-Clause (torchvision)",
    used_by="lpips_vgg",
)
RAFT = WeightsSpec(
    name="raft",
    filename="raft_large_C_T_SKHT_V2-ff5fadd5.pth",
    url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
    sha256="ff5fadd5",
    licence="BSD-3-Clause (torchvision)",
    used_by="dme",
)
SYNCNET = WeightsSpec(
    name="syncnet",
    filename="syncnet_v2.model",
    url="http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
    sha256="",
    licence="MIT (joonson/syncnet_python)",
    used_by="lse_c, lse_d",
)
WAV2LIP = WeightsSpec(name="wav2lip", filename="wav2lip.pth", url=_WAV2LIP, sha256="", direct=False,
                      licence="research only (Wav2Lip)", used_by="wav2lip")  # fmt: skip
WAV2LIP_GAN = WeightsSpec(name="wav2lip_gan", filename="wav2lip_gan.pth", url=_WAV2LIP, sha256="", direct=False,
                          licence="research only (Wav2Lip)", used_by="wav2lip_gan")  # fmt: skip
LIPSYNC_EXPERT = WeightsSpec(name="lipsync_expert", filename="lipsync_expert.pth", url=_WAV2LIP, sha256="", direct=False,
                             licence="research only (Wav2Lip)", used_by="train stage=synthesis (sync loss)")  # fmt: skip
VGG19 = WeightsSpec(
    name="vgg19",
    filename="vgg19-dcbb9e9d.pth",
    url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    sha256="dcbb9e9d",
    licence="BSD-3-Clause (torchvision)",
    used_by="train stage=synthesis|finetune (perceptual loss)",
)
I3D = WeightsSpec(
    name="i3d",
    filename="i3d_pretrained_400.pt",
    url="https://drive.google.com/file/d/1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT",
    sha256="",
    direct=False,
    licence="Apache-2.0 (DeepMind kinetics-i3d, converted by VideoGPT, MIT)",
    used_by="fvd",
)
"""VideoGPT's `load_i3d_pretrained` downloads this Google Drive file (no hash published): a manual step."""
I3D_STYLEGANV = WeightsSpec(
    name="i3d_styleganv",
    filename="i3d_torchscript.pt",
    url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    sha256="",
    torchscript=True,
    licence="see universome/stylegan-v",
    used_by="fvd_styleganv (TorchScript: also needs weights.allow_torchscript=true)",
)
"""StyleGAN-V's TorchScript port of the TF-hub I3D, as LatentSync's eval/fvd.py loads it."""
ARCFACE = WeightsSpec(
    name="arcface",
    filename="ms1mv3_arcface_r100_fp16_backbone.pth",
    url="https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch#model-zoo",
    sha256="",
    direct=False,
    licence="non-commercial research (insightface model zoo)",
    used_by="csim, csim_fullframe",
)
"""arcface_torch's `ms1mv3_arcface_r100_fp16/backbone.pth` (OneDrive / Baidu links, no hash published): a manual step."""

_STSA = "https://github.com/SCAILab-USTC/STSA"
"""The paper: "Pre-trained weights and inference code are available at" this repository (no hashes published)."""
STSA_HEATMAP = WeightsSpec(name="stsa_heatmap", filename="heatmap_weight.pth", url=_STSA, sha256="", direct=False,
                           licence="see the STSA repository", used_by="stsa (stsa.heatmap_ckpt)")  # fmt: skip
STSA_RENDERER = WeightsSpec(name="stsa_renderer", filename="face_weight.pth", url=_STSA, sha256="", direct=False,
                            licence="see the STSA repository", used_by="stsa (stsa.renderer_ckpt)")  # fmt: skip
WAV2VEC2 = WeightsSpec(
    name="wav2vec2",
    filename="wav2vec2-base-960h",
    url="https://huggingface.co/facebook/wav2vec2-base-960h",
    sha256="",
    licence="Apache-2.0 (facebook/wav2vec2-base-960h)",
    used_by="stsa (stsa.wav2vec2), train",
    hf_repo="facebook/wav2vec2-base-960h",
    hf_revision="22aad52d435eb6dbaf354bdad9b0da84ce7d6156",
    hf_files=("config.json", "preprocessor_config.json", "pytorch_model.bin"),
)

CATALOGUE: dict[str, WeightsSpec] = {
    s.name: s
    for s in (FID_INCEPTION, LPIPS_ALEX, LPIPS_VGG, RAFT, SYNCNET, I3D, I3D_STYLEGANV, ARCFACE, WAV2LIP, WAV2LIP_GAN, LIPSYNC_EXPERT, VGG19,
              STSA_HEATMAP, STSA_RENDERER, WAV2VEC2)
}  # fmt: skip
"""Every catalogued file by its setting name (`weights.<name>=PATH`)."""
