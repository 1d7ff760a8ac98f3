"""CRVD raw video (RViDeNet's indoor set) as the official STBN code reads it, in both folder layouts.

Each scene (1-11) and ISO (1600-25600) holds 7 frames: one clean sequence
`frame{1..7}_clean_and_slightly_denoised.tiff` and ten noisy captures `frame{1..7}_noisy{0..9}.tiff`,
16-bit TIFFs of 12-bit GBRG mosaics. Layouts: STBN's `indoor_raw_gt/indoor_raw_gt_scene{s}/scene{s}/
ISO{iso}` (and `indoor_raw_noisy/indoor_raw_noisy_scene{s}/...`), or FloRNN's `indoor_raw_gt/scene{s}/
ISO{iso}` (and `indoor_raw_noisy/scene{s}/...`). Frames are packed to 4 channels (utils/raw.py) and
normalised. The official training uses scenes 7-11 (CRVD's test scenes: self-supervised on the
captures themselves), the test the same scenes' clean sequences and capture `noisy0`.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from utils.errors import UserError
from utils.raw import RAW_RANGE, normalize_raw, pack_gbrg

ISOS = (1600, 3200, 6400, 12800, 25600)
# Per-ISO Poisson gain and Gaussian read-noise variance, in 12-bit units (official values).
SHOT_GAIN = (3.513262, 6.955588, 13.486051, 26.585953, 52.032536)
READ_VARIANCE = (11.917691, 38.117816, 130.818508, 484.539790, 1819.818657)
TEST_SCENES = (7, 8, 9, 10, 11)
FRAMES = 7
CAPTURES = 10
CLEAN_NAME = "frame{t}_clean_and_slightly_denoised.tiff"
NOISY_NAME = "frame{t}_noisy{k}.tiff"


def noise_parameters(iso: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of an ISO on the normalised scale, float32 as the official dataset computes them:
    the noise variance of a pixel of clean value x is a*x + b."""
    if iso not in ISOS:
        raise UserError(f"ISO {iso} is not a CRVD setting; expected one of {', '.join(map(str, ISOS))}")
    i = ISOS.index(iso)
    a = torch.tensor(SHOT_GAIN[i], dtype=torch.float32) / RAW_RANGE
    b = torch.tensor(READ_VARIANCE[i], dtype=torch.float32) / RAW_RANGE ** 2
    return a, b


LAYOUTS = ("stbn", "florn")


def layout_dir(root: str | os.PathLike, kind: str, scene: int, iso: int, layout: str) -> Path:
    """The ISO folder of one scene, `kind` 'gt' or 'noisy', in the 'stbn' or 'florn' layout."""
    top = Path(root) / f"indoor_raw_{kind}"
    scene_dir = top / f"indoor_raw_{kind}_scene{scene}" / f"scene{scene}" if layout == "stbn" else top / f"scene{scene}"
    return scene_dir / f"ISO{iso}"


def sequence_dir(root: str | os.PathLike, kind: str, scene: int, iso: int) -> Path:
    """The ISO folder of one scene ('gt' or 'noisy'), in whichever layout `root` uses."""
    stbn, florn = (layout_dir(root, kind, scene, iso, layout) for layout in LAYOUTS)
    for folder in (stbn, florn):
        if folder.is_dir():
            return folder
    raise UserError(f"CRVD folder for scene {scene} ISO {iso} not found: expected '{stbn}' (STBN layout) "
                    f"or '{florn}' (FloRNN layout)")


def read_raw_frame(path: Path) -> np.ndarray:
    """One 16-bit Bayer frame (H,W) uint16 with even sides; `UserError` naming the problem."""
    if not path.is_file():
        raise UserError(f"CRVD frame '{path}' does not exist")
    frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if frame is None:
        raise UserError(f"cannot decode CRVD frame '{path}' (not a TIFF, or damaged)")
    if frame.ndim != 2:
        raise UserError(f"CRVD frame '{path}' has {frame.shape[2]} channels; a raw Bayer frame has one")
    if frame.dtype != np.uint16:
        raise UserError(f"CRVD frame '{path}' holds {frame.dtype} samples; raw frames are 16-bit TIFFs")
    if frame.shape[0] % 2 or frame.shape[1] % 2:
        raise UserError(f"CRVD frame '{path}' is {frame.shape[1]}x{frame.shape[0]}; a Bayer frame has even sides")
    return frame


def read_raw_sequence(folder: Path, name: str, frames: int = FRAMES) -> np.ndarray:
    """Frames 1..`frames` of one capture (`name` with {t}) as (T,H,W) uint16, all of one size."""
    sequence = [read_raw_frame(folder / name.format(t=t)) for t in range(1, frames + 1)]
    first = sequence[0].shape
    for t, frame in enumerate(sequence, start=1):
        if frame.shape != first:
            raise UserError(f"'{folder / name.format(t=t)}' is {frame.shape[1]}x{frame.shape[0]} but frame 1 of "
                            f"that sequence is {first[1]}x{first[0]}")
    return np.stack(sequence)


def packed(sequence: np.ndarray) -> torch.Tensor:
    """(T,H,W) 12-bit mosaics -> (T,4,H/2,W/2) float32 on [0, 1], as the official datasets give them."""
    return normalize_raw(pack_gbrg(torch.from_numpy(sequence.astype(np.int32))))


class CRVDTrainDataset(Dataset):
    """The official training set: items (clean, noisy, a, b), clean and noisy (T,4,p,p).

    Item i uses ISO (i mod 250) // 50, scene (i mod 50) // 10 and capture i mod 10; the crop is
    `2 * patch_size` raw pixels at an even position (the Bayer phase is kept), the same for the
    clean and the noisy sequence, as the official `crop_position` draws it. The clean clip is for
    logging only: training is self-supervised on the noisy capture. `mirror_seq` appends the
    time-reversed clip (14 frames), as the official option does.
    """

    def __init__(self, root: str | os.PathLike, patch_size: int = 96, patches_per_epoch: int = 256000,
                 scenes: tuple[int, ...] = TEST_SCENES, isos: tuple[int, ...] = ISOS, mirror_seq: bool = False):
        if patch_size < 1 or patches_per_epoch < 1:
            raise UserError(f"patch_size and patches_per_epoch must be positive, got {patch_size}, "
                            f"{patches_per_epoch}")
        self.raw_patch, self.patches_per_epoch = 2 * patch_size, patches_per_epoch
        self.scenes, self.isos, self.mirror_seq = tuple(scenes), tuple(isos), mirror_seq
        self.clean: dict[tuple[int, int], np.ndarray] = {}
        self.noisy: dict[tuple[int, int, int], np.ndarray] = {}
        for iso in self.isos:
            for scene in self.scenes:
                self.clean[iso, scene] = read_raw_sequence(sequence_dir(root, "gt", scene, iso), CLEAN_NAME)
                folder = sequence_dir(root, "noisy", scene, iso)
                for k in range(CAPTURES):
                    self.noisy[iso, scene, k] = read_raw_sequence(folder, NOISY_NAME.replace("{k}", str(k)))
                height, width = self.clean[iso, scene].shape[1:]
                if height < self.raw_patch + 4 or width < self.raw_patch + 4:
                    raise UserError(f"CRVD scene {scene} ISO {iso}: frames are {width}x{height}, too small "
                                    f"for patch_size={patch_size} ({self.raw_patch} raw pixels and a margin of 4)")

    def __len__(self) -> int:
        return self.patches_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index %= len(self.isos) * len(self.scenes) * CAPTURES
        iso = self.isos[index // (len(self.scenes) * CAPTURES)]
        scene = self.scenes[(index % (len(self.scenes) * CAPTURES)) // CAPTURES]
        clean, noisy = self.clean[iso, scene], self.noisy[iso, scene, index % CAPTURES]
        height, width = clean.shape[1:]
        # Even positions, over the official range (which leaves out the last two).
        top = 2 * int(np.random.randint(0, (height - self.raw_patch) // 2 - 1))
        left = 2 * int(np.random.randint(0, (width - self.raw_patch) // 2 - 1))
        window = np.s_[:, top:top + self.raw_patch, left:left + self.raw_patch]
        a, b = noise_parameters(iso)
        clean, noisy = packed(clean[window]), packed(noisy[window])
        if self.mirror_seq:
            clean, noisy = (torch.cat([x, x.flip(0)]) for x in (clean, noisy))
        return {"clean": clean, "noisy": noisy, "a": a.view(1, 1, 1, 1), "b": b.view(1, 1, 1, 1)}


class CRVDTestDataset(Dataset):
    """The official test set: 25 items in ISO-major order (ISO, then scene 7-11), full frames:
    (clean, noisy0) packed (T,4,H/2,W/2), with the ISO, scene and noise parameters."""

    def __init__(self, root: str | os.PathLike, scenes: tuple[int, ...] = TEST_SCENES,
                 isos: tuple[int, ...] = ISOS):
        self.items = []
        for iso in isos:
            for scene in scenes:
                clean = read_raw_sequence(sequence_dir(root, "gt", scene, iso), CLEAN_NAME)
                noisy = read_raw_sequence(sequence_dir(root, "noisy", scene, iso), NOISY_NAME.replace("{k}", "0"))
                self.items.append((iso, scene, clean, noisy))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        iso, scene, clean, noisy = self.items[index]
        a, b = noise_parameters(iso)
        return {"clean": packed(clean), "noisy": packed(noisy), "iso": iso, "scene": scene, "a": a, "b": b}
