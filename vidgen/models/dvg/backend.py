"""The DVG backend (Shrivastava & Shrivastava, "Diverse Video Generation using a Gaussian Process Trigger", ICLR
2021): SVG's frame encoder, decoder and deterministic LSTM (Denton & Fergus 2018), plus one GP per latent
dimension that models the next latent's distribution. The LSTM rolls a future out; when the GP's predictive
variance jumps (the trigger), the next latent is drawn from the GP instead, which starts a different future.

Training (the released end-to-end script): for every frame i = 1 .. T-1 of a clip, from the latent h of frame
i - 1 (and the skips of the last context frame, or of frame i - 1 with model.last_frame_skip),

    loss += w (MSE(dec(h_target), x_i) + MSE(dec(LSTM(h)), x_i) + MSE(LSTM(h), h_target))
            + w_gp MSE(dec(E[GP(h)]), x_i) - w_elbo ELBO(GP(h), h_target)

with pixels in [0, 1] (SVG's range) and h_target the latent of frame i; vidgen optimises it times LOSS_SCALE, with
Adam's epsilon scaled alike (the same steps). Where vidgen batches the reference's
per-frame calls, the sums are the same: the encoder runs once over all frames of the clip and the decoder once
per term over all steps (so BatchNorm's batch statistics in training cover every frame of the batch, not one frame
of each video at a time), and the GP's ELBO over all steps equals the sum of its per-step ELBOs.

Prediction (predict): the context frames run through the encoder and the LSTM; then for each new frame the
trigger (vidgen.models.dvg.trigger) decides between the LSTM's latent and a draw from the GP's marginal
predictive distribution at the current latent, each video from its own generator, and the latent is decoded with
the skips. With the "gp" trigger the first predicted frame is always a GP draw, as in the released code's
predict() (index_to_use_gp_layer = n_past): the futures of one context part there, and the variance rule decides
when they part again. DVG has no unconditional sampler: sample() is a one-line error that asks for --context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.core.config import Recipe
from vidgen.errors import UserError
from vidgen.models.base import Backend, Batch, Phase, Prediction, TrainingJob
from vidgen.models.dvg.config import DVGConfig, DVGSampleConfig
from vidgen.models.dvg.gp import LatentGP, gp_precision
from vidgen.models.dvg.networks import Decoder, Encoder, init_weights
from vidgen.models.dvg.predictor import FramePredictor
from vidgen.models.dvg.trigger import VarianceTrigger, every_fires

LOSS_SCALE = 1e-3
"""The loss optimised and logged as "loss" is the reference's total (~2000 at the start) times this: the MSE
terms then count with weight 1 at the default weights, and a float32 loss keeps the resolution (1e-7 instead of
2e-4) that comparing runs, such as two ranks against one process, needs. Adam is invariant to the scale of the
loss but for its epsilon, which is scaled alike (ADAM_EPS): the steps are the reference's."""
ADAM_EPS = 1e-8 * LOSS_SCALE
"""PyTorch's default 1e-8 (the reference's), on the scale of the reference's loss."""


@contextlib.contextmanager
def eval_mode(*networks: nn.Module) -> Iterator[None]:
    """The networks in eval mode for the block (BatchNorm's running statistics: a video does not depend on the
    others in its batch), then as they were."""
    modes = [network.training for network in networks]
    for network in networks:
        network.eval()
    try:
        yield
    finally:
        for network, mode in zip(networks, modes):
            network.train(mode)


class DVGBackend(Backend):
    """networks: {"encoder": Encoder, "decoder": Decoder, "predictor": FramePredictor, "gp": LatentGP}; one
    phase, "main", stepping one Adam over all of them. No EMA copy (the reference keeps none)."""

    ema_networks = ()
    needs_context = True

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.config: DVGConfig = recipe.model
        c, data = self.config, recipe.data
        with torch.random.fork_rng(devices=[]):  # initialise from the run seed, leaving the global RNG alone
            torch.manual_seed(recipe.run.seed)
            encoder = Encoder(c.architecture, data.channels, c.g_dim, c.width, data.resolution)
            decoder = Decoder(c.architecture, data.channels, c.g_dim, c.width, data.resolution)
            predictor = FramePredictor(c.g_dim, c.rnn_size, c.rnn_layers)
            for network in (encoder, decoder, predictor):  # the reference applies SVG's init to all three
                network.apply(init_weights)
            gp = LatentGP(c.g_dim, c.inducing_points)
        self.networks = nn.ModuleDict({"encoder": encoder, "decoder": decoder, "predictor": predictor, "gp": gp})
        train = recipe.train
        self._num_data = train.batch_size * train.grad_accum
        """The ELBO's dataset size: the global batch (bind_loop), one process's recipe batch until then."""

    def phases(self) -> Sequence[Phase]:
        return (Phase("main", optimizer="main"),)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # The reference: one Adam per network (and one for the GP and its likelihood), all at lr 0.002 and betas
        # (0.9, 0.999), stepped together: the same as one Adam over everything.
        train = self.recipe.train
        return {"main": torch.optim.Adam(self.networks.parameters(), lr=train.lr, betas=train.betas, eps=ADAM_EPS,
                                         weight_decay=train.weight_decay)}

    def bind_loop(self, job: TrainingJob) -> None:
        self._num_data = job.global_batch

    # ------------------------------------------------------------------------------------------------------
    # Training

    def loss(self, phase: str, batch: Batch, nets: Mapping[str, nn.Module],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        if phase != "main":
            raise ValueError(f"DVGBackend has a single phase 'main', got '{phase}'")
        del generator  # the loss draws nothing
        cfg = self.config
        video = batch["video"]  # [B, C, T, R, R] in [-1, 1]
        B, C, T = video.shape[:3]
        if C != self.recipe.data.channels:
            raise ValueError(f"the batch has {C} channels but the model was built for data.channels = "
                             f"{self.recipe.data.channels}")
        encoder, decoder, predictor, gp = nets["encoder"], nets["decoder"], nets["predictor"], nets["gp"]
        x = (video + 1) / 2  # SVG's pixels in [0, 1]
        frames = x.permute(2, 0, 1, 3, 4).flatten(0, 1)  # [T * B, C, R, R], time-major

        # --- Encode every frame once: frame i is step i's target and step i + 1's input ---
        h, skips = encoder(frames)
        h = h.view(T, B, -1)  # [T, B, g]
        skips = [s.view(T, B, *s.shape[1:]) for s in skips]

        # --- The LSTM over steps i = 1 .. T-1, from zeros: h_{i-1} -> prediction of h_i ---
        state = predictor.initial_state(B, video.device)
        predictions = []
        for i in range(1, T):
            h_pred, state = predictor(h[i - 1], state)
            predictions.append(h_pred)
        h_pred = torch.stack(predictions).flatten(0, 1)  # [(T-1) B, g]
        h_in, h_next = h[:-1].flatten(0, 1), h[1:].flatten(0, 1)  # [(T-1) B, g] each
        h_target = h_next.detach() if cfg.detach_latent_target else h_next  # of the latent loss and the ELBO
        target = x.permute(2, 0, 1, 3, 4)[1:].flatten(0, 1)  # [(T-1) B, C, R, R]

        # --- Skips of step i: the last context frame's (frame i - 1 while that is a context frame), or frame
        # i - 1's with last_frame_skip ---
        source = [i - 1 if cfg.last_frame_skip else min(i - 1, cfg.context_frames - 1) for i in range(1, T)]
        step_skips = [s[source].flatten(0, 1) for s in skips]  # each [(T-1) B, w, r, r]

        # --- The GP: q(h_i[d] | h_{i-1}[d]) per dimension, in float32. Each per-step ELBO averages the expected
        # log-likelihood over its B points and subtracts KL / num_data, so their sum over the T - 1 steps is
        # (T - 1) x the ELBO over all (T - 1) B points at once ---
        with gp_precision(video.device):
            f = gp(h_in)  # batch [g], (T-1) B points
            neg_elbo = (T - 1) * gp.neg_elbo(f, h_target, self._num_data)
            gp_mean = f.mean.transpose(0, 1)  # [(T-1) B, g]

        # --- Decode; each term is the reference's sum over steps of per-step means ---
        steps = T - 1
        ae_mse = steps * F.mse_loss(decoder(h_next, step_skips).float(), target)
        mse = steps * F.mse_loss(decoder(h_pred, step_skips).float(), target)
        latent_mse = steps * F.mse_loss(h_pred.float(), h_target.float())
        gp_mse = steps * F.mse_loss(decoder(gp_mean, step_skips).float(), target)
        loss = LOSS_SCALE * (cfg.recon_weight * (ae_mse + mse + latent_mse) + cfg.gp_recon_weight * gp_mse
                             + cfg.elbo_weight * neg_elbo)
        return loss, {"loss": loss.item(), "mse": mse.item(), "ae_mse": ae_mse.item(),
                      "latent_mse": latent_mse.item(), "gp_mse": gp_mse.item(), "neg_elbo": neg_elbo.item()}

    # ------------------------------------------------------------------------------------------------------
    # Prediction

    @property
    def predicts(self) -> bool:
        return True

    def context_frames(self) -> int:
        return self.config.context_frames

    def sample(self, nets: Mapping[str, nn.Module], seeds: Sequence[int], frames: int, device: torch.device,
               options: DVGSampleConfig | None = None) -> torch.Tensor:
        raise UserError(f"a DVG model predicts the future of given frames; give --context clip.mp4 (its first "
                        f"--context-frames frames, default {self.config.context_frames}, condition every sample)")

    @torch.no_grad()
    def predict(self, nets: Mapping[str, nn.Module], context: torch.Tensor, seeds: Sequence[int], frames: int,
                device: torch.device, options: DVGSampleConfig | None = None) -> Prediction:
        """Continue context i ([N, C, c, H, W] in [-1, 1]) to `frames` frames from the generator of seeds[i]
        alone. details[i]: the trigger and, per predicted frame, its GP variance (the L2 norm over the latent
        dimensions; null where the GP was not evaluated), the threshold the variance rule judged it by (null while
        its window fills, and for the other triggers) and whether its latent was drawn from the GP ("fired")."""
        options = options or self.recipe.sample
        spec = options.trigger_spec
        n, channels, c, height, width = context.shape
        res = self.recipe.data.resolution
        if len(seeds) != n:
            raise ValueError(f"{n} context clips but {len(seeds)} seeds")
        if (channels, height, width) != (self.recipe.data.channels, res, res):
            raise UserError(f"the context is {channels} x {width}x{height} but this model takes "
                            f"{self.recipe.data.channels} x {res}x{res} frames")
        if frames <= c:
            raise UserError(f"--frames {frames} must exceed the {c} context frames: the output holds the context, "
                            "then the predicted frames")
        encoder, decoder, predictor, gp = nets["encoder"], nets["decoder"], nets["predictor"], nets["gp"]
        generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
        context = context.to(device, torch.float32)
        triggers = [VarianceTrigger(options.trigger_window) for _ in seeds] if spec.kind == "gp" else None
        records: list[list[dict[str, Any]]] = [[] for _ in seeds]

        with eval_mode(encoder, decoder, predictor, gp):
            # --- The context: every frame through the encoder and the LSTM (its state sees each of them); the
            # skips are the last context frame's; the gp rule's window fills with the context's values ---
            h_ctx, skips_ctx = encoder(((context + 1) / 2).permute(2, 0, 1, 3, 4).flatten(0, 1))  # [c N, g]
            h_ctx = h_ctx.float().view(c, n, -1)
            skips = [s.view(c, n, *s.shape[1:])[c - 1] for s in skips_ctx]
            state = predictor.initial_state(n, device)
            for t in range(c - 1):  # frame t -> frame t + 1, which is given
                _, state = predictor(h_ctx[t], state)
                if triggers is not None:
                    for trigger, value in zip(triggers, variance_norms(gp.predictive(h_ctx[t])[1])):
                        trigger.prime(value)

            # --- The future, frame by frame ---
            h = h_ctx[c - 1]  # [N, g]: the latent of the current (last) frame
            generated = []
            for t in range(c, frames):
                # The LSTM runs on every frame, so its state follows the video even where the trigger replaces
                # its output (the released generation script skips the LSTM on a trigger frame).
                h_pred, state = predictor(h, state)
                h_next = h_pred.float().clone()  # [N, g]
                predicted = t - c + 1  # 1 = the first predicted frame
                evaluate = spec.kind == "gp" or (spec.kind == "every" and every_fires(predicted, spec.every))
                if evaluate:
                    # The GP's marginal predictive distribution of the next latent at each video's own latent.
                    mean, variance = gp.predictive(h)  # [N, g] each
                    values = variance_norms(variance)
                for i in range(n):
                    value = threshold = None
                    fired = False
                    if evaluate:
                        value = values[i]
                        if triggers is not None:
                            decision = triggers[i].observe(value)
                            # A future starts with a GP draw (the released predict() draws at index n_past),
                            # so K seeds give K futures at once; the rule judges the frames after it.
                            threshold, fired = decision.threshold, decision.fired or predicted == 1
                        else:
                            fired = True  # every:M on one of its frames
                    if fired:  # a new future: h_{t} ~ N(mean, variance), from this video's generator
                        eps = torch.randn(mean.shape[1], generator=generators[i], device=device)
                        h_next[i] = mean[i] + variance[i].sqrt() * eps
                    records[i].append({"frame": t, "gp_variance": value, "threshold": threshold, "fired": fired})
                frame = decoder(h_next, skips).float()  # [N, C, H, W] in (0, 1)
                generated.append(frame)
                if t + 1 < frames:
                    h, frame_skips = encoder(frame)
                    h = h.float()
                    if self.config.last_frame_skip:
                        skips = frame_skips

        future = torch.stack(generated, dim=2) * 2 - 1  # [N, C, frames - c, H, W] in (-1, 1)
        videos = torch.cat([context, future], dim=2)  # the context frames exactly as given
        details = [{"trigger": options.trigger, "frames": frames_} for frames_ in records]
        return Prediction(videos, details)


def variance_norms(variance: torch.Tensor) -> list[float]:
    """A trigger value per video: the L2 norm over the latent dimensions of the GP's predictive variance [N, g]."""
    return [float(v) for v in variance.double().norm(dim=1).tolist()]
