"""ImageNet weights from the local torch cache, with a bounded download attempt.

torchvision would download a missing file itself, with no timeout: on a machine without network
that hangs or fails with a long traceback. Here the file is looked up where torchvision caches it
(``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``, which follows
``$TORCH_HOME``), read from there without any network access, and only when it is absent one
download is tried with a short socket timeout. Failure raises a HashretError that names the
file, the folder to put it in, the URL, and the alternatives ``--weights`` and
``--no-pretrained``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import torch

from hashcli.errors import FormatError, HashretError
from hashcli.model.state_dict import unwrap_state_dict

log = logging.getLogger(__name__)

# torch.hub's convention: "resnet18-f37072fd.pth" holds the first hex digits of its sha256.
_HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")


def weights_url(weights_name: str) -> str:
    """Download URL of a torchvision weights enum given by name."""
    from torchvision.models import get_weight

    return get_weight(weights_name).url


def cache_path(url: str) -> Path:
    """Where torchvision caches the file of ``url``: ``torch.hub.get_dir()/checkpoints/<name>``."""
    file_name = os.path.basename(urllib.parse.urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def resolve_pretrained(weights_name: str, *, backbone: str, download_timeout: float = 5.0) -> Path:
    """Path of the cached weights file, downloading it first if absent and allowed.

    ``download_timeout`` (seconds) bounds name resolution, connecting and every read; 0 means
    never download. Raises HashretError when the file is absent and cannot be fetched.
    """
    url = weights_url(weights_name)
    path = cache_path(url)
    if path.is_file():
        return path
    if download_timeout > 0:
        try:
            download(url, path, timeout=download_timeout)
            return path
        except (OSError, ValueError, http.client.HTTPException) as error:
            reason = f"download failed: {error}"
    else:
        reason = "downloads are switched off"
    raise HashretError(
        f"ImageNet weights for {backbone} ({weights_name}) are not in the torch cache and "
        f"could not be fetched ({reason}): place {url} at {path} (the folder follows "
        f"$TORCH_HOME), or pass --weights PATH to start from a state dict file, or "
        f"--no-pretrained to start from random weights"
    )


def load_pretrained_state(
    weights_name: str, *, backbone: str, download_timeout: float = 5.0
) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``weights_name``, read from the cache (see module docs)."""
    path = resolve_pretrained(weights_name, backbone=backbone, download_timeout=download_timeout)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise FormatError(
            f"the cached weights file {path} is unreadable ({str(error).splitlines()[0]}); "
            f"delete it and place a fresh copy"
        ) from error
    return unwrap_state_dict(obj, path)


def download(url: str, dest: Path, *, timeout: float) -> None:
    """Fetch ``url`` into ``dest`` atomically, checking the sha256 prefix in its name.

    ``timeout`` bounds the name lookup (run in a daemon thread, as getaddrinfo has no timeout
    of its own), the connection and each read, so an unreachable network fails in seconds.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    # The host to look up is the proxy's when one applies (urllib honours *_proxy variables).
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname):
        parsed_proxy = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        if parsed_proxy.hostname:
            parsed = parsed_proxy
    _resolve_host(
        parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), timeout
    )

    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, dest)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        match = _HASH_PREFIX.search(dest.name)
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise ValueError(f"the file downloaded from {url} does not match its sha256 prefix")
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _resolve_host(host: str, port: int, timeout: float) -> None:
    result: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, port)
            result.append(None)
        except OSError as error:
            result.append(error)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        raise TimeoutError(f"looking up {host} took more than {timeout:g} s")
    if result[0] is not None:
        raise OSError(f"cannot resolve {host}: {result[0]}")
