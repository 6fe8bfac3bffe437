"""The DVG backend: its loss, predict() (context kept, futures per seed, long rollouts, batch independence, the
trigger's decisions), the refusal to sample unconditionally, and the sample options."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidgen.core.config import DataConfig
from vidgen.errors import ConfigError, UserError
from vidgen.models.base import TrainingJob
from vidgen.models.dvg.backend import ADAM_EPS, LOSS_SCALE, DVGBackend
from vidgen.models.dvg.config import DVGConfig, DVGSampleConfig

from .conftest import tiny_recipe

CPU = torch.device("cpu")


def contexts(n: int, frames: int, channels: int = 3, resolution: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, frames, resolution, resolution, generator=generator) * 2 - 1


def options(**values) -> DVGSampleConfig:
    return DVGSampleConfig(**values)


@pytest.fixture(scope="module")
def backend() -> DVGBackend:
    """A tiny DVG after a few training steps on random clips (so BatchNorm's running statistics and the GP are
    no longer at their initial values)."""
    model = DVGBackend(tiny_recipe())
    optimizer = model.make_optimizers()["main"]
    for step in range(5):
        loss, _ = model.loss("main", {"video": contexts(4, 6, seed=step)}, model.networks, torch.Generator())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


# ----------------------------------------------------------------------------------------------------------
# Training


def test_the_loss_and_its_parts(make_backend):
    model = make_backend()
    video = contexts(4, 6)
    loss, logged = model.loss("main", {"video": video}, model.networks, torch.Generator())
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(logged) == {"loss", "mse", "ae_mse", "latent_mse", "gp_mse", "neg_elbo"}
    c = model.config
    total = (c.recon_weight * (logged["ae_mse"] + logged["mse"] + logged["latent_mse"])
             + c.gp_recon_weight * logged["gp_mse"] + c.elbo_weight * logged["neg_elbo"])
    assert logged["loss"] == pytest.approx(LOSS_SCALE * total, rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.networks.parameters()), "every network is trained"


def test_a_detached_latent_target_trains_the_lstm_and_the_gp_alike_but_not_the_encoder(make_backend):
    """Same losses either way; the latent loss and the ELBO then reach the encoder only through their inputs."""
    video = contexts(4, 6)
    grads, losses = [], []
    for detach in (False, True):
        model = make_backend(detach_latent_target=detach)
        loss, logged = model.loss("main", {"video": video}, model.networks, torch.Generator())
        loss.backward()
        losses.append(logged)
        grads.append({name: p.grad.clone() for name, p in model.networks.named_parameters()})
    assert losses[0] == losses[1]
    for name in grads[0]:
        same = torch.allclose(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-9)
        assert same == (not name.startswith("encoder.")), name


def test_the_scaled_loss_takes_the_reference_adam_steps():
    """Adam on LOSS_SCALE x loss with epsilon ADAM_EPS steps as Adam on the loss with PyTorch's epsilon 1e-8."""
    torch.manual_seed(0)
    target = torch.randn(50, dtype=torch.float64) * 1e-6  # small gradients, where epsilon matters
    params = [torch.zeros(50, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    optimizers = [torch.optim.Adam([params[0]], lr=1e-3, eps=1e-8),
                  torch.optim.Adam([params[1]], lr=1e-3, eps=ADAM_EPS)]
    for _ in range(20):
        for param, optimizer, scale in zip(params, optimizers, (1.0, LOSS_SCALE)):
            optimizer.zero_grad()
            (scale * ((param - target) ** 2).sum()).backward()
            optimizer.step()
    torch.testing.assert_close(params[1], params[0], rtol=1e-9, atol=1e-15)


def test_the_elbo_counts_the_global_batch(make_backend):
    model = make_backend()
    video = contexts(4, 6)
    _, alone = model.loss("main", {"video": video}, model.networks, torch.Generator())
    model.bind_loop(TrainingJob(global_batch=1000, sum_over_ranks=lambda values: values))
    _, bound = model.loss("main", {"video": video}, model.networks, torch.Generator())
    assert bound["neg_elbo"] < alone["neg_elbo"]  # KL / num_data: the KL term shrinks with a larger dataset
    assert bound["mse"] == alone["mse"]


def test_grayscale_models(make_backend):
    model = make_backend(channels=1)
    loss, _ = model.loss("main", {"video": contexts(2, 6, channels=1)}, model.networks, torch.Generator())
    assert torch.isfinite(loss)
    prediction = model.predict(model.networks, contexts(2, 3, channels=1), [0, 1], 8, CPU)
    assert prediction.videos.shape == (2, 1, 8, 16, 16)


# ----------------------------------------------------------------------------------------------------------
# Prediction


def test_predict_keeps_the_context_frames_exactly(backend):
    context = contexts(3, 3)
    prediction = backend.predict(backend.networks, context, [0, 1, 2], 9, CPU)
    videos = prediction.videos
    assert videos.shape == (3, 3, 9, 16, 16) and videos.dtype == torch.float32
    assert torch.equal(videos[:, :, :3], context)
    assert videos.min() >= -1 and videos.max() <= 1
    assert len(prediction.details) == 3
    assert [f["frame"] for f in prediction.details[0]["frames"]] == list(range(3, 9))
    assert prediction.details[0]["trigger"] == "gp"


def test_k_seeds_give_k_futures_of_one_context_and_a_seed_gives_one(backend):
    context = contexts(1, 3).expand(3, -1, -1, -1, -1)
    draws = options(trigger="every:2")
    first = backend.predict(backend.networks, context, [7, 8, 9], 10, CPU, draws).videos
    again = backend.predict(backend.networks, context, [7, 8, 9], 10, CPU, draws).videos
    assert torch.equal(first, again)
    # Until the first draw (predicted frame 2 = frame 4) the LSTM alone decides: the same for every seed.
    torch.testing.assert_close(first[0, :, :4], first[1, :, :4])
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not torch.allclose(first[a, :, 4:], first[b, :, 4:], atol=1e-3)


def test_predicting_100_frames_from_5(make_backend):
    model = make_backend(frames=8, context_frames=5)
    prediction = model.predict(model.networks, contexts(2, 5), [0, 1], 105, CPU, options(trigger="gp"))
    assert prediction.videos.shape == (2, 3, 105, 16, 16)
    assert torch.isfinite(prediction.videos).all()
    records = prediction.details[1]["frames"]
    assert len(records) == 100 and all(r["gp_variance"] > 0 for r in records)
    assert all(r["threshold"] is None for r in records[:8])  # 4 context values + 8 predicted fill the window
    assert records[0]["fired"]  # a future starts with a GP draw
    assert all(r["threshold"] is not None for r in records[8:])


@pytest.mark.parametrize("trigger", ["gp", "every:2", "none"])
def test_a_video_does_not_depend_on_its_batch(backend, trigger):
    context = contexts(3, 3)
    opts = options(trigger=trigger, trigger_window=4)
    together = backend.predict(backend.networks, context, [3, 4, 5], 12, CPU, opts)
    alone = backend.predict(backend.networks, context[1:2], [4], 12, CPU, opts)
    reordered = backend.predict(backend.networks, context[[2, 1]], [5, 4], 12, CPU, opts)
    torch.testing.assert_close(alone.videos[0], together.videos[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(reordered.videos[1], together.videos[1], rtol=0, atol=1e-5)
    assert [f["fired"] for f in alone.details[0]["frames"]] == [f["fired"] for f in together.details[1]["frames"]]


def test_predict_leaves_the_networks_in_training_mode(backend):
    backend.networks.train()
    backend.predict(backend.networks, contexts(1, 3), [0], 5, CPU)
    assert all(module.training for module in backend.networks.modules())


def test_trigger_none_never_evaluates_the_gp(backend, monkeypatch):
    def refuse(h):
        raise AssertionError("the GP was evaluated")

    monkeypatch.setattr(backend.networks["gp"], "predictive", refuse)
    prediction = backend.predict(backend.networks, contexts(2, 3), [0, 1], 8, CPU, options(trigger="none"))
    for details in prediction.details:
        assert details["trigger"] == "none"
        assert all(f == {"frame": f["frame"], "gp_variance": None, "threshold": None, "fired": False}
                   for f in details["frames"])


def test_every_m_draws_at_every_mth_predicted_frame(backend):
    prediction = backend.predict(backend.networks, contexts(1, 3), [0], 12, CPU, options(trigger="every:3"))
    frames = prediction.details[0]["frames"]
    assert [f["frame"] for f in frames if f["fired"]] == [5, 8, 11]  # predicted frames 3, 6, 9 after 3 given
    assert all((f["gp_variance"] is not None) == f["fired"] for f in frames)
    assert all(f["threshold"] is None for f in frames)


def test_a_variance_spike_fires_the_gp_trigger_and_starts_a_new_future(backend, monkeypatch):
    """The GP's variance made flat but for one frame: the future starts with a GP draw (frame 3), then the trigger
    fires exactly at the spike (its window of 6 is full from frame 7 on): frame 7 comes from a GP draw, and the
    frames before it are those of the same seed without the spike."""
    gp = backend.networks["gp"]
    real = gp.predictive

    def variance_with_spike_at(spike: int | None):
        calls = []

        def predictive(h):
            mean, variance = real(h)
            calls.append(len(calls))
            scale = 50.0 if len(calls) == spike else 1.0  # 2 context steps, then frames 3, 4, ...
            return mean, torch.full_like(variance, 0.01 * scale)

        return predictive

    context, opts = contexts(1, 3), options(trigger="gp", trigger_window=6)
    monkeypatch.setattr(gp, "predictive", variance_with_spike_at(2 + 5))  # frame 7
    fired = backend.predict(backend.networks, context, [0], 10, CPU, opts)
    monkeypatch.setattr(gp, "predictive", variance_with_spike_at(None))
    flat = backend.predict(backend.networks, context, [0], 10, CPU, opts)
    frames = fired.details[0]["frames"]
    assert [f["frame"] for f in frames if f["fired"]] == [3, 7]
    assert [f["frame"] for f in flat.details[0]["frames"] if f["fired"]] == [3]
    assert frames[0]["threshold"] is None  # the first draw is not the rule's: its window is not full
    spike = next(f for f in frames if f["frame"] == 7)
    assert spike["gp_variance"] == pytest.approx(0.5 * 8 ** 0.5, rel=1e-5)  # the L2 norm over g_dim = 8
    assert spike["threshold"] < spike["gp_variance"]
    torch.testing.assert_close(fired.videos[:, :, :7], flat.videos[:, :, :7])
    assert not torch.allclose(fired.videos[:, :, 7], flat.videos[:, :, 7], atol=1e-3)


def test_with_the_gp_trigger_a_future_starts_with_a_draw(backend):
    context = contexts(1, 3).expand(2, -1, -1, -1, -1)
    futures = backend.predict(backend.networks, context, [1, 2], 5, CPU, options(trigger="gp"))
    assert not torch.allclose(futures.videos[0, :, 3], futures.videos[1, :, 3], atol=1e-3)
    lstm = backend.predict(backend.networks, context, [1, 2], 5, CPU, options(trigger="none"))
    torch.testing.assert_close(lstm.videos[0], lstm.videos[1])  # the LSTM alone: one future per context


def test_the_default_context_length_is_the_models(backend):
    assert backend.predicts and backend.needs_context
    assert backend.context_frames() == 3


# ----------------------------------------------------------------------------------------------------------
# What DVG refuses


def test_sampling_without_context_is_one_line(backend):
    with pytest.raises(UserError) as info:
        backend.sample(backend.networks, [0, 1], 8, CPU)
    message = str(info.value)
    assert "\n" not in message and "--context" in message and "default 3" in message
    assert message.startswith("a DVG model predicts the future of given frames")


def test_predicting_no_frame_is_an_error(backend):
    with pytest.raises(UserError, match="must exceed the 3 context frames"):
        backend.predict(backend.networks, contexts(1, 3), [0], 3, CPU)


@pytest.mark.parametrize("trigger", ["every:0", "every:-1", "sometimes", "every", "every:two"])
def test_bad_trigger_strings_are_one_line_config_errors(trigger):
    with pytest.raises(ConfigError) as info:
        options(trigger=trigger)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("sample.trigger (--trigger) must be gp, none or every:M (M an integer >= 1)")
    assert repr(trigger) in message


def test_sample_options_are_checked_like_the_recipe():
    recipe = tiny_recipe()
    assert recipe.sample_options(trigger="every:4").trigger_spec.every == 4
    with pytest.raises(ConfigError, match=r"sample.trigger \(--trigger\) must be"):
        recipe.sample_options(trigger="every:0")
    with pytest.raises(ConfigError, match=r"sample.trigger_window \(--trigger-window\) must be >= 2"):
        recipe.sample_options(trigger_window=1)
    with pytest.raises(ConfigError, match=r"sample.frames \(--frames\) is 3, but the output holds the 3 context"):
        recipe.sample_options(frames=3)
    recipe.sample_options(frames=4)
    with pytest.raises(ConfigError, match="the output holds the 5 context frames"):
        recipe.sample_options(frames=5, context_frames=5)


@pytest.mark.parametrize("data, model, match", [
    (dict(frames=3), {}, r"data.frames \(3\) must exceed model.context_frames \(3\)"),
    (dict(resolution=48), {}, r"data.resolution \(48\) must be a power of two >= 8"),
    (dict(resolution=4), {}, r"data.resolution \(4\) must be a power of two >= 8"),
    (dict(image_frames=2), {}, "data.image_frames"),
    (dict(labels=True), {}, "model.num_classes is 0"),
])
def test_recipe_cross_checks(data, model, match):
    recipe = tiny_recipe()
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, **data),
                                 model=dataclasses.replace(recipe.model, **model))
    with pytest.raises(ConfigError, match=match) as info:
        recipe.model.check_recipe(recipe)
    assert "\n" not in str(info.value)


def test_model_fields_are_checked():
    with pytest.raises(ConfigError, match="model.g_dim must be > 0"):
        DVGConfig(g_dim=0)
    with pytest.raises(ConfigError, match="model.elbo_weight must be >= 0"):
        DVGConfig(elbo_weight=-1)
    assert DataConfig(channels=1).channels == 1
