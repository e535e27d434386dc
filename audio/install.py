"""Installing neural voice models under the data folder: download, verify, extract safely.

Layout under ``<data>/models/``::

    <name>/                   one installed model (the archive's folder), with
        dalaba-model.json     its catalogue name, family, speakers and archive checksum
    .downloads/<file>.part    a download in progress (resumed with an HTTP Range request)
    .staging-*/               an archive being unpacked (moved into place when complete)
    default                   the name of the model the neural engine uses when
                              DALABA_NEURAL_MODEL_DIR is not set (the last one installed)

A download is checked against the catalogue's SHA-256 (or one the admin gives); a file whose
checksum is unknown is refused. Unpacking refuses absolute paths, ``..``, links pointing
outside the model's folder, devices, and archives larger than a cap (compressed and
unpacked): a broken or hostile archive never writes outside ``<data>/models/``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from audio.catalogue import Download, ModelEntry, find
from audio.errors import N_, InstallError

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "MAX_UNPACKED_BYTES",
    "Installed",
    "default_model",
    "download",
    "install_archive",
    "install_entry",
    "installed",
    "models_dir",
    "sha256_of",
]

MAX_ARCHIVE_BYTES = 1 << 30
"""Largest archive or vocoder accepted (1 GiB; the largest catalogued one is 365 MB)."""
MAX_UNPACKED_BYTES = 3 << 30
"""Largest total an archive may unpack to (3 GiB)."""
MAX_MEMBERS = 20_000
CHUNK = 1 << 20
TIMEOUT_S = 30.0
DESCRIPTION = "dalaba-model.json"
DEFAULT_FILE = "default"

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or ``None``) as a download advances."""


def models_dir(data_dir: Path) -> Path:
    """Where models are installed: ``<data>/models``."""
    return data_dir / "models"


def sha256_of(path: Path) -> str:
    """The SHA-256 (hex) of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InstallError(N_("SHA-256 校验值应为 64 位十六进制数：{value}"), value=value)
    return value


def _known_sha(given: str | None, catalogued: str | None, name: str) -> str:
    """The checksum given (checked), else the catalogue's; refused when neither knows it."""
    sha = _check_sha(given) or catalogued
    if sha is None:
        raise InstallError(
            N_("目录中 {name} 的 SHA-256 未知：请在别处核对后用 --sha256 给出"), name=name
        )
    return sha


def download(
    url: str,
    dest: Path,
    sha256: str,
    *,
    size: int | None = None,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    progress: Progress | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``, and verify its SHA-256.

    An interrupted download leaves ``<dest>.part``; the next call asks the server for the
    rest (``Range: bytes=N-``) and starts over only if the server sends the whole file.

    Args:
        url: where to download from.
        dest: the finished file (written only once verified).
        sha256: the expected SHA-256 (hex).
        size: the expected size, if known (a larger download is refused early).
        max_bytes: the most accepted.
        progress: told about the progress.
        timeout: seconds to wait for the server on each read.

    Returns:
        ``dest``.

    Raises:
        InstallError: the server failed or is unreachable, the file is too large, or its
            checksum is wrong (the partial file is then deleted: a new try starts over).
    """
    expected = _check_sha(sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "dalaba"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the part file is complete
            return _finish(part, dest, expected, url)
        raise InstallError(
            N_("下载 {url} 失败：服务器答复 HTTP {code}"), url=url, code=exc.code
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        detail = getattr(exc, "reason", None) or exc
        raise InstallError(N_("无法连接 {url}：{detail}"), url=url, detail=str(detail)) from exc
    with response:
        status = response.status
        if have and status != 206:
            have = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        if total is not None and total > max_bytes:
            raise InstallError(
                N_("{url} 有 {size} 字节，超过上限 {limit} 字节，已拒绝"),
                url=url,
                size=total,
                limit=max_bytes,
            )
        done = have
        digest = hashlib.sha256()
        if have:
            with part.open("rb") as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    digest.update(block)
        with part.open("ab" if have else "wb") as out:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    raise InstallError(
                        N_("下载 {url} 中断（已下载 {done} 字节，再次安装会接着下载）：{detail}"),
                        url=url,
                        done=done,
                        detail=str(exc),
                    ) from exc
                if not block:
                    break
                done += len(block)
                if done > max_bytes:
                    raise InstallError(
                        N_("{url} 超过上限 {limit} 字节，已拒绝"), url=url, limit=max_bytes
                    )
                out.write(block)
                digest.update(block)
                if progress is not None:
                    progress(done, total)
    if total is not None and done < total:
        raise InstallError(
            N_("下载 {url} 中断（已下载 {done} 字节，再次安装会接着下载）：{detail}"),
            url=url,
            done=done,
            detail=f"{done}/{total}",
        )
    return _finish(part, dest, expected, url, digest.hexdigest())


def _finish(
    part: Path, dest: Path, expected: str | None, url: str, actual: str | None = None
) -> Path:
    actual = actual or sha256_of(part)
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise InstallError(
            N_("{url} 的 SHA-256 校验失败（应为 {expected}，实为 {actual}），已删除，未安装"),
            url=url,
            expected=expected,
            actual=actual,
        )
    os.replace(part, dest)
    return dest


@dataclass(frozen=True)
class Installed:
    """An installed model folder.

    Attributes:
        name: its folder's name (the catalogue name for catalogued models).
        folder: the folder.
        entry: its catalogue entry, or ``None`` for a model brought from elsewhere.
        default: whether the neural engine uses it when no folder is configured.
        sha256: the archive's SHA-256 as installed, if recorded.
    """

    name: str
    folder: Path
    entry: ModelEntry | None
    default: bool
    sha256: str | None


def installed(root: Path) -> list[Installed]:
    """The models installed under ``root`` (``<data>/models``), by name."""
    if not root.is_dir():
        return []
    chosen = default_model(root)
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        described: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            described = json.loads((folder / DESCRIPTION).read_text(encoding="utf-8"))
        sha = described.get("sha256") if isinstance(described, dict) else None
        found.append(
            Installed(
                folder.name,
                folder,
                find(folder.name),
                chosen == folder,
                sha if isinstance(sha, str) else None,
            )
        )
    return found


def default_model(root: Path) -> Path | None:
    """The installed model the neural engine uses when ``DALABA_NEURAL_MODEL_DIR`` is unset."""
    try:
        name = (root / DEFAULT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    folder = root / name
    if not name or "/" in name or name.startswith(".") or not folder.is_dir():
        return None
    return folder


def _safe_members(archive: tarfile.TarFile, max_unpacked: int) -> list[tarfile.TarInfo]:
    """Every member, after refusing anything that could write outside the target."""
    members = []
    total = 0
    for count, member in enumerate(archive, start=1):
        if count > MAX_MEMBERS:
            raise InstallError(N_("压缩包中的文件超过 {limit} 个，已拒绝"), limit=MAX_MEMBERS)
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or member.name.startswith(("/", "\\")):
            raise InstallError(N_("压缩包中有越出目标文件夹的路径：{path}"), path=member.name)
        if member.issym() or member.islnk():
            target = PurePosixPath(member.linkname)
            joined = target if member.islnk() else path.parent / target
            if target.is_absolute() or ".." in PurePosixPath(os.path.normpath(joined)).parts:
                raise InstallError(
                    N_("压缩包中有指向目标文件夹之外的链接：{path} → {target}"),
                    path=member.name,
                    target=member.linkname,
                )
        elif not (member.isfile() or member.isdir()):
            raise InstallError(N_("压缩包中有设备或管道等特殊文件：{path}"), path=member.name)
        total += max(0, member.size)
        if total > max_unpacked:
            raise InstallError(N_("压缩包解开后超过 {limit} 字节，已拒绝"), limit=max_unpacked)
        members.append(member)
    return members


def _unpack(archive_path: Path, root: Path, max_unpacked: int) -> tuple[Path, Path]:
    """Unpack into a staging folder under ``root``; (staging folder, the model's folder in it)."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                members = _safe_members(archive, max_unpacked)
                archive.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # a full disk is not the archive's fault
            raise InstallError(
                N_("无法解开 {file}：{detail}"), file=archive_path.name, detail=str(exc)
            ) from exc
        tops = [p for p in staging.iterdir()]
        folder = tops[0] if len(tops) == 1 and tops[0].is_dir() else staging
        return staging, folder
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def install_archive(
    archive_path: Path,
    root: Path,
    *,
    sha256: str | None = None,
    entry: ModelEntry | None = None,
    vocoder: Path | None = None,
    max_unpacked: int = MAX_UNPACKED_BYTES,
    max_bytes: int = MAX_ARCHIVE_BYTES,
) -> Installed:
    """Install a model archive (downloaded, or brought on a USB stick) under ``root``.

    The model's name is the archive's single top folder (``NAME/…``), else the file name
    without ``.tar.bz2``. A catalogued archive (by name) is checked against the catalogue's
    checksum unless ``sha256`` is given; an archive of unknown checksum is installed only
    when the name is not catalogued (a model brought from elsewhere, checked by its trial
    load), never silently for a catalogued one.

    Args:
        archive_path: a ``.tar.bz2`` (or ``.tar.gz``/``.tar.xz``/``.tar``) file.
        root: ``<data>/models``.
        sha256: the expected checksum, overriding the catalogue's.
        entry: the catalogue entry, when already known.
        vocoder: a vocoder file to place beside the model (Matcha).
        max_unpacked: refuse archives unpacking to more bytes than this.
        max_bytes: refuse archives larger than this.

    Returns:
        The installed model, now the default one.

    Raises:
        InstallError: the file is missing, too large, fails its checksum, or is unsafe.
    """
    if not archive_path.is_file():
        raise InstallError(N_("找不到文件：{file}"), file=str(archive_path))
    if archive_path.stat().st_size > max_bytes:
        raise InstallError(
            N_("{url} 有 {size} 字节，超过上限 {limit} 字节，已拒绝"),
            url=archive_path.name,
            size=archive_path.stat().st_size,
            limit=max_bytes,
        )
    base = archive_path.name
    for suffix in (".tar.bz2", ".tar.gz", ".tgz", ".tar.xz", ".tar"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    entry = entry or find(base)
    expected = _check_sha(sha256) or (entry.archive.sha256 if entry else None)
    if entry is not None and expected is None:
        raise InstallError(
            N_("目录中 {name} 的 SHA-256 未知：请在别处核对后用 --sha256 给出"), name=entry.name
        )
    actual = sha256_of(archive_path)
    if expected is not None and actual != expected:
        raise InstallError(
            N_("{file} 的 SHA-256 校验失败（应为 {expected}，实为 {actual}），未安装"),
            file=archive_path.name,
            expected=expected,
            actual=actual,
        )
    root.mkdir(parents=True, exist_ok=True)
    staging, folder = _unpack(archive_path, root, max_unpacked)
    try:
        name = folder.name if folder != staging else base
        if not name or name.startswith(".") or name == DEFAULT_FILE:
            raise InstallError(N_("无法从压缩包得出模型名称：{file}"), file=archive_path.name)
        entry = entry or find(name)
        if vocoder is not None:
            shutil.copy2(vocoder, folder / vocoder.name)
        description = {
            "name": name,
            "family": entry.family if entry else None,
            "sha256": actual,
            "speakers": [
                {"key": s.key, "label": s.label, "gender": s.gender} for s in entry.speakers
            ]
            if entry
            else [],
        }
        (folder / DESCRIPTION).write_text(
            json.dumps(description, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        target = root / name
        old = None
        if target.exists():
            old = root / f".old-{name}-{os.getpid()}"
            os.replace(target, old)
        os.replace(folder, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_default(root, name)
    return Installed(name, target, entry, True, actual)


def _write_default(root: Path, name: str) -> None:
    tmp = root / f".{DEFAULT_FILE}.{os.getpid()}"
    tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(tmp, root / DEFAULT_FILE)


def install_entry(
    entry: ModelEntry,
    root: Path,
    *,
    base: str | None = None,
    sha256: str | None = None,
    vocoder_sha256: str | None = None,
    progress: Callable[[str], Progress] | None = None,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_unpacked: int = MAX_UNPACKED_BYTES,
) -> Installed:
    """Download a catalogued model (and its vocoder) from ``base`` and install it.

    Args:
        entry: the catalogue entry.
        root: ``<data>/models``.
        base: the download base (``DALABA_MODEL_MIRROR``), sherpa-onnx's releases if ``None``.
        sha256: the archive's checksum, overriding the catalogue (required where unknown).
        vocoder_sha256: likewise for the vocoder.
        progress: given a file name, returns the callback for that file's download.

    Raises:
        InstallError: as :func:`download` and :func:`install_archive`; a checksum unknown
            both to the catalogue and the caller.
    """
    downloads = root / ".downloads"

    def fetch(item: Download, sha: str) -> Path:
        return download(
            item.url(base),
            downloads / item.filename,
            sha,
            size=item.size,
            max_bytes=max_bytes,
            progress=progress(item.filename) if progress else None,
        )

    archive_sha = _known_sha(sha256, entry.archive.sha256, entry.name)
    vocoder_path = None
    if entry.vocoder is not None:
        vocoder_sha = _known_sha(vocoder_sha256, entry.vocoder.sha256, entry.vocoder.filename)
        vocoder_path = fetch(entry.vocoder, vocoder_sha)
    archive = fetch(entry.archive, archive_sha)
    result = install_archive(
        archive,
        root,
        sha256=archive_sha,
        entry=entry,
        vocoder=vocoder_path,
        max_unpacked=max_unpacked,
        max_bytes=max_bytes,
    )
    archive.unlink(missing_ok=True)
    if vocoder_path is not None:
        vocoder_path.unlink(missing_ok=True)
    return result
