"""`stsa-bench weights`: resumable, verified downloads from a local HTTP server, the lock file of
unpublished hashes, add/verify/list, and the manual step for files without a direct link."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stsa_bench.cli import main
from stsa_bench.core import weights_store as store
from stsa_bench.core.process import huge_page_mode
from stsa_bench.core.weights import WeightsMissing, WeightsSpec


def _state_dict_bytes() -> bytes:
    """A 1 MiB weights file (a state dict of one tensor): what fetch's load check accepts."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(262144, dtype=torch.float32)}, buf)
    return buf.getvalue()


BLOB = _state_dict_bytes()
SHA = hashlib.sha256(BLOB).hexdigest()


class Server:
    """Serves BLOB at /<name>; honours Range unless `ranges` is False; `cut_after` bytes ends the next
    `cuts` responses early (the connection drops mid-file)."""

    def __init__(self):
        self.ranges, self.cut_after, self.cuts, self.requests = True, 0, 0, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.headers.get("Range"))
                if self.path.endswith("/missing.pth"):
                    self.send_error(404)
                    return
                start = 0
                if outer.ranges and self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                body = BLOB[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cuts:
                    outer.cuts -= 1
                    body = body[: outer.cut_after]
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("STSA_BENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr(store, "BACKOFF_S", 0.01)
    return tmp_path / "weights"


def spec_for(server: Server, sha256: str = SHA, name: str = "blob.pth") -> WeightsSpec:
    return WeightsSpec(name="blob", filename=name, url=f"{server.url}/{name}", sha256=sha256)


def test_a_dropped_connection_is_resumed_with_a_range_request(server, folder):
    server.cut_after, server.cuts = 300_000, 1
    path, digest = store.fetch(spec_for(server), progress=False)
    assert digest == SHA and path == folder / "blob.pth" and path.read_bytes() == BLOB
    assert server.requests == [None, "bytes=300000-"]
    assert not (folder / "blob.pth.part").exists()


def test_an_interrupted_fetch_resumes_in_the_next_invocation(server, folder):
    server.cut_after, server.cuts = 500_000, 1
    with pytest.raises(WeightsMissing, match="download failed after 1 attempts.*run the same command again to resume"):
        store.fetch(spec_for(server), progress=False, retries=0)
    assert (folder / "blob.pth.part").stat().st_size == 500_000
    store.fetch(spec_for(server), progress=False, retries=0)
    assert server.requests[-1] == "bytes=500000-" and (folder / "blob.pth").read_bytes() == BLOB


def test_a_server_without_ranges_restarts_from_zero(server, folder):
    server.ranges, server.cut_after, server.cuts = False, 100_000, 1
    store.fetch(spec_for(server), progress=False)
    assert (folder / "blob.pth").read_bytes() == BLOB


def test_a_wrong_hash_is_refused_and_deleted(server, folder):
    with pytest.raises(WeightsMissing, match=r"sha256 [0-9a-f]{16}… is not the official blob file \(deadbeef\); deleted"):
        store.fetch(spec_for(server, sha256="deadbeef"), progress=False)
    assert not (folder / "blob.pth").exists() and not (folder / "blob.pth.part").exists()


def test_http_404_is_not_retried_and_a_mirror_is_used_by_file_name(server, folder):
    with pytest.raises(WeightsMissing, match="HTTP 404"):
        store.fetch(spec_for(server, name="missing.pth"), progress=False)
    assert len(server.requests) == 1
    official = WeightsSpec(name="blob", filename="blob.pth", url="https://example.invalid/blob.pth", sha256=SHA)
    assert store.source_url(official, server.url + "/") == f"{server.url}/blob.pth"
    store.fetch(official, mirror=server.url, progress=False)
    assert (folder / "blob.pth").read_bytes() == BLOB


def test_unpublished_hashes_are_pinned_and_a_change_is_reported(server, folder, capsys):
    import stsa_bench.core.catalogue as catalogue

    spec = catalogue.SYNCNET
    folder.mkdir(parents=True)
    import torch

    torch.save({"w": torch.ones(3)}, folder / "original.pth")
    assert main(["weights", "add", "syncnet", str(folder / "original.pth")]) == 0
    lock = json.loads((folder / "weights.lock.json").read_text())
    assert lock[spec.filename]["sha256"] == hashlib.sha256((folder / spec.filename).read_bytes()).hexdigest()
    assert main(["weights", "verify"]) == 0 and "syncnet         pinned " in capsys.readouterr().out
    torch.save({"w": torch.zeros(3)}, folder / spec.filename)
    assert main(["weights", "verify"]) == 1
    out = capsys.readouterr().out
    assert "syncnet         CHANGED since pinned" in out and "1 with a problem" in out


def test_add_refuses_what_does_not_load_and_manual_entries_say_how(folder, tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["weights", "add", "wav2lip", str(tmp_path / "junk.pth")]) == 2
    assert "junk.pth: holds objects other than tensors and plain containers (or it is not a checkpoint); refused" in capsys.readouterr().err
    assert main(["weights", "add", "wav2lp", str(tmp_path / "junk.pth")]) == 2
    assert "did you mean 'wav2lip'" in capsys.readouterr().err
    assert main(["weights", "fetch", "wav2lip"]) == 1
    out = capsys.readouterr().out
    assert "no direct download; get wav2lip.pth from https://github.com/Rudrabha/Wav2Lip" in out and "weights add wav2lip PATH" in out


def test_list_names_what_a_run_needs(folder, capsys):
    assert main(["weights", "list", "--methods", "gt,stsa", "--metrics", "fid,lse_c"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["fid", "syncnet", "stsa_heatmap", "stsa_renderer", "wav2vec2"]
    assert main(["weights", "list", "--metrics", "fdi"]) == 2


def test_hugging_face_entries_go_through_the_hub_at_a_pinned_revision(folder, monkeypatch):
    from stsa_bench.core.catalogue import WAV2VEC2

    calls = []

    def fake_snapshot(repo, revision, allow_patterns, local_dir):
        calls.append((repo, revision, tuple(allow_patterns)))
        from pathlib import Path

        for name in allow_patterns:
            (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(local_dir) / name).write_text(name)
        return local_dir

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    path, digest = store.fetch(WAV2VEC2)
    assert calls == [("facebook/wav2vec2-base-960h", WAV2VEC2.hf_revision, WAV2VEC2.hf_files)] and len(WAV2VEC2.hf_revision) == 40
    assert path == folder / "wav2vec2-base-960h" and store.status(WAV2VEC2).verdict.startswith("pinned")


def test_doctor_says_whether_a_run_can_go(folder, tmp_path, cache_dir, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("STSA_BENCH_LRS2_ROOT", raising=False)
    base = ["doctor", "--suite", "demo", f"cache_dir={cache_dir}", "--methods", "gt"]
    assert main([*base, "--metrics", "psnr,ssim"]) == 0
    out = capsys.readouterr().out
    assert "the run can go." in out and "torch " in out and "3 of 3 clips readable" in out and "GB free" in out
    assert f"huge pages {huge_page_mode()}; THP_MEM_ALLOC_ENABLE=" in out and "GOMP_SPINCOUNT=" in out
    assert main([*base, "--metrics", "psnr,fid,lse_c"]) == 1
    out = capsys.readouterr().out
    assert "the run cannot go yet (2 missing)" in out
    assert "- fid weights missing: stsa-bench weights fetch fid (or weights.fid=PATH)" in out
    assert "- syncnet weights missing: stsa-bench weights fetch syncnet" in out
    ckpt = tmp_path / "heatmap_weight.pth"
    ckpt.write_bytes(b"x")
    assert main(["doctor", "--suite", "lrs2", f"cache_dir={cache_dir}", "--methods", "stsa", "--metrics", "psnr", f"stsa.heatmap_ckpt={ckpt}"]) == 1
    out = capsys.readouterr().out
    assert "needs its data root: set STSA_BENCH_LRS2_ROOT" in out and "stsa_heatmap    given by a setting" in out
    assert "- stsa_renderer weights missing: download from https://github.com/SCAILab-USTC/STSA" in out


def test_every_weights_command_takes_the_runs_overrides_and_cache_dir_holds_the_weights(tmp_path, monkeypatch, capsys):
    """Issue 30, items 5 and 6: `weights list|verify cache_dir=X` crashed ('Namespace' object has no attribute
    'overrides'), and `run cache_dir=X` looked for weights under the default cache. One rule now: the command's
    cache_dir holds weights/ (unless $STSA_BENCH_WEIGHTS), for run, doctor and every weights subcommand."""
    import torch

    from stsa_bench.core.catalogue import CATALOGUE

    monkeypatch.delenv("STSA_BENCH_WEIGHTS", raising=False)
    monkeypatch.setenv("STSA_BENCH_CACHE", str(tmp_path / "default"))
    cache = tmp_path / "cache"
    assert main(["weights", "list", f"cache_dir={cache}"]) == 0
    assert f"weights folder: {cache / 'weights'}" in capsys.readouterr().out
    assert main(["weights", "verify", f"cache_dir={cache}"]) == 0
    assert "0 present, 0 with a problem" in capsys.readouterr().out
    state = tmp_path / "syncnet.pth"
    torch.save({"w": torch.zeros(2)}, state)
    assert main(["weights", "add", "syncnet", str(state), f"cache_dir={cache}"]) == 0
    assert (cache / "weights" / CATALOGUE["syncnet"].filename).is_file()
    capsys.readouterr()
    assert main(["doctor", "--suite", "demo", "--methods", "gt", "--metrics", "lse_c", f"cache_dir={cache}"]) == 0
    assert f"{cache / 'weights' / CATALOGUE['syncnet'].filename}" in capsys.readouterr().out
    assert main(["weights", "list", "--metrics", "lse_c"]) == 0
    assert "syncnet         missing" in capsys.readouterr().out


def test_mirrors_are_https_loopback_or_a_local_folder_and_a_fetched_file_loads_before_it_is_pinned(tmp_path, folder, capsys):
    """Issue 30, item 7: a plain-http mirror served a pickle holding posix.system, which was pinned (verify then said
    nothing was wrong); --mirror /path was an internal error; ftp: was retried five times; add took a URL."""
    import os

    import torch

    spec = WeightsSpec(name="blob", filename="blob.pth", url="https://example.invalid/blob.pth", sha256="")
    for mirror, why in (("http://example.invalid/w", "plain http can be altered on the way"), ("ftp://example.invalid/w", "ftp: is not a mirror"),
                        ("javascript:alert(1)", "javascript: is not a mirror"), (str(tmp_path / "nowhere"), "not a folder")):  # fmt: skip
        with pytest.raises(WeightsMissing, match=why):
            store.fetch(spec, mirror=mirror, retries=0)
    assert store.source_url(spec, "http://127.0.0.1:8000/w") == "http://127.0.0.1:8000/w/blob.pth"
    local = tmp_path / "mirror"
    local.mkdir()

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"w": torch.zeros(1), "x": Payload()}, local / "blob.pth")
    with pytest.raises(WeightsMissing, match="holds objects other than tensors.*deleted, nothing pinned"):
        store.fetch(spec, mirror=str(local), progress=False, check=lambda p: store_load(p))
    assert not (folder / "blob.pth").exists() and "blob.pth" not in store.read_lock()
    torch.save({"w": torch.zeros(1)}, local / "blob.pth")
    path, digest = store.fetch(spec, mirror=local.as_uri(), progress=False, check=lambda p: store_load(p))
    assert path == folder / "blob.pth" and store.read_lock()["blob.pth"]["sha256"] == digest
    capsys.readouterr()
    assert main(["weights", "fetch", "fid", "--mirror", "ftp://example.invalid/w"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["weights", "add", "fid", "http://example.invalid/fid.pth"]) == 2
    assert "weights add takes a local file" in capsys.readouterr().err


def store_load(path):
    from stsa_bench.core.weights import load_state_dict

    return load_state_dict(path)


def test_redirects_do_not_leave_https_and_every_fetch_checks_what_it_got(tmp_path, folder):
    """Review of issue 30, item 7: urlopen followed https -> http redirects, and fetch without a check (the
    weights.download=true route) pinned whatever came."""
    import os
    import urllib.request

    import torch

    handler = store._NoDowngrade()
    request = urllib.request.Request("https://example.invalid/w.pth")
    for target in ("http://example.invalid/w.pth", "ftp://example.invalid/w.pth", "file:///etc/passwd"):
        with pytest.raises(WeightsMissing, match="which is not https; refused"):
            handler.redirect_request(request, None, 302, "Found", {}, target)
    assert handler.redirect_request(request, None, 302, "Found", {}, "https://mirror.invalid/w.pth").full_url == "https://mirror.invalid/w.pth"

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    local = tmp_path / "mirror"
    local.mkdir()
    torch.save({"w": torch.zeros(1), "x": Payload()}, local / "blob.pth")
    spec = WeightsSpec(name="blob", filename="blob.pth", url="https://example.invalid/blob.pth", sha256="")
    with pytest.raises(WeightsMissing, match="deleted, nothing pinned"):
        store.fetch(spec, mirror=str(local), progress=False)
    assert not (folder / "blob.pth").exists()


def test_weights_commands_read_trailing_overrides_after_options(tmp_path, monkeypatch, capsys):
    """Review of issue 30: `weights fetch NAME --mirror URL cache_dir=X` was an argparse error, and a labelled row's
    overrides (ours.dir=) failed because --methods did not reach the config."""
    monkeypatch.delenv("STSA_BENCH_WEIGHTS", raising=False)
    assert main(["weights", "fetch", "fid", "--mirror", "ftp://example.invalid/w", f"cache_dir={tmp_path}"]) == 2
    assert "--mirror ftp://example.invalid/w: refused" in capsys.readouterr().err
    assert main(["weights", "list", "--methods", "ours:results", f"ours.dir={tmp_path}", f"cache_dir={tmp_path}"]) == 0
    assert f"weights folder: {tmp_path / 'weights'}" in capsys.readouterr().out
