"""Frame folders: which files are frames, and how one frame is decoded.

Layout everywhere: `root/<sequence>/<frames>`. Frames are decoded with OpenCV from the file's
bytes (works for non-ASCII paths). For training and evaluation `read_frame_rgb` gives RGB uint8
exactly as the official evaluation's `cv2.imread(path)` + BGR->RGB does: grayscale is repeated
to 3 channels, alpha is dropped, palettes are expanded, EXIF orientation is applied and 16-bit
samples become 8-bit by keeping the high byte (`v >> 8`, OpenCV's own conversion).
`read_frame_native` keeps 16-bit depth and single-channel gray for the video denoiser.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from utils.errors import UserError, warn

# OpenCV prints its own "[ WARN]" lines for damaged images; ours say what to do in one line.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_JPEG_START, _JPEG_SCAN, _JPEG_END = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_image_file(path: Path) -> bool:
    """True for a frame file name (extension from IMAGE_EXTENSIONS, any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def require_folder(folder: str | os.PathLike, what: str = "folder") -> Path:
    """The folder as a Path; `UserError` if it is missing or a file."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{what} '{folder}' does not exist")
    if not folder.is_dir():
        raise UserError(f"{what} '{folder}' is a file, not a folder")
    return folder


def _entries(folder: Path) -> list[Path]:
    """The folder's entries; `UserError` when it cannot be read (no permission)."""
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise UserError(f"cannot read folder '{folder}': {exc.strerror or exc}") from None


def frame_order_key(path: Path) -> tuple[int, int, str]:
    """Sort key of a frame file: the number in its name (0.png, 1.png, ..., 10.png in time order, as
    the official evaluation orders them), then the name; names without digits come last."""
    digits = "".join(c for c in path.name if c.isdigit())
    return (0, int(digits), path.name) if digits else (1, 0, path.name)


def list_sequence_dirs(root: str | os.PathLike) -> list[Path]:
    """Sorted non-hidden sub-folders of `root`, one per sequence; `UserError` if there are none."""
    root = require_folder(root, "dataset folder")
    entries = _entries(root)
    dirs = sorted((p for p in entries if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    if not dirs:
        hint = (" (it holds frames directly; put each sequence in its own sub-folder, "
                "e.g. root/seq1/00000.png)" if any(is_image_file(p) for p in entries) else
                " (expected one sub-folder of frames per sequence)")
        raise UserError(f"dataset folder '{root}' holds no sequence folders{hint}")
    return dirs


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """Frame files of one sequence folder in time order (`frame_order_key`); other files are
    skipped with a warning, a frame that is a broken symbolic link is an error."""
    folder = require_folder(folder, "sequence folder")
    entries = [p for p in _entries(folder) if not p.name.startswith(".")]
    broken = [p for p in entries if is_image_file(p) and p.is_symlink() and not p.exists()]
    if broken:
        raise UserError(f"frame '{broken[0]}' is a broken symbolic link (its target is missing); "
                        "restore it or remove the link")
    files = [p for p in entries if p.is_file()]
    frames = sorted((p for p in files if is_image_file(p)), key=frame_order_key)
    skipped = len(files) - len(frames)
    if skipped:
        warn(f"'{folder}': skipped {skipped} file(s) that are not images "
             f"({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    return frames


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read image '{path}': {exc.strerror or exc}") from None
    if data.size == 0:
        raise UserError(f"image '{path}' is an empty file")
    raw = data.tobytes()
    if raw.startswith(_JPEG_START) and raw.rfind(_JPEG_END) < raw.rfind(_JPEG_SCAN):
        # OpenCV decodes a cut JPEG silently (grey bottom); the missing end marker gives it away.
        raise UserError(f"image '{path}' is truncated (JPEG without end marker)")
    return data


def _note_png_conversion(data: np.ndarray, keeps_gray: bool) -> None:
    """Say once per kind how a PNG that is not plain RGB is converted (colour type in its header)."""
    if data.size < 26 or data[:8].tobytes() != _PNG_SIGNATURE:
        return
    color_type = int(data[25])
    if color_type in (4, 6):
        warn("frames with an alpha channel: the alpha channel is ignored")
    elif color_type == 3:
        warn("palette frames are expanded to RGB")
    if color_type == 4 or (color_type == 0 and not keeps_gray):  # OpenCV keeps gray only without alpha
        warn("gray frames are read as RGB (the gray value in all three channels)")


def _decode(path: Path, flags: int, keeps_gray: bool) -> np.ndarray:
    data = _read_bytes(path)
    _note_png_conversion(data, keeps_gray)
    image = cv2.imdecode(data, flags)
    if image is None:
        raise UserError(f"cannot decode image '{path}': unsupported format or damaged file")
    if image.dtype not in (np.uint8, np.uint16):
        raise UserError(f"image '{path}' has {image.dtype} samples; only 8-bit and 16-bit images are supported")
    return image


def to_8bit(image: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by keeping the high byte, as OpenCV converts 16-bit images on reading."""
    return (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image


def read_frame_rgb(path: str | os.PathLike) -> np.ndarray:
    """One frame as RGB uint8 HxWx3 (gray, RGBA, palette and 16-bit converted, see module doc)."""
    path = Path(path)
    image = _decode(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH, keeps_gray=False)
    if image.dtype == np.uint16:
        warn("16-bit frames are reduced to 8 bits for training and evaluation")
        image = to_8bit(image)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame_native(path: str | os.PathLike) -> np.ndarray:
    """One frame HxWxC at its own depth (uint8/uint16), C=1 for gray, else RGB (alpha dropped)."""
    image = _decode(Path(path), cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH, keeps_gray=True)
    if image.ndim == 2:
        return image[:, :, None]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def stack_frames(frames: list[np.ndarray], paths: list[Path], sequence: str) -> np.ndarray:
    """Stack HxWxC frames into (T,H,W,C); `UserError` naming the sequence if sizes differ."""
    first = frames[0].shape
    for frame, path in zip(frames, paths):
        if frame.shape != first:
            raise UserError(f"sequence '{sequence}': frames differ in size: '{paths[0].name}' is "
                            f"{first[1]}x{first[0]}x{first[2]} but '{path.name}' is "
                            f"{frame.shape[1]}x{frame.shape[0]}x{frame.shape[2]} (WxHxC)")
    return np.stack(frames)


def read_frames(paths: list[Path], sequence: str, reader=read_frame_rgb) -> np.ndarray:
    """Decode frames in parallel threads (OpenCV releases the GIL) and stack them (T,H,W,C)."""
    if not paths:
        raise UserError(f"sequence '{sequence}' holds no images")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        frames = list(pool.map(reader, paths))
    return stack_frames(frames, paths, sequence)
