"""Reading and writing the user's videos: video files (via OpenCV) or folders of frames.

Frames are numpy arrays (T,H,W,C): RGB (C=3) or gray (C=1), uint8 or uint16 kept as stored so
the denoiser can choose the conversion. Video files are written with the 'mp4v' codec, 8-bit
(16-bit frames are reduced with a warning); frame folders as PNG `00000.png, ...`, 16-bit when
the frames are 16-bit.
"""
from __future__ import annotations

import errno
import math
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from datasets.image_folder import is_image_file, list_frames, read_frame_native, read_frames, require_folder, to_8bit
from utils.atomic import atomic_path, remove_temp_files
from utils.errors import UserError, warn

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
DEFAULT_FPS = 25.0
# Output names that look like a picture or a video we cannot write: refused rather than taken for a
# folder name (any other name without a video extension, `out.v2` or `run.d` too, is a frame folder).
UNWRITABLE_MEDIA = frozenset((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".webm",
                              ".wmv", ".flv", ".m4v", ".mpg", ".mpeg", ".ts", ".h264", ".264", ".3gp"))


def is_video_file(path: str | os.PathLike) -> bool:
    """True when the name ends in a video extension (any case)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def read_video(path: str | os.PathLike, fps: float = DEFAULT_FPS,
               max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Frames (T,H,W,C) and frame rate of a video file, a frame folder or a single image.

    `fps` is used for folders and images (they store none) and for videos that report none.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"input '{path}' does not exist")
    if path.is_dir():
        frames = list_frames(require_folder(path, "frame folder"))[:max_frames]
        if not frames:
            raise UserError(f"frame folder '{path}' holds no images")
        return read_frames(frames, str(path), reader=read_frame_native), float(fps)
    if is_image_file(path):
        return read_frame_native(path)[None], float(fps)
    return _decode_video(path, fps, max_frames)


def _decode_video(path: Path, fps: float, max_frames: int | None) -> tuple[np.ndarray, float]:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UserError(f"cannot open video '{path}': unsupported format or damaged file")
        video_fps = capture.get(cv2.CAP_PROP_FPS)
        frames = []
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame[:, :, None])
    finally:
        capture.release()
    if not frames:
        raise UserError(f"video '{path}' has no decodable frames")
    good_fps = video_fps if math.isfinite(video_fps) and video_fps > 0 else fps
    return np.stack(frames), float(good_fps)


def check_writable_output(path: str | os.PathLike) -> Path:
    """Fail early (`UserError`) when `path` cannot be written as a video file or frame folder.

    A name with a video extension is a video file; an existing folder or any other name is a frame
    folder, except picture and other video extensions (`UNWRITABLE_MEDIA`), which are refused.
    Folders are not created here.
    """
    path = Path(path)
    if path.exists() and not (path.is_file() or path.is_dir()):
        raise UserError(f"output '{path}' is not a regular file or folder (a device or a pipe?)")
    if path.is_dir() and is_video_file(path):
        raise UserError(f"output '{path}' is an existing folder, not a video file")
    if not path.is_dir() and path.suffix.lower() in UNWRITABLE_MEDIA:
        raise UserError(f"output '{path}': unsupported extension '{path.suffix}'; use "
                        f"{'/'.join(VIDEO_EXTENSIONS)} or a folder name for PNG frames")
    if path.is_file() and not is_video_file(path):
        raise UserError(f"output '{path}' is an existing file, not a folder")
    # Files are renamed into place (see utils.atomic): the folder that receives them must be writable.
    existing = path if path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"output '{path}': '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output '{path}' is not writable (no permission on '{existing}')")
    try:  # some folders refuse new files whatever their permissions say (/proc, read-only mounts)
        probe, name = tempfile.mkstemp(dir=existing, prefix=".stbn-write-test-")
        os.close(probe)
        os.unlink(name)
    except OSError as exc:
        raise UserError(f"output '{path}' cannot be written: no file can be created in '{existing}' "
                        f"({exc.strerror or exc})") from None
    return path


def frame_name(t: int) -> str:
    """The name of output frame t (5-digit, zero-padded PNG), in every output folder."""
    return f"{t:05d}.png"


_FRAME_NAME = re.compile(r"^\d{5}\.png$")


def earlier_frames(folder: str | os.PathLike, keep: int) -> list[Path]:
    """Output frames (`frame_name`) in `folder` from t = keep on: what an earlier, longer run left."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _FRAME_NAME.match(p.name) and int(p.name[:5]) >= keep)


def remove_earlier_frames(folder: str | os.PathLike, keep: int) -> None:
    """Delete the frames an earlier, longer output left beyond `keep` frames, saying how many."""
    stale = earlier_frames(folder, keep)
    for frame in stale:
        frame.unlink(missing_ok=True)
    if stale:
        warn(f"'{folder}': removed {len(stale)} frame(s) of an earlier, longer output "
             f"({stale[0].name} .. {stale[-1].name})")


def write_png(target: Path, frame: np.ndarray) -> None:
    """One RGB (HxWx3) or gray (HxWx1) frame as PNG, written atomically (a full disk says so)."""
    ok, encoded = cv2.imencode(".png", _to_bgr(frame))
    if not ok:
        raise UserError(f"cannot encode '{target}' as PNG")
    with atomic_path(target) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _as_hwc(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or frames.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8/uint16 frames (T,H,W,1|3), got {frames.dtype} {frames.shape}")
    return frames


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS) -> Path:
    """Write frames (T,H,W,C) to a video file (mp4v, keeps fps and size) or a PNG frame folder."""
    path = check_writable_output(path)
    frames = _as_hwc(frames)
    if is_video_file(path):
        _write_video_file(path, frames, fps)
    else:
        _write_frame_folder(path, frames)
    return path


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.shape[-1] == 3 else frame[:, :, 0]


def _write_video_file(path: Path, frames: np.ndarray, fps: float) -> None:
    """Encode to a temp file and rename it when complete; a file that does not read back with
    every frame (full disk: OpenCV's writer reports nothing) is an error, not an output."""
    if frames.dtype == np.uint16:
        warn(f"'{path}': video files hold 8-bit frames; write to a folder to keep 16 bits")
    height, width = frames.shape[1:3]
    remove_temp_files(path.parent, path.name)  # left by a run killed while writing this output
    with atomic_path(path, "video", suffix=path.suffix) as tmp:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
        try:
            if not writer.isOpened():
                _probe_disk(tmp)  # a full disk or a write error reads as such, not as a missing encoder
                raise UserError(f"cannot write video '{path}' (no encoder for this container)")
            for frame in frames:
                bgr = _to_bgr(to_8bit(frame))
                writer.write(bgr if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR))
        finally:
            writer.release()
        written = _frame_count(tmp)
        if written != len(frames):
            raise OSError(errno.EIO, f"the encoded file holds {written} of {len(frames)} frames (disk full?)")


def _probe_disk(tmp: Path) -> None:
    """Write and sync 64 KiB to `tmp`: raises the real `OSError` (ENOSPC...) when the disk refuses."""
    with open(tmp, "wb") as handle:
        handle.write(bytes(1 << 16))
        handle.flush()
        os.fsync(handle.fileno())


def _frame_count(path: Path) -> int:
    """Frames a video file reports in its header (0 when it cannot be opened)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def _write_frame_folder(path: Path, frames: np.ndarray) -> None:
    """Frames written into a hidden partial folder beside `path`, then moved into place: a new
    output folder appears complete (one rename) or not at all, even after a SIGKILL; an existing
    one (--overwrite) gets whole frames only. Partial folders of killed runs are removed first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_partial_folders(path.parent, path.name)
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        partial.mkdir()
    except OSError as exc:
        raise UserError(f"cannot create output folder '{path}': {exc.strerror or exc}") from None
    try:
        for t, frame in enumerate(frames):
            try:
                write_png(partial / frame_name(t), frame)
            except UserError as exc:  # name the frame the user asked for, not the hidden folder
                raise UserError(str(exc).replace(str(partial), str(path))) from None
        if not path.exists():
            os.replace(partial, path)
            return
        remove_temp_files(path)
        for frame_file in sorted(partial.iterdir()):
            os.replace(frame_file, path / frame_file.name)
        partial.rmdir()
    except OSError as exc:
        raise UserError(f"cannot write frames into '{path}': {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    remove_earlier_frames(path, len(frames))


def remove_partial_folders(folder: Path, name: str) -> list[Path]:
    """Delete the partial frame folders that killed writes of output `name` left in `folder`."""
    stale = sorted(p for p in folder.glob(f".{name}.*.partial") if p.is_dir())
    for partial in stale:
        shutil.rmtree(partial, ignore_errors=True)
    return stale
