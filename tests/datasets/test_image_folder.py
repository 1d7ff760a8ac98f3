import cv2
import numpy as np
import pytest
from PIL import Image

from datasets.image_folder import list_frames, list_sequence_dirs, read_frame_native, read_frame_rgb, read_frames
from utils import errors
from utils.errors import UserError

RNG = np.random.default_rng(0)


def _rgb(h=6, w=7):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_rgb(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_sequence_dirs_sorted_hidden_skipped(tmp_path):
    for name in ("b", "a", ".hidden", "c10"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_sequence_dirs(tmp_path)] == ["a", "b", "c10"]


def test_sequence_dir_errors(tmp_path):
    with pytest.raises(UserError, match="'.*missing' does not exist"):
        list_sequence_dirs(tmp_path / "missing")
    with pytest.raises(UserError, match="no sequence folders"):
        list_sequence_dirs(tmp_path)
    _write_rgb(tmp_path / "00000.png", _rgb())
    with pytest.raises(UserError, match="holds frames directly"):
        list_sequence_dirs(tmp_path)
    with pytest.raises(UserError, match="is a file"):
        list_sequence_dirs(tmp_path / "00000.png")


def test_frames_any_case_extension_and_one_warning_for_other_files(tmp_path, capsys):
    names = ["b.PNG", "a.jpg", "c.Jpeg", "d.bmp", "e.tif", "f.TIFF"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    for other in ("list.txt", "meta.json", ".DS_Store"):
        (tmp_path / other).write_text("x")
    assert [p.name for p in list_frames(tmp_path)] == sorted(names)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "skipped 2 file(s)" in err


def test_rgb_order_gray_rgba_palette(tmp_path):
    rgb = _rgb()
    assert np.array_equal(read_frame_rgb(_write_rgb(tmp_path / "rgb.png", rgb)), rgb)
    gray = RNG.integers(0, 256, (5, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    assert np.array_equal(read_frame_rgb(tmp_path / "gray.png"), np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.dstack([rgb, RNG.integers(0, 256, rgb.shape[:2], dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_frame_rgb(tmp_path / "rgba.png"), rgb)
    palette = Image.fromarray(rgb).convert("P")
    palette.save(tmp_path / "p.png")
    assert np.array_equal(read_frame_rgb(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))


def test_16bit_becomes_8bit_like_cv2_imread_but_native_keeps_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(errors, "_warned", set())      # the 16-bit note is printed once per process
    rgb16 = RNG.integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    frame = read_frame_rgb(path)
    assert frame.dtype == np.uint8 and np.array_equal(frame, (rgb16 >> 8).astype(np.uint8))
    assert np.array_equal(frame, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    assert "16-bit" in capsys.readouterr().err
    native = read_frame_native(path)
    assert native.dtype == np.uint16 and np.array_equal(native, rgb16)
    gray16 = RNG.integers(0, 65536, (4, 5), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    assert np.array_equal(read_frame_native(tmp_path / "g16.png"), gray16[:, :, None])


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_image_names_the_file(tmp_path, ext):
    path = _write_rgb(tmp_path / f"cut.{ext}", _rgb(32, 32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=f"cut.{ext}"):
        read_frame_rgb(path)


def test_garbage_and_empty_files_name_the_file(tmp_path):
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(UserError, match="fake.png"):
        read_frame_rgb(tmp_path / "fake.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="empty.jpg.*empty file"):
        read_frame_rgb(tmp_path / "empty.jpg")


def test_mixed_sizes_name_the_sequence_and_sizes(tmp_path):
    a = _write_rgb(tmp_path / "00000.png", _rgb(6, 7))
    b = _write_rgb(tmp_path / "00001.png", _rgb(6, 8))
    assert read_frames([a, a], "seq").shape == (2, 6, 7, 3)
    with pytest.raises(UserError, match=r"sequence 'seq'.*00000.png' is 7x6x3 but '00001.png' is 8x6x3"):
        read_frames([a, b], "seq")


def test_exif_rotated_jpeg_reads_like_cv2_imread(tmp_path):
    image = Image.fromarray(_rgb(20, 30))
    exif = image.getexif()
    exif[0x0112] = 6                                    # "rotate 90 degrees clockwise"
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    official = cv2.cvtColor(cv2.imread(str(tmp_path / "rotated.jpg")), cv2.COLOR_BGR2RGB)
    frame = read_frame_rgb(tmp_path / "rotated.jpg")
    assert frame.shape == (30, 20, 3) and np.array_equal(frame, official)
