import cv2
import numpy as np
import pytest

from datasets.video_io import check_writable_output, read_video, write_video
from utils.errors import UserError


def _smooth_frames(t=6, h=32, w=48):
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(x * 5 + 10 * i) % 256, y * 7, np.full_like(x, 128)], axis=-1) for i in range(t)]
    return np.array(frames, dtype=np.uint8)


def test_mp4_round_trip_keeps_count_size_fps_and_colours(tmp_path):
    frames = _smooth_frames()
    path = write_video(tmp_path / "out" / "clip.mp4", frames, fps=12)
    back, fps = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert fps == pytest.approx(12)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 6   # lossy codec, but RGB order kept
    assert np.abs(back[..., 2].astype(int) - 128).mean() < 6


def test_frame_folder_round_trip_is_exact_for_8_bit_16_bit_and_gray(tmp_path):
    frames8 = _smooth_frames(3)
    write_video(tmp_path / "f8", frames8)
    back, fps = read_video(tmp_path / "f8", fps=30)
    assert np.array_equal(back, frames8) and fps == 30
    assert sorted(p.name for p in (tmp_path / "f8").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    frames16 = np.random.default_rng(0).integers(0, 65536, (2, 5, 7, 3), dtype=np.uint16)
    write_video(tmp_path / "f16", frames16)
    back16, _ = read_video(tmp_path / "f16")
    assert back16.dtype == np.uint16 and np.array_equal(back16, frames16)
    gray = frames8[..., :1]
    write_video(tmp_path / "gray", gray)
    assert np.array_equal(read_video(tmp_path / "gray")[0], gray)


def test_single_image_is_a_one_frame_video(tmp_path):
    frame = _smooth_frames(1)[0]
    cv2.imwrite(str(tmp_path / "im.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    frames, fps = read_video(tmp_path / "im.png")
    assert frames.shape == (1, 32, 48, 3) and np.array_equal(frames[0], frame) and fps == 25


def test_read_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(UserError, match="bad.mp4"):
        read_video(tmp_path / "bad.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        read_video(tmp_path / "empty")


def test_output_checks(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_writable_output(tmp_path / "file.txt" / "out.mp4")
    with pytest.raises(UserError, match="unsupported extension '.gif'"):
        check_writable_output(tmp_path / "out.gif")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(UserError, match="existing folder"):
        check_writable_output(tmp_path / "dir.mp4")
    assert check_writable_output(tmp_path / "new" / "deeper" / "out.mp4") == tmp_path / "new" / "deeper" / "out.mp4"
    assert not (tmp_path / "new").exists()
