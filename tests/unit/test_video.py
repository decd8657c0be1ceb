"""Recorded episodes: frames shrunk to a width, GIFs thinned in time, MP4 written and read back."""

from __future__ import annotations

import numpy as np
import pytest

from rllib_hatrpo.experiments.evaluation import GIF_MAX_FPS, prepare_frames, write_video


def _frames(n: int, height: int = 480, width: int = 640) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def test_frames_are_shrunk_to_the_width_keeping_the_aspect_and_never_enlarged():
    out, fps = prepare_frames(_frames(3), 20.0, width=320, gif=False)
    assert [f.shape for f in out] == [(240, 320, 3)] * 3 and fps == 20.0
    out, _ = prepare_frames(_frames(2, 100, 200), 20.0, width=320, gif=False)
    assert [f.shape for f in out] == [(100, 200, 3)] * 2


def test_a_gif_keeps_every_kth_frame_and_lasts_as_long_as_the_episode():
    """20 fps: every 2nd frame at 10 fps (k = ceil(20 / 15)); 10 fps: all frames."""
    frames = _frames(10, 32, 32)
    out, fps = prepare_frames(frames, 20.0, width=320, gif=True)
    assert len(out) == 5 and fps == 10.0 and fps <= GIF_MAX_FPS
    assert all(np.array_equal(a, b) for a, b in zip(out, frames[::2], strict=True))
    assert len(out) / fps == pytest.approx(len(frames) / 20.0)
    out, fps = prepare_frames(frames, 10.0, width=320, gif=True)
    assert len(out) == 10 and fps == 10.0


def test_mp4_is_written_and_reads_back_frame_by_frame(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    frames, fps = prepare_frames(_frames(12, 96, 128), 20.0, width=64, gif=False)
    path = tmp_path / "episode.mp4"
    write_video(frames, path, fps)
    back = iio.imread(path)
    assert back.shape[0] == 12 and back.shape[1:3] == (48, 64)
