"""Video and image IO with PyAV, in the IO-boundary layout: uint8 [T, H, W, C] RGB.

Files are read as RGB (C = 3); grayscale data (C = 1, data.channels 1) is made from it by `rgb_to_gray`, and the
writers take either, storing gray as gray RGB.

Frame indices are decode order ordinals (frame 0 is the first frame a decoder outputs). Reading a clip seeks
to the keyframe before it and decodes forward, mapping each decoded frame's timestamp to its index at the
stream's frame rate; that mapping is exact for constant-frame-rate files, which is what video datasets hold.
No PIL: images are decoded with PyAV and PNGs are written with zlib.

Damage is named where it is found: a cut-off mp4 or mov says what it lost when probed, and a frame image can be
checked whole (check_image) by reading it, without decoding it.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from vidgen.errors import UserError

# Containers whose header holds an exact per-sample table, so the stream's frame count can be trusted
# without demuxing. Others (matroska/webm, avi, gif, ...) state no count or one that can be wrong.
_EXACT_COUNT_FORMATS = {"mov", "mp4"}


class VideoReadError(UserError):
    """A file is not a readable video or image, or has fewer frames than asked for."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across worker processes
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    num_frames: int
    fps: float | None
    """Frames per second the file states (None when it states none)."""
    width: int
    height: int


# ----------------------------------------------------------------------------------------------------------
# Reading


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, rate and size of a video file, without decoding any frame.

    A cut-off mp4 or mov is a VideoReadError saying what was lost, here, once, rather than a decoding error at
    every clip that reaches past the cut (its header still lists every frame).
    """
    path = Path(path)
    if (truncation := _truncation(path)) is not None:
        raise VideoReadError(path, truncation)
    with _open_video(path) as (container, stream):
        num_frames = stream.frames
        trusted = _EXACT_COUNT_FORMATS & set(container.format.name.split(","))
        if not trusted or num_frames <= 0:
            # Demuxing reads packets but decodes nothing: cheap, and exact (one packet per frame; flush
            # packets are empty).
            with _av_errors(path):
                num_frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
        rate = _frame_rate(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
    if num_frames == 0 or width == 0 or height == 0:
        raise VideoReadError(path, "the video stream holds no frames; re-encode or remove the file")
    return VideoInfo(path, num_frames, float(rate) if rate else None, width, height)


def read_video(path: str | Path, start: int = 0, num_frames: int | None = None, stride: int = 1) -> np.ndarray:
    """Frames start, start + stride, ... (num_frames of them; None: to the end) as uint8 [T, H, W, 3] RGB."""
    if start < 0 or stride < 1 or (num_frames is not None and num_frames < 1):
        raise ValueError(f"bad clip: start={start}, num_frames={num_frames}, stride={stride}")
    path = Path(path)
    last = None if num_frames is None else start + (num_frames - 1) * stride
    frames = None
    if start > 0:
        with _open_video(path) as (container, stream), _av_errors(path):
            frames = _seek_and_decode(container, stream, start, last, stride)
    if frames is None:  # no seek needed, or the seek was unusable: decode from the beginning
        with _open_video(path) as (container, stream), _av_errors(path):
            frames = _decode_counting(container, stream, start, last, stride)
    if not frames or (num_frames is not None and len(frames) < num_frames):
        wanted = "any frame" if num_frames is None else f"{num_frames} frames (stride {stride})"
        raise VideoReadError(path, f"has {len(frames)} of {wanted} from frame {start}; "
                                   "the file is shorter than the clip asked for, or is damaged")
    return np.stack(frames)


def read_image(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """A PNG or JPEG (a path, or the file's bytes) as uint8 [H, W, 3] RGB; `name` labels errors for bytes."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    file: str | BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with av.open(file, metadata_errors="replace") as container:
            if not container.streams.video:
                raise VideoReadError(label, "not an image")
            for frame in container.decode(container.streams.video[0]):
                return frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:
        raise VideoReadError(label, f"not a readable image ({_reason(exc)})") from None
    raise VideoReadError(label, "holds no image")


@contextmanager
def _open_video(path: Path) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    if not path.is_file():
        raise VideoReadError(path, "no such file")
    with _av_errors(path):
        # Tags in a legacy encoding are no reason to reject a video: replace what is not UTF-8.
        container = av.open(str(path), metadata_errors="replace")
    try:
        if not container.streams.video:
            raise VideoReadError(path, "the file has no video stream")
        yield container, container.streams.video[0]
    finally:
        container.close()


@contextmanager
def _av_errors(path: Path) -> Iterator[None]:
    """Turn FFmpeg's errors (corrupt, truncated or non-video data) into one line naming the file."""
    try:
        yield
    except av.FFmpegError as exc:
        reason = _truncation(path) or f"not a readable video ({_reason(exc)})"
        raise VideoReadError(path, reason) from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _frame_rate(stream: av.VideoStream) -> Fraction | None:
    # guessed_rate is FFmpeg's best judgement (for GIF, the nominal rate rather than the mean of rounded
    # centisecond delays); average_rate is the fallback.
    for rate in (stream.guessed_rate, stream.average_rate):
        if rate:
            return Fraction(rate)
    return None


def _seek_and_decode(container: av.container.InputContainer, stream: av.VideoStream, start: int,
                     last: int | None, stride: int) -> list[np.ndarray] | None:
    """Seek to the keyframe at or before frame `start`, decode forward, and keep the wanted frames.

    Returns None when the seek cannot be trusted (no rate or timestamps, it landed after `start`, or consecutive
    frames are not one frame apart at the stated rate: a variable frame rate, whose indices only counting gives).
    """
    rate = _frame_rate(stream)
    if rate is None or stream.time_base is None:
        return None
    origin = stream.start_time or 0
    time_base = Fraction(stream.time_base)
    target_pts = origin + round(Fraction(start) / rate / time_base)
    try:
        container.seek(target_pts, stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        return None
    frames: list[np.ndarray] = []
    previous: int | None = None
    for frame in container.decode(stream):
        if frame.pts is None:
            return None
        index = round((frame.pts - origin) * time_base * rate)
        if index > start if previous is None else index != previous + 1:
            return None
        previous = index
        if last is not None and index > last:
            break
        if index >= start and (index - start) % stride == 0:
            frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def _decode_counting(container: av.container.InputContainer, stream: av.VideoStream, start: int,
                     last: int | None, stride: int) -> list[np.ndarray]:
    """Decode from the file's start, numbering frames by their order."""
    frames = []
    for index, frame in enumerate(container.decode(stream)):
        if last is not None and index > last:
            break
        if index >= start and (index - start) % stride == 0:
            frames.append(frame.to_ndarray(format="rgb24"))  # converts gray, RGBA, YUV ... to RGB
    return frames


# ----------------------------------------------------------------------------------------------------------
# Grayscale


def rgb_to_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] RGB -> uint8 [..., 1] luma, ITU-R BT.601: Y = 0.299 R + 0.587 G + 0.114 B, rounded
    (half up). Integer arithmetic, so it is exact: a gray pixel (R = G = B) keeps its value."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 1 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB [..., 3], got {frames.dtype} {frames.shape}")
    rgb = frames.astype(np.uint32)
    luma = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000  # at most 255
    return luma.astype(np.uint8)[..., None]


COLOUR_TOLERANCE = 12
"""Levels of channel spread (max - min of R, G, B) that a gray video may show without being colour. Gray RGB
through write_mp4 (H.264, 4:2:0) decodes with no spread at all (its chroma is exactly neutral), but gray footage
from elsewhere carries chroma noise: an analogue or camera transfer, JPEG frames, another encoder's rounding. A
chroma error of d levels becomes up to ~2d of spread in RGB (YUV -> RGB gains of about 1.6 and 2.0), so 12 lets
noise of a few levels through, while a visibly coloured object spreads by tens of levels (the synthetic shapes:
about 200; even their dim, tinted background: 9 to 18)."""
COLOUR_FRACTION = 0.01
"""A video is in colour when more than this fraction of its pixels spread beyond COLOUR_TOLERANCE: a few stray
pixels (ringing, a logo) do not make a gray video colour, a coloured object of any real size does."""


def colour_fraction(frames: np.ndarray) -> float:
    """The fraction of pixels of uint8 [..., 3] RGB frames whose channels spread (max - min) by more than
    COLOUR_TOLERANCE levels."""
    frames = np.asarray(frames)
    spread = frames.max(axis=-1).astype(np.int16) - frames.min(axis=-1)  # max(|R-G|, |G-B|, |R-B|) per pixel
    return float(np.count_nonzero(spread > COLOUR_TOLERANCE)) / max(1, spread.size)


def is_colour(frames: np.ndarray) -> bool:
    """Whether RGB frames are visibly colour rather than gray stored as RGB (see COLOUR_TOLERANCE)."""
    return colour_fraction(frames) > COLOUR_FRACTION


# ----------------------------------------------------------------------------------------------------------
# Damage: cut-off mp4 / mov files, and damaged frame images


# Box types that open an ISO base media file (mp4, mov): the file is a sequence of top-level boxes, each of which
# states its own size (ISO/IEC 14496-12 §4.2), so a file shorter than its boxes was cut off.
_ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp"}


def _truncation(path: Path) -> str | None:
    """What a cut-off mp4 / mov lost (None: its top-level boxes fill the file, or it is no such file).

    Cheap enough for every probe: one 16-byte read per top-level box (a handful; one pair per fragment in a
    fragmented mp4). Only a cut file with its index intact is opened, to count the frames that were lost.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            position, seen = 0, set()
            while position < size:
                file.seek(position)
                header = file.read(16)
                if len(header) < 8:
                    return None  # a few trailing bytes: padding that players ignore
                length, kind = struct.unpack(">I4s", header[:8])
                if position == 0 and kind not in _ISO_FIRST_BOXES:
                    return None
                if not (kind.isascii() and kind.isalnum()) or length in range(2, 8):
                    return None  # not a box: trailing junk, or damage that FFmpeg reports; not a cut
                if length == 1:  # a 64-bit size follows the type
                    length = struct.unpack(">Q", header[8:16])[0] if len(header) == 16 else 16
                elif length == 0:  # the box runs to the end of the file
                    length = size - position
                if position + length > size:
                    break
                seen.add(kind)
                position += length
            else:
                return None
    except OSError:
        return None  # unreadable for another reason: opening the file says which
    if b"moov" not in seen:
        lost = "its index, the 'moov' box"
    else:
        counts = _whole_frames(path)
        if counts is not None and counts[0] >= counts[1]:
            return None  # the cut took none of its frames (only trailing metadata): the video is whole
        lost = f"{counts[1] - counts[0]} of its {counts[1]} frames" if counts else "its last frames"
    return (f"not a readable video (truncated: {size:,} of at least {position + length:,} bytes, losing {lost}); "
            "re-download or re-encode it")


def _whole_frames(path: Path) -> tuple[int, int] | None:
    """(frames whose data is all in the file, frames its index lists) of a cut file (None: not countable)."""
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.video or container.streams.video[0].frames <= 0:
                return None  # a fragmented mp4: its index does not count the frames
            stream = container.streams.video[0]
            # Demuxing reads packets without decoding; the one the cut went through comes back flagged corrupt.
            whole = sum(1 for packet in container.demux(stream) if packet.size > 0 and not packet.is_corrupt)
    except av.FFmpegError:
        return None
    return whole, stream.frames


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def check_image(data: bytes, name: str) -> None:
    """Raise VideoReadError unless `data` is a whole PNG or JPEG, without decoding its pixels.

    A PNG must hold its chunks through IEND, each with a matching CRC-32 (PNG spec, ISO/IEC 15948 §5.3): that
    finds cut-off, zero-filled and bit-flipped files at the speed of crc32. JPEG has no checksum: it must start
    and end with its markers (zero padding after the end aside), which finds cut-off files. Other data is decoded
    (read_image), which rejects what is not an image.
    """
    if data.startswith(_PNG_SIGNATURE):
        problem = _png_damage(memoryview(data))
    elif data.startswith(_JPEG_START):
        whole = data[-4096:].rstrip(b"\0").endswith(_JPEG_END)
        problem = None if whole else "truncated JPEG (no end-of-image marker)"
    else:
        read_image(data, name=name)
        return
    if problem is not None:
        raise VideoReadError(name, problem)


def _png_damage(data: memoryview) -> str | None:
    """What is wrong with a PNG's chunks (None: all there, through IEND, each matching its CRC-32)."""
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):  # a chunk: length, type, data, CRC-32 of type and data
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            break
        if zlib.crc32(data[position + 4:end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            chunk = f"its {kind.decode()} chunk" if kind.isalpha() else "a chunk"
            return f"damaged PNG ({chunk} fails its CRC check)"
        if kind == b"IEND":
            return None
        position = end
    return "truncated PNG (it ends before its IEND chunk)"


# ----------------------------------------------------------------------------------------------------------
# Writing


def write_mp4(path: str | Path, frames: np.ndarray, fps: float | Fraction, crf: int = 18) -> None:
    """Write uint8 [T, H, W, 3] (or gray [T, H, W, 1], stored as gray RGB) as an H.264 / yuv420p mp4 that every
    player opens.

    yuv420p needs even sizes, so an odd width or height is padded by one replicated edge pixel. The file
    appears atomically (written beside the target, then renamed), so a reader never sees half a video.
    """
    frames = _check_video(frames)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(100_000)
    # The container closes (and writes its index) before the temporary file is renamed into place.
    with _atomic_path(Path(path)) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write uint8 [H, W, C] (C = 1, 3 or 4) as an 8-bit PNG, with zlib (PNG spec, ISO/IEC 15948)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected uint8 [H, W, 1|3|4], got {image.dtype} {image.shape}")
    height, width, channels = image.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]  # grey, RGB, RGBA
    # Each scanline starts with its filter type byte (0: none).
    raw = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    with _atomic_path(Path(path)) as tmp:
        tmp.write_bytes(png)


def make_grid(videos: Sequence[np.ndarray], columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile equal-size videos [T_i, H, W, C] (C = 3, or 1: gray, shown as gray RGB) into one RGB video
    [T, H', W', 3], row by row, on black.

    T is the longest length; shorter videos hold their last frame. `columns` defaults to a near-square grid.
    """
    if not videos:
        raise ValueError("make_grid needs at least one video")
    videos = [_check_video(v) for v in videos]
    _, height, width, channels = videos[0].shape
    if any(v.shape[1:] != (height, width, channels) for v in videos):
        raise ValueError(f"make_grid needs equal-size videos, got {sorted({v.shape[1:] for v in videos})}")
    columns = columns or int(np.ceil(np.sqrt(len(videos))))
    rows = -(-len(videos) // columns)
    length = max(len(v) for v in videos)
    step_y, step_x = height + padding, width + padding
    grid = np.zeros((length, rows * step_y + padding, columns * step_x + padding, channels), np.uint8)
    for i, video in enumerate(videos):
        y, x = padding + (i // columns) * step_y, padding + (i % columns) * step_x
        grid[:, y:y + height, x:x + width] = video[np.minimum(np.arange(length), len(video) - 1)]
    return grid


def write_contact_sheet(path: str | Path, videos: Sequence[np.ndarray]) -> None:
    """A PNG with one row per video (uint8 [T, H, W, 3], or gray [T, H, W, 1]): its first, middle and last
    frame."""
    stills = [video[[0, len(video) // 2, len(video) - 1]] for video in map(_check_video, videos)]
    tiles = [frame[None] for row in stills for frame in row]  # each still as a one-frame video
    write_png(path, make_grid(tiles, columns=3)[0])


def _check_video(frames: np.ndarray) -> np.ndarray:
    """A non-empty uint8 video [T, H, W, 3], or gray [T, H, W, 1] repeated to gray RGB [T, H, W, 3]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) == 0 or frames.shape[3] not in (1, 3):
        raise ValueError(f"expected a non-empty uint8 video [T, H, W, 3] or gray [T, H, W, 1], got {frames.dtype} "
                         f"{frames.shape}")
    return np.repeat(frames, 3, axis=3) if frames.shape[3] == 1 else frames


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it only when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
