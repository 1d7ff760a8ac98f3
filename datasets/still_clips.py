"""Short clips made from the natural colour photographs that ship with scikit-image.

Three built-in videos are little training data. scikit-image bundles colour photographs (a portrait,
a cat, coffee, a rocket, a motorcycle, a deep-field image, a retina, a stained tissue sample); each
becomes a clip by a smooth synthetic camera motion: a slow drift (a few sums of low-frequency
sinusoids, up to about 2 pixels a frame) with a slight zoom and rotation, sampled with bilinear
interpolation and cropped so that no border shows. The motion is seeded by the image's name, so a
clip is the same on every machine. No download: only files inside the installed package are read.
"""
from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path

import cv2
import numpy as np

from utils.errors import UserError

# name -> file inside skimage/data (colour photographs only)
STILL_IMAGES = {"astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png",
                "rocket": "rocket.jpg", "motorcycle": "motorcycle_left.png", "hubble": "hubble_deep_field.jpg",
                "retina": "retina.jpg", "ihc": "ihc.png"}
CLIP_FRAMES = 30
# Photographs are shrunk (area averaging) so that their short side is at most this, about the scale
# of the built-in videos' texture.
MAX_SHORT_SIDE = 320
# Largest drift in pixels over the clip, and the zoom / rotation ranges.
MAX_DRIFT = 24.0
MAX_ZOOM = 0.03
MAX_ROTATION_DEGREES = 1.5


def still_image(name: str) -> np.ndarray:
    """The photograph `name` as RGB uint8 (H,W,3), shrunk so its short side is at most MAX_SHORT_SIDE."""
    if name not in STILL_IMAGES:
        raise UserError(f"unknown still image '{name}'; choose one of {', '.join(STILL_IMAGES)}")
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the still clips come with scikit-image; install it with 'pip install scikit-image'")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / STILL_IMAGES[name]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"still image '{name}' is missing from the scikit-image install ({path})")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    scale = min(1.0, MAX_SHORT_SIDE / min(image.shape[:2]))
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def camera_path(name: str, frames: int = CLIP_FRAMES) -> np.ndarray:
    """(frames, 4): x and y drift (pixels), zoom factor and rotation (degrees) of each frame, smooth
    and seeded by `name`."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    t = np.linspace(0.0, 1.0, frames)
    path = np.zeros((frames, 4))
    for column, amplitude in enumerate((MAX_DRIFT / 2, MAX_DRIFT / 2, MAX_ZOOM, MAX_ROTATION_DEGREES)):
        for harmonic in (1, 2):
            phase, weight = rng.uniform(0, 2 * np.pi), rng.uniform(-1, 1) / harmonic
            path[:, column] += amplitude * weight * (np.sin(np.pi * harmonic * t + phase) - np.sin(phase))
    path[:, 2] += 1.0
    return path


def still_clip(name: str, frames: int = CLIP_FRAMES) -> np.ndarray:
    """RGB uint8 clip (T,H,W,3) of the photograph `name` under its camera path; the crop leaves out
    every pixel that any frame would have to invent."""
    image = still_image(name)
    height, width = image.shape[:2]
    margin = int(np.ceil(MAX_DRIFT + max(height, width) * (MAX_ZOOM + np.radians(MAX_ROTATION_DEGREES)))) + 2
    if min(height, width) <= 2 * margin + 64:
        raise UserError(f"still image '{name}' is too small for a clip ({width}x{height})")
    centre = (width / 2.0, height / 2.0)
    out = []
    for dx, dy, zoom, angle in camera_path(name, frames):
        matrix = cv2.getRotationMatrix2D(centre, angle, zoom)
        matrix[:, 2] += (dx, dy)
        warped = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101)
        out.append(warped[margin:height - margin, margin:width - margin])
    return np.stack(out)
