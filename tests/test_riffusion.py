"""Riffusion backend with tiny random components on the CPU (2 steps): real diffusers code paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moodbgm.errors import ModelNotFoundError
from moodbgm.generate.base import GenerateOptions, Progress
from moodbgm.generate.riffusion.components import build_pipeline
from moodbgm.generate.riffusion.generator import RiffusionGenerator, RiffusionOptions, assemble
from moodbgm.generate.riffusion.pipeline import ClipRequest, RiffusionPipeline, slerp
from moodbgm.generate.riffusion.planning import plan_clips
from moodbgm.generate.spectrogram import SpectrogramParams
from moodbgm.types import SAMPLE_RATE, MusicBed, Section, Timeline

# 40 ms columns: a 128-column clip is 5.12 s, like Riffusion's 512 columns of 10 ms
PARAMS = SpectrogramParams(
    sample_rate=8000, step_size_ms=40, window_duration_ms=80, padded_duration_ms=160,
    num_frequencies=16, max_frequency=3500,
)  # fmt: skip
CLIP_WIDTH = 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Tones:
    """A stand-in composer: a tremolo tone whose pitch follows the emotion."""

    name = "tones"

    def __init__(self) -> None:
        self.calls = 0

    def generate(
        self, timeline: Timeline, duration: float, options: GenerateOptions, progress: Progress | None = None
    ) -> MusicBed:
        self.calls += 1
        n = round(duration * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        pitch = {"joy": 440.0, "sadness": 220.0}
        f = np.full(n, 330.0)
        for s in timeline.sections:
            f[(t >= s.start) & (t < s.end)] = pitch.get(s.emotion, 330.0)
        x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
        return MusicBed(np.stack([x, x], axis=1).astype(np.float32))


@pytest.fixture
def make_pipe(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(seed: int = 0) -> RiffusionPipeline:
        return build_pipeline("tiny", tmp_path / f"tok{seed}", seed=seed)

    return make


def tiny_generator(pipe: RiffusionPipeline, **kw: object) -> RiffusionGenerator:
    options = RiffusionOptions(steps=2, params=PARAMS, clip_width=CLIP_WIDTH, **kw)  # type: ignore[arg-type]
    return RiffusionGenerator(pipe, options, composer=Tones())


def two_moods(duration: float = 12.3) -> Timeline:
    return Timeline(duration, (Section(0, 7.0, "joy"), Section(7.0, duration, "sadness")))


def test_slerp_endpoints_and_norm() -> None:
    a, b = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), torch.randn(4, 8)
    assert torch.equal(slerp(0.0, a, b), a) and torch.equal(slerp(1.0, a, b), b)
    mid = slerp(0.5, a, b)
    assert not torch.allclose(mid, (a + b) / 2)  # not a lerp: keeps the noise's norm
    assert abs(mid.norm() - (a.norm() + b.norm()) / 2) < 0.2 * a.norm()


def test_interpolation_endpoints_equal_plain_img2img(make_pipe) -> None:  # type: ignore[no-untyped-def]
    pipe = make_pipe()
    latents = pipe.encode_images(torch.rand(2, 3, 16, 64))
    reqs = [
        ClipRequest(
            "joyful music", "sad music", 11, 12, alpha=0.0, seed_alpha=0.0, strength_a=0.75, guidance_a=7
        ),
        ClipRequest(
            "joyful music", "sad music", 11, 12, alpha=1.0, seed_alpha=1.0, strength_b=0.5, guidance_b=3
        ),
    ]
    out = pipe.interpolate(reqs, latents, num_inference_steps=2)
    assert out.shape == (2, 16, 64, 3)
    for i, (prompt, seed, strength, guidance) in enumerate(
        [("joyful music", 11, 0.75, 7), ("sad music", 12, 0.5, 3)]
    ):
        plain = pipe(
            prompt=prompt, image=latents[i : i + 1], strength=strength, guidance_scale=guidance,
            generator=torch.Generator().manual_seed(seed), num_inference_steps=2, output_type="np",
        ).images  # fmt: skip
        np.testing.assert_allclose(out[i], plain[0], atol=1e-4)
    mid = pipe.interpolate([ClipRequest("joyful music", "sad music", 11, 12, 0.5, 0.5)], latents[:1], 2)
    assert np.abs(mid[0] - out[0]).max() > 1e-3 and np.abs(mid[0] - out[1]).max() > 1e-3


def test_generate_exact_length_stereo_48k(make_pipe) -> None:  # type: ignore[no-untyped-def]
    gen = tiny_generator(make_pipe(), batch_size=3)
    fractions: list[float] = []
    bed = gen.generate(two_moods(), 12.3, GenerateOptions(seed=3), fractions.append)
    assert bed.sample_rate == SAMPLE_RATE and bed.audio.shape == (round(12.3 * SAMPLE_RATE), 2)
    assert np.array_equal(bed.audio[:, 0], bed.audio[:, 1])
    assert 0.5 < np.abs(bed.audio).max() <= 0.9
    assert fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)
    assert gen.composer is not None and gen.composer.calls == 1  # type: ignore[attr-defined]
    # every stretch of the bed has sound: no hole between clips
    rms = np.sqrt((bed.audio[: len(bed.audio) // 4800 * 4800, 0].reshape(-1, 4800) ** 2).mean(axis=1))
    assert rms.min() > 0.02 * rms.max()


def spectral_flux(x: np.ndarray, n: int = 512, hop: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Half-wave rectified log-spectral flux (onset strength) per frame step, and its times."""
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    log_mag = np.log(np.abs(np.fft.rfft(frames, axis=1)) + 1e-4)
    flux = np.sqrt((np.clip(np.diff(log_mag, axis=0), 0, None) ** 2).mean(axis=1))
    centres = (np.arange(1, len(log_mag)) * hop + n // 2) / SAMPLE_RATE
    return flux, centres


def test_no_discontinuity_at_clip_seams(make_pipe) -> None:  # type: ignore[no-untyped-def]
    """Spectral flux at seams is comparable to within clips; with hard cuts (no crossfade) it is not.

    Measured (3 model seeds): seam / within-clip 99th percentile 0.69-0.81 with the 0.5 s
    crossfade, 1.8-2.1 with hard cuts.
    """
    tl = Timeline(20.0, (Section(0, 20.0, "joy"),))
    pipe = make_pipe()

    def seam_ratio(crossfade_s: float) -> float:
        gen = tiny_generator(pipe, crossfade_s=crossfade_s)
        bed = gen.generate(tl, 20.0, GenerateOptions(seed=1))
        flux, centres = spectral_flux(bed.audio[:, 0])
        seams = [c.start for c in plan_clips(tl, 20.0, gen.clip_s)][1:]
        near = np.min(np.abs(centres[:, None] - np.array(seams)[None, :]), axis=1)
        return float(flux[near < 256 / SAMPLE_RATE].max() / np.percentile(flux[near > 0.5], 99))

    assert seam_ratio(0.5) < 1.2
    assert seam_ratio(0.0) > 1.4  # the measure does see seams


def test_crossfade_is_equal_power() -> None:
    tl = Timeline(10.0, (Section(0, 10.0, "neutral"),))
    plan = plan_clips(tl, 10.0, clip_s=5.12, crossfade_s=0.5)
    sr, width = 1000, int(5.8 * 1000)
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((len(plan), width)).astype(np.float32)
    out = assemble(plan, clips, sr, 10.0)
    assert out.shape == (10_000,)
    # over the overlap the two independent clips add in power: total power stays ~1
    seam = int(plan[1].start * sr)
    assert 0.8 < out[seam - 200 : seam + 200].var() < 1.2
    assert 0.8 < out[1000:2000].var() < 1.2


@pytest.fixture
def lora_dir(make_pipe, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """LoRA weights (rank 4, alpha 8, random) as the trainer writes them (``lora.checkpoints.save_lora``)."""
    from lora.checkpoints import save_lora
    from lora.train import TARGET_MODULES
    from peft import LoraConfig

    trained = make_pipe()
    trained.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=list(TARGET_MODULES))
    )
    with torch.no_grad():  # peft's random init is small; make the LoRA's effect clear
        for name, p in trained.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    save_lora(trained.unet, tmp_path / "lora")
    return tmp_path / "lora"


def test_lora_is_fused_at_load_and_matches_unfused(make_pipe, lora_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    req = [ClipRequest("joyful music", "joyful music", 5, 6, 0.0, 0.25)]

    def clip(gen: RiffusionGenerator) -> np.ndarray:
        latents = gen.pipe.encode_images(torch.full((1, 3, 16, 64), 0.5))
        return gen.pipe.interpolate(req, latents, num_inference_steps=2)[0]

    base_gen = tiny_generator(make_pipe())
    fused_gen = tiny_generator(make_pipe(), lora_path=lora_dir, lora_scale=0.8)
    unfused_gen = tiny_generator(make_pipe(), lora_path=lora_dir, lora_scale=0.8, fuse_lora=False)
    assert fused_gen.lora is not None and fused_gen.lora.fused and fused_gen.lora.alpha == 8.0
    assert fused_gen.lora.rank == 4
    # fused: plain modules again (no adapter layers), with weights that differ from the base model's
    assert not hasattr(fused_gen.pipe.unet, "peft_config") or not fused_gen.pipe.unet.peft_config
    names = {n for n, _ in fused_gen.pipe.unet.named_parameters()}
    assert names == {n for n, _ in base_gen.pipe.unet.named_parameters()}
    assert not any("lora" in n for n in names)
    fused_w = dict(fused_gen.pipe.unet.named_parameters())
    changed = [n for n, w in base_gen.pipe.unet.named_parameters() if not torch.equal(w, fused_w[n])]
    assert changed and all(n.rsplit(".", 2)[-2] in ("to_q", "to_k", "to_v", "0") for n in changed)
    assert len(changed) >= 4 * 2  # every attention projection of the tiny UNet's two attention blocks
    # the fused UNet computes what the unfused adapter computes
    base, fused, unfused = clip(base_gen), clip(fused_gen), clip(unfused_gen)
    assert np.abs(fused - base).max() > 1e-2
    np.testing.assert_allclose(fused, unfused, atol=2e-5)
    zero_scale = clip(tiny_generator(make_pipe(), lora_path=lora_dir, lora_scale=0.0))
    np.testing.assert_allclose(zero_scale, base, atol=1e-5)
    with pytest.raises(ModelNotFoundError, match="LoRA"):
        tiny_generator(make_pipe(), lora_path=tmp_path / "missing")


def test_kohya_alpha_file_loads_to_the_same_weights(make_pipe, lora_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """The trainer's second file has ``.alpha`` keys (kohya layout); diffusers reads the same LoRA."""
    from lora.checkpoints import KOHYA_WEIGHT_NAME, WEIGHT_NAME
    from safetensors import safe_open

    with safe_open(str(lora_dir / KOHYA_WEIGHT_NAME), "pt") as f:
        keys = list(f.keys())
        alphas = {float(f.get_tensor(k)) for k in keys if k.endswith(".alpha")}
        assert f.metadata() == {"ss_network_dim": "4", "ss_network_alpha": "8"}
    assert alphas == {8.0} and len([k for k in keys if k.endswith(".alpha")]) == len(keys) // 3
    gens = [tiny_generator(make_pipe(), lora_path=lora_dir / n) for n in (WEIGHT_NAME, KOHYA_WEIGHT_NAME)]
    assert gens[1].lora is not None and gens[1].lora.alpha == 8.0
    a, b = (dict(g.pipe.unet.named_parameters()) for g in gens)
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_missing_weights_error_names_the_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="moodbgm-test/no-such-riffusion") as e:
        RiffusionGenerator.load("moodbgm-test/no-such-riffusion", device="cpu")
    assert "huggingface-cli download" in str(e.value) and "MOODBGM_RIFFUSION_MODEL" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="no-model-here"):
        RiffusionGenerator.load(str(tmp_path / "no-model-here"), device="cpu")


def test_loads_local_model_folder(make_pipe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_pipe().save_pretrained(tmp_path / "model")
    options = RiffusionOptions(steps=2, params=PARAMS, clip_width=CLIP_WIDTH, scheduler="ddim")
    gen = RiffusionGenerator.load(str(tmp_path / "model"), device="cpu", options=options, composer=Tones())
    assert gen.device.type == "cpu" and gen.pipe.unet.dtype == torch.float32
    assert type(gen.pipe.scheduler).__name__ == "DDIMScheduler"
    bed = gen.generate(Timeline(3.0, (Section(0, 3.0, "fear"),)), 3.0, GenerateOptions(style="lofi"))
    assert bed.audio.shape == (3 * SAMPLE_RATE, 2)


def test_options_validated(make_pipe) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="scheduler"):
        RiffusionOptions(scheduler="nope")
    with pytest.raises(ValueError, match="strength"):
        RiffusionOptions(strength=0.0)
    with pytest.raises(ValueError, match="fp32"):
        RiffusionGenerator.load("x", device="cpu", dtype="fp16")
    with pytest.raises(ValueError):
        ClipRequest("a", "b", 0, 1, alpha=1.5)


def test_default_composer_seeds_the_clips(make_pipe) -> None:  # type: ignore[no-untyped-def]
    """Without a composer given, the real ComposerGenerator (FluidSynth) renders the seed music."""
    from moodbgm.generate.composer import ComposerGenerator

    gen = RiffusionGenerator(make_pipe(), RiffusionOptions(steps=2, params=PARAMS, clip_width=CLIP_WIDTH))
    bed = gen.generate(two_moods(8.0), 8.0, GenerateOptions(seed=2))
    assert isinstance(gen.composer, ComposerGenerator)
    assert bed.audio.shape == (8 * SAMPLE_RATE, 2) and np.abs(bed.audio).max() > 0.5


def test_seed_images_are_the_composers_music_per_clip(make_pipe) -> None:  # type: ignore[no-untyped-def]
    """Clip k's seed image is the spectrogram of the composer's music under clip k's render window."""
    gen = tiny_generator(make_pipe())
    tl = two_moods(12.3)
    plan = plan_clips(tl, 12.3, gen.clip_s, gen.crossfade_s)
    seed_audio = gen.codec_input(Tones().generate(tl, 12.3, GenerateOptions()))
    images, scales = gen.seed_images(plan, seed_audio)
    assert all(im.size == (gen.render_width(), PARAMS.num_frequencies) for im in images)
    assert gen.render_width() % 4 == 0 and gen.render_width() * 0.04 >= gen.clip_s + gen.crossfade_s
    # joy is 440 Hz, sadness 220 Hz: the darkest row (loudest mel bin) sits higher for joy's clips
    bin_of = [int(np.argmin(np.asarray(im)[..., 0].astype(float).sum(axis=1))) for im in images]
    for c, row in zip(plan, bin_of, strict=True):
        mid = (c.start + c.end) / 2
        other = [
            r
            for k, r in zip(plan, bin_of, strict=True)
            if tl.emotion_at((k.start + k.end) / 2) != tl.emotion_at(mid)
        ]
        if tl.emotion_at(mid) == "joy":
            assert all(row < r for r in other)  # image rows count from the top: higher pitch, smaller row
    assert np.all(scales > 0)


def test_inference_prompts_are_captions_the_dataset_builder_writes(tmp_path: Path) -> None:
    """For every (emotion, style): the prompt the generator writes (the composer's tempo included) is
    the caption ``dataset_tools`` writes for a track of that emotion, a genre of that style and that
    bpm, imported from an Epidemic-style parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf
    from dataset_tools.epidemic import import_epidemic
    from dataset_tools.sources import read_metadata
    from dataset_tools.synth import SYNTH_MOODS

    from moodbgm.generate.base import STYLES
    from moodbgm.generate.composer import ComposerGenerator
    from moodbgm.generate.riffusion.generator import composer_tempos
    from moodbgm.generate.riffusion.planning import clip_prompts
    from moodbgm.types import EMOTIONS

    genre_of = {"cinematic": "Orchestral", "lofi": "Lo-Fi Beats", "electronic": "Electronica & Dance",
                "acoustic": "Country & Folk"}  # fmt: skip
    composer = ComposerGenerator()  # compose() only plans; nothing is rendered
    prompts: dict[str, str] = {}
    rows: dict[str, list[object]] = {"track_id": [], "moods": [], "genres": [], "bpm": [], "file": []}
    for emotion in EMOTIONS:
        for style in STYLES:
            tl = Timeline(12.0, (Section(0, 12.0, emotion),))
            tempos = composer_tempos(composer, tl, 12.0, GenerateOptions(style=style))
            plan = plan_clips(tl, 12.0, 5.12)
            pairs = clip_prompts(plan, style, tempos)
            assert len({p for pair in pairs for p in pair}) == 1  # one section: one tempo, one prompt
            prompt = pairs[0][0]
            assert f" {style} music" in prompt and prompt.endswith(" bpm")
            name = f"{emotion}-{style}"
            prompts[name] = prompt
            sf.write(tmp_path / f"{name}.wav", np.zeros(100, np.float32), 44_100)
            row = {"track_id": name, "moods": list(SYNTH_MOODS[emotion]), "genres": [genre_of[style]],
                   "bpm": tempos[0].bpm, "file": f"{name}.wav"}  # fmt: skip
            for key, value in row.items():
                rows[key].append(value)
    pq.write_table(pa.table(rows), tmp_path / "Various.parquet")
    imported = import_epidemic([tmp_path / "Various.parquet"], tmp_path / "out")
    tracks, skipped = read_metadata(imported.metadata)
    assert skipped == 0 and len(tracks) == len(prompts)
    for t in tracks:
        assert t.caption == prompts[Path(t.source).stem], t.source
