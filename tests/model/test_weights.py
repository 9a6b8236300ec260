"""Starting weights: ImageNet from a temporary TORCH_HOME, state dict files, the missing-file
error, bounded downloads, and ViT position-embedding interpolation."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models import VisionTransformer

from hashcli.errors import FormatError, HashretError
from hashcli.model import weights as weights_module
from hashcli.model.backbones import TinyCNN, interpolate_vit_position_embedding
from hashcli.model.factory import create_model
from hashcli.model.registry import BackboneSpec
from hashcli.model.state_dict import load_backbone_state

RESNET18_FILE = "resnet18-f37072fd.pth"


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME; torch.hub.get_dir() follows it (no set_dir override)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
    return tmp_path / "torch"


def test_pretrained_resnet18_loaded_from_torch_home(torch_home):
    torch.manual_seed(1)
    placed = torchvision.models.resnet18(weights=None).state_dict()  # with its fc classifier
    target = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    target.parent.mkdir(parents=True)
    torch.save(placed, target)

    torch.manual_seed(2)  # the model's own random init differs from the placed weights
    model = create_model("resnet18", 32, pretrained=True, download_timeout=0)
    loaded = model.backbone.state_dict()
    assert set(loaded) == {k for k in placed if not k.startswith("fc.")}
    for key, value in loaded.items():
        assert torch.equal(value, placed[key]), key
    assert model.config["init"] == "imagenet:ResNet18_Weights.IMAGENET1K_V1"
    assert model.config["feature_dim"] == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 32)


def test_missing_pretrained_weights_fail_fast_naming_the_file(torch_home):
    start = time.monotonic()
    with pytest.raises(HashretError) as info:
        create_model("resnet18", 32, pretrained=True, download_timeout=0)
    assert time.monotonic() - start < 2
    message = str(info.value)
    expected_path = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    assert RESNET18_FILE in message and str(expected_path) in message
    assert "https://download.pytorch.org/models/" + RESNET18_FILE in message
    assert "--weights" in message and "--no-pretrained" in message


def test_unreachable_download_fails_within_seconds(torch_home, monkeypatch):
    # Port 9 on localhost is closed: the attempt is refused, no file is left behind.
    monkeypatch.setattr(
        weights_module, "weights_url", lambda name: f"http://127.0.0.1:9/{RESNET18_FILE}"
    )
    start = time.monotonic()
    with pytest.raises(HashretError, match="download failed") as info:
        create_model("resnet18", 32, pretrained=True, download_timeout=2)
    assert time.monotonic() - start < 5
    assert "--no-pretrained" in str(info.value)
    checkpoints = torch_home / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_no_pretrained_and_tiny_ignore_the_cache(torch_home):
    torch.manual_seed(0)
    assert create_model("resnet18", 8, pretrained=False).config["init"] == "random"
    # tiny has no pretrained weights: pretrained=True is ignored.
    assert create_model("tiny", 8, pretrained=True).config["init"] == "random"


@pytest.fixture
def http_file(tmp_path):
    """Serve tmp_path/served over HTTP on localhost; yields the base URL."""
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_checks_hash_prefix(http_file, tmp_path):
    served, base = http_file
    payload = b"weights" * 1000
    good_name = f"net-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    (served / good_name).write_bytes(payload)
    (served / "net-00000000.pth").write_bytes(payload)

    dest = tmp_path / "cache" / good_name
    weights_module.download(f"{base}/{good_name}", dest, timeout=5)
    assert dest.read_bytes() == payload

    bad = tmp_path / "cache" / "net-00000000.pth"
    with pytest.raises(ValueError, match="sha256"):
        weights_module.download(f"{base}/net-00000000.pth", bad, timeout=5)
    assert sorted(p.name for p in bad.parent.iterdir()) == [good_name]


def test_weights_file_backbone_only_and_hashnet_state(tmp_path):
    torch.manual_seed(3)
    source = TinyCNN()
    backbone_only = tmp_path / "tiny_backbone.pt"
    torch.save(source.state_dict(), backbone_only)
    model = create_model("tiny", 16, weights=backbone_only)
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)
    assert model.config["init"] == "file:tiny_backbone.pt"

    # A HashNet state dict (backbone.* and head.*): the backbone part is used.
    hashnet_state = tmp_path / "hashnet.pt"
    torch.save(model.state_dict(), hashnet_state)
    torch.manual_seed(4)
    other = create_model("tiny", 32, weights=hashnet_state)
    for key, value in source.state_dict().items():
        assert torch.equal(other.backbone.state_dict()[key], value)


def test_mismatched_weights_file_is_a_clear_error(tmp_path):
    state = TinyCNN().state_dict()
    del state["features.0.weight"]
    state["features.1.weight"] = torch.ones(7)
    state["extra.bias"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(FormatError) as info:
        create_model("tiny", 16, weights=path)
    message = str(info.value)
    assert "missing key(s): features.0.weight" in message
    assert "unexpected key(s): extra.bias" in message
    assert "features.1.weight (7,) (expected (32,))" in message

    (tmp_path / "junk.pt").write_bytes(b"not a state dict")
    with pytest.raises(FormatError, match="junk.pt"):
        create_model("tiny", 16, weights=tmp_path / "junk.pt")
    with pytest.raises(HashretError, match="does not exist"):
        create_model("tiny", 16, weights=tmp_path / "absent.pt")


def _tiny_vit(image_size: int) -> VisionTransformer:
    return VisionTransformer(
        image_size=image_size, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32
    )


def test_vit_position_embeddings_are_interpolated_not_truncated():
    torch.manual_seed(5)
    source = _tiny_vit(32)  # 4 x 4 patches + class token
    state = source.state_dict()
    original = state["encoder.pos_embedding"].clone()
    target = _tiny_vit(48)  # 6 x 6 patches + class token

    adapted = interpolate_vit_position_embedding(state, target)
    assert torch.equal(state["encoder.pos_embedding"], original)  # input left untouched
    resized = adapted["encoder.pos_embedding"]
    assert resized.shape == (1, 37, 16)
    assert torch.equal(resized[:, 0], original[:, 0])  # class token kept
    old_grid = original[0, 1:].reshape(4, 4, 16)
    new_grid = resized[0, 1:].reshape(6, 6, 16)
    # Interpolation with aligned corners keeps the four corner patches of the grid ...
    for (i, j), (u, v) in {(0, 0): (0, 0), (0, 3): (0, 5), (3, 0): (5, 0), (3, 3): (5, 5)}.items():
        torch.testing.assert_close(new_grid[u, v], old_grid[i, j], atol=1e-5, rtol=0)
    # Shrinking (48 -> 32 px) keeps the corners too, which truncating the sequence to its
    # first 17 entries (the original project's bug) would not.
    large_state = target.state_dict()
    large = large_state["encoder.pos_embedding"][0, 1:].reshape(6, 6, 16)
    shrunk = interpolate_vit_position_embedding(large_state, source)["encoder.pos_embedding"]
    assert shrunk.shape == (1, 17, 16)
    shrunk_grid = shrunk[0, 1:].reshape(4, 4, 16)
    torch.testing.assert_close(shrunk_grid[0, 3], large[0, 5], atol=1e-5, rtol=0)
    torch.testing.assert_close(shrunk_grid[3, 3], large[5, 5], atol=1e-5, rtol=0)
    assert not torch.allclose(shrunk[:, 1:], large_state["encoder.pos_embedding"][:, 1:17])
    # Same size: unchanged.
    assert interpolate_vit_position_embedding(state, source) is state

    # Through the loader, with the classifier of a full torchvision state dict ignored.
    spec = BackboneSpec(
        name="vit_test",
        build=_tiny_vit,
        feature_dim=16,
        classifier_prefixes=("heads.",),
        adapt_state_dict=interpolate_vit_position_embedding,
    )
    target.heads = torch.nn.Identity()
    load_backbone_state(spec, target, state, source="test")
    torch.testing.assert_close(target.encoder.pos_embedding.detach(), resized)
    assert target(torch.randn(1, 3, 48, 48)).shape == (1, 16)
