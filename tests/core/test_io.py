"""Video and image IO against real files written in tmp_path."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidgen.core import io
from vidgen.core.io import (
    VideoReadError,
    check_image,
    colour_fraction,
    is_colour,
    make_grid,
    probe_video,
    read_image,
    read_video,
    rgb_to_gray,
    write_contact_sheet,
    write_mp4,
    write_png,
)


def smooth_video(frames: int, height: int, width: int) -> np.ndarray:
    """Soft gradients drifting over time: easy for a codec and for 4:2:0 chroma, so round trips stay close."""
    t = np.arange(frames)[:, None, None]
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    red = 128 + 90 * np.sin(np.pi * (x + 0.04 * t))
    green = 128 + 90 * np.cos(np.pi * (y - 0.03 * t))
    blue = 128 + 60 * np.sin(np.pi * (x + y) + 0.1 * t)
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def write_with_codec(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fps: int = 8,
                     gop: int = 5) -> None:
    """Write with any PyAV encoder; a short GOP puts keyframes mid-file so reads really seek."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.codec_context.gop_size = gop
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def write_faststart(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    """An H.264 mp4 with its index (the 'moov' box) before its frames, as streaming sites serve them."""
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def write_jpeg(path: Path, image: np.ndarray) -> None:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuvj420p"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")))
        container.mux(stream.encode())


def has_encoder(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # PyAV raises different types for unknown codecs across versions
        return False
    return True


FORMATS = {  # extension: (encoder, pixel format)
    "webm": ("libvpx", "yuv420p"),
    "avi": ("mpeg4", "yuv420p"),
    "mkv": ("ffv1", "yuv420p"),
    "gif": ("gif", "rgb8"),
    "mov": ("mpeg4", "yuv420p"),
}


def test_mp4_round_trip(tmp_path: Path) -> None:
    video = smooth_video(20, 32, 48)
    path = tmp_path / "clip.mp4"
    write_mp4(path, video, fps=8, crf=18)

    info = probe_video(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (20, 8.0, 48, 32)
    decoded = read_video(path)
    assert decoded.shape == video.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(float) - video).mean() < 3.0


@pytest.mark.parametrize("fps", [Fraction(30000, 1001), 12.5, 29.97])
def test_fractional_fps(tmp_path: Path, fps: float | Fraction) -> None:
    path = tmp_path / "clip.mp4"
    write_mp4(path, smooth_video(6, 16, 16), fps=fps)
    assert probe_video(path).fps == pytest.approx(float(fps), rel=1e-6)


def test_odd_size_is_padded_by_edge_replication(tmp_path: Path) -> None:
    video = smooth_video(8, 31, 33)  # height 31, width 33
    path = tmp_path / "odd.mp4"
    write_mp4(path, video, fps=8)
    decoded = read_video(path)
    assert decoded.shape == (8, 32, 34, 3)  # padded to even: yuv420p needs it for every player
    assert np.abs(decoded[:, :31, :33].astype(float) - video).mean() < 3.0
    assert np.abs(decoded[:, :31, 33].astype(float) - video[:, :, 32]).mean() < 3.0  # replicated edge


def test_write_is_atomic_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_mp4(path, smooth_video(4, 16, 16), fps=8)
    write_mp4(path, smooth_video(6, 16, 16), fps=8)
    assert probe_video(path).num_frames == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temporary file left behind


def test_clip_from_middle_equals_full_read(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_mp4(path, smooth_video(30, 16, 24), fps=8)
    full = read_video(path)
    np.testing.assert_array_equal(read_video(path, start=11, num_frames=5, stride=3), full[11:26:3])
    np.testing.assert_array_equal(read_video(path, start=25), full[25:])


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_each_container_format(tmp_path: Path, ext: str) -> None:
    codec, pix_fmt = FORMATS[ext]
    if not has_encoder(codec):
        pytest.skip(f"PyAV has no {codec} encoder")
    video = smooth_video(24, 16, 24)
    path = tmp_path / f"clip.{ext}"
    write_with_codec(path, video, codec, pix_fmt)

    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (24, 24, 16)
    assert info.fps == pytest.approx(8.0)
    full = read_video(path)
    assert full.shape == video.shape
    for start in (0, 6, 13, 17):  # on and between keyframes (every 5th frame)
        np.testing.assert_array_equal(read_video(path, start, num_frames=4, stride=2), full[start:start + 8:2])


def test_middle_clip_seeks_instead_of_decoding_from_the_start(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clip.mkv"
    video = smooth_video(40, 16, 16)
    write_with_codec(path, video, "ffv1", "yuv420p", gop=1)
    full = read_video(path)

    def decode_from_start(*args: object) -> None:
        raise AssertionError("read_video decoded from the start of the file")

    monkeypatch.setattr(io, "_decode_counting", decode_from_start)
    np.testing.assert_array_equal(read_video(path, start=30, num_frames=5), full[30:35])


@pytest.mark.parametrize("pix_fmt, expected", [("gray", (77, 77, 77)), ("bgra", (10, 20, 30))])
def test_gray_and_alpha_sources_read_as_rgb(tmp_path: Path, pix_fmt: str, expected: tuple[int, ...]) -> None:
    path = tmp_path / "clip.mkv"
    if pix_fmt == "gray":
        image, layout = np.full((8, 16), 77, np.uint8), "gray"
    else:
        image, layout = np.dstack([np.full((8, 16), v, np.uint8) for v in (10, 20, 30, 200)]), "rgba"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=8)
        stream.width, stream.height, stream.pix_fmt = 16, 8, pix_fmt
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format=layout)))
        container.mux(stream.encode())
    decoded = read_video(path)
    assert decoded.shape == (3, 8, 16, 3)
    assert tuple(decoded[0, 0, 0]) == expected


def unreadable_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.mp4"
    write_mp4(good, smooth_video(20, 32, 32), fps=8)
    data = good.read_bytes()
    files = {"truncated": tmp_path / "truncated.mp4", "empty": tmp_path / "empty.mp4",
             "text": tmp_path / "notes.mp4", "missing": tmp_path / "missing.mp4",
             "audio only": tmp_path / "sound.mkv"}
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a video\n")
    with av.open(str(files["audio only"]), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return files


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "missing", "audio only"])
def test_unreadable_file_raises_one_line_naming_it(tmp_path: Path, kind: str) -> None:
    path = unreadable_files(tmp_path)[kind]
    for read in (probe_video, read_video):
        with pytest.raises(VideoReadError) as caught:
            read(path)
        message = str(caught.value)
        assert path.name in message and "\n" not in message
        assert caught.value.path == str(path)


def test_too_few_frames_raises(tmp_path: Path) -> None:
    path = tmp_path / "short.mp4"
    write_mp4(path, smooth_video(20, 16, 16), fps=8)
    with pytest.raises(VideoReadError, match=r"short\.mp4"):
        read_video(path, start=15, num_frames=4, stride=2)
    with pytest.raises(VideoReadError, match=r"short\.mp4"):
        read_video(path, start=20)


@pytest.mark.parametrize("index", ["last", "first"])
def test_a_cut_off_mp4_says_what_it_lost(tmp_path: Path, index: str) -> None:
    path = tmp_path / "cut.mp4"
    (write_mp4 if index == "last" else write_faststart)(path, smooth_video(20, 32, 32), fps=8)
    data = path.read_bytes()
    kept = len(data) * 6 // 10
    path.write_bytes(data[:kept])
    # With its index at the end (write_mp4), nothing can be located; with it first, the frames before the cut
    # still probe and decode, and only a whole read says which are gone.
    lost = "its index, the 'moov' box" if index == "last" else r"\d+ of its 20 frames"
    reason = rf"not a readable video \(truncated: {kept:,} of at least [\d,]+ bytes, losing {lost}\); re-download"
    with pytest.raises(VideoReadError, match=reason) as caught:
        probe_video(path)
    assert caught.value.path == str(path)
    # A read that meets the cut (a file given to `sample --extend` is read without probing) names it the same way.
    with pytest.raises(VideoReadError, match=reason):
        read_video(path)


@pytest.mark.parametrize("tail", ["padding", "zeros", "a cut trailing box"])
def test_bytes_after_an_mp4s_frames_are_not_a_cut(tmp_path: Path, tail: str) -> None:
    path = tmp_path / "whole.mp4"
    write_mp4(path, smooth_video(10, 16, 16), fps=8)
    extra = {"padding": b"\0" * 3, "zeros": b"\0" * 64,
             "a cut trailing box": (1000).to_bytes(4, "big") + b"free" + bytes(92)}[tail]
    path.write_bytes(path.read_bytes() + extra)
    assert probe_video(path).num_frames == 10
    assert read_video(path).shape == (10, 16, 16, 3)


def test_check_image_finds_damage_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", image)
    write_jpeg(tmp_path / "a.jpg", image)
    png, jpeg = (tmp_path / "a.png").read_bytes(), (tmp_path / "a.jpg").read_bytes()
    flipped = bytearray(png)
    flipped[60] ^= 1  # inside the IDAT chunk's data (signature 8 + IHDR chunk 25 + IDAT header 8 = 41)
    damaged = {
        "flipped bit": (bytes(flipped), "damaged PNG (its IDAT chunk fails its CRC check)"),
        "cut PNG": (png[:len(png) // 2], "truncated PNG (it ends before its IEND chunk)"),
        "cut JPEG": (jpeg[:len(jpeg) // 2], "truncated JPEG (no end-of-image marker)"),
        "text": (b"a shopping list\n", "not a readable image"),
    }
    for name, (data, reason) in damaged.items():
        with pytest.raises(VideoReadError) as caught:
            check_image(data, name)
        assert caught.value.path == name and reason in caught.value.reason
    # Whole PNGs and JPEGs are checked from their bytes alone: nothing is decoded.
    monkeypatch.setattr(io, "read_image", lambda *args, **kwargs: pytest.fail("decoded"))
    check_image(png, "a.png")
    check_image(jpeg, "a.jpg")


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), image)
    grey = image[:, :, :1]
    write_png(tmp_path / "grey.png", grey)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.repeat(grey, 3, axis=2))
    np.testing.assert_array_equal(read_image((tmp_path / "a.png").read_bytes()), image)


def test_read_jpeg(tmp_path: Path) -> None:
    image = np.full((12, 20, 3), (200, 40, 90), np.uint8)
    path = tmp_path / "frame.jpg"
    write_jpeg(path, image)
    decoded = read_image(path)
    assert decoded.shape == (12, 20, 3)
    assert np.abs(decoded.astype(float) - image).mean() < 4.0
    with pytest.raises(VideoReadError, match=r"frame\.jpg"):
        read_image(path.read_bytes()[:40], name=str(path))


def test_make_grid_tiles_and_holds_last_frame() -> None:
    a = np.full((3, 4, 5, 3), 10, np.uint8)
    a[2] = 99
    b = np.full((5, 4, 5, 3), 200, np.uint8)
    grid = make_grid([a, b, b], columns=2, padding=1)
    assert grid.shape == (5, 2 * (4 + 1) + 1, 2 * (5 + 1) + 1, 3)
    np.testing.assert_array_equal(grid[:, 1:5, 1:6], a[[0, 1, 2, 2, 2]])  # held last frame
    np.testing.assert_array_equal(grid[:, 6:10, 1:6], b)  # third video: second row, first column
    assert (grid[:, 0] == 0).all() and (grid[:, 6:10, 7:12] == 0).all()  # padding and the empty cell


def test_contact_sheet_shows_first_middle_last(tmp_path: Path) -> None:
    videos = [np.random.default_rng(i).integers(0, 256, (7, 16, 20, 3), dtype=np.uint8) for i in range(2)]
    path = tmp_path / "sheet.png"
    write_contact_sheet(path, videos)
    sheet = read_image(path)
    assert sheet.shape == (2 * (16 + 2) + 2, 3 * (20 + 2) + 2, 3)
    for row, video in enumerate(videos):
        for column, frame in enumerate((0, 3, 6)):
            y, x = 2 + row * 18, 2 + column * 22
            np.testing.assert_array_equal(sheet[y:y + 16, x:x + 20], video[frame])


# ----------------------------------------------------------------------------------------------------------
# Grayscale


def test_rgb_to_gray_is_bt601_luma_rounded() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    gray = rgb_to_gray(rgb)
    assert gray.shape == (5, 7, 9, 1) and gray.dtype == np.uint8
    expected = np.floor(rgb.astype(np.float64) @ [0.299, 0.587, 0.114] + 0.5)  # float64: exact to well below 1e-9
    np.testing.assert_array_equal(gray[..., 0], expected)
    levels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(rgb_to_gray(np.repeat(levels[:, None], 3, axis=1))[:, 0], levels)  # gray stays
    with pytest.raises(ValueError, match=r"RGB \[\.\.\., 3\]"):
        rgb_to_gray(gray)


def test_gray_frames_are_written_as_gray_rgb(tmp_path: Path) -> None:
    gray = rgb_to_gray(smooth_video(6, 16, 20))  # (6, 16, 20, 1)
    path = tmp_path / "gray.mp4"
    write_mp4(path, gray, fps=8)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (6, 20, 16)
    decoded = read_video(path)
    assert decoded.shape == (6, 16, 20, 3)
    assert colour_fraction(decoded) == 0.0 and not is_colour(decoded)  # gray RGB: the three channels agree
    assert np.abs(decoded.astype(int) - gray.astype(int)).mean() < 2.0  # and hold the luma
    grid = make_grid([gray, gray[:3]], padding=1)
    assert grid.shape == (6, 16 + 2, 2 * 21 + 1, 3)
    np.testing.assert_array_equal(grid[:, 1:17, 1:21], np.repeat(gray, 3, axis=3))
    mixed = make_grid([gray, smooth_video(6, 16, 20)])  # gray and colour tiles side by side
    assert mixed.shape[-1] == 3
    write_contact_sheet(tmp_path / "sheet.png", [gray])
    sheet = read_image(tmp_path / "sheet.png")
    np.testing.assert_array_equal(sheet[2:18, 2:22], np.repeat(gray[0], 3, axis=2))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\] or gray \[T, H, W, 1\]"):
        write_mp4(tmp_path / "two.mp4", np.zeros((2, 4, 4, 2), np.uint8), fps=8)


def test_colour_is_told_from_gray_after_a_codec(tmp_path: Path) -> None:
    from vidgen.core.synthetic import render_video

    colour = render_video(0, np.arange(8) / 8, 32)
    assert is_colour(colour) and colour_fraction(colour) > 0.3
    write_mp4(tmp_path / "colour.mp4", colour, fps=8)
    assert is_colour(read_video(tmp_path / "colour.mp4"))
    gray = np.repeat(rgb_to_gray(colour), 3, axis=3)
    assert not is_colour(gray)
    noisy = np.clip(gray + np.random.default_rng(0).integers(-5, 6, gray.shape), 0, 255).astype(np.uint8)
    assert not is_colour(noisy)  # chroma noise of a few levels is still gray
    speck = gray.copy()
    speck[:, :2, :2] = (255, 0, 0)  # a red speck on 4 of 1024 pixels (0.4%)
    assert not is_colour(speck)
    patch = gray.copy()
    patch[:, :8, :8] = (255, 0, 0)  # a red patch on 6% of the pixels
    assert is_colour(patch)
