"""LightningModule: manual optimisation of encoder, decoder, discriminator (Larsen et al. 2016) and latent classifier.

Per batch, with x real, y its label, z ~ q(z|x,y), (z_p, y_p) a prior draw and y' != y a swapped label:

    discriminator  <- hinge(D(x, y), D(dec(z, y), y), D(dec(z_p, y_p), y_p), D(dec(z, y'), y'))   fakes detached
                      (every D input through the same DiffAugment policy when vaegan.losses.diff_augment is set)
                      + classifier_weight * CE(C(x), y)                       C: D's expression classifier, real faces only
    latent C_z     <- CE(C_z(mu), y)                                   Fader's latent discriminator, codes detached
    encoder        <- kl_weight * KL + recon + latent_adversary_weight * KL(pi || C_z(mu))   no GAN gradient;
                                                                      pi: the fit split's class frequencies
    decoder        <- recon + adversarial_weight * hinge_G(all three fakes)
                      + label_weight * CE(C([dec(z_p, y_p), dec(z, y')]), [y_p, y'])   AttGAN's swapped-label loss
                      (the separate classifier reads them, and learns from real faces, through expression_augment)
    recon = l1 * |dec(z,y) - x| + feature * ||D_l(dec(z,y)) - D_l(x)||^2 + lpips * LPIPS
            + expression_feature * mean_b ||E_b(dec(z,y)) - E_b(x)||^2      E_b: the separate classifier's blocks
            + imagenet_feature * mean_b ||I_b(dec(z,y)) - I_b(x)||^2        I_b: ImageNet EfficientNet-Lite0 stages

Keeping the adversarial and label gradients out of the encoder (backward with `inputs=`) stops the
encoder from hiding information from D, a known cause of reconstructions degrading once the
GAN term starts; the GAN and label terms ramp in after a warm-up.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from faces.io import write_json_atomic

from . import losses as L
from .diff_augment import diff_augment, parse_policy
from .generation.perturbations import LatentBatch, Perturbation, class_scale_for, get_perturbation, perturb_codes
from .generation.quality import one_nn_two_sample_accuracy
from .generation.render import Grain, grain_std_for, render, render_for
from .grids import pick_per_class, save_class_grid
from .images import is_greyscale, to_greyscale, to_greyscale_float, to_model_range, to_uint8
from .metrics import (
    FRECHET_NAME,
    KID_NAME,
    FeatureNetwork,
    diversity_ratio,
    high_frequency_energy,
    label_flip_figures,
    mean_class_recall,
    per_class_frechet,
    per_class_kid,
    reconstruction_fidelity,
    reconstruction_l1,
    reconstruction_ssim,
)
from .model import ARCHITECTURE_SWITCHES, ARCHITECTURE_VERSION, VAEGAN, resolution_for

log = logging.getLogger(__name__)
# The per-step seed of the global generator (dropout) is offset from the step's own generator's seed
# (VAEGANModule._step_seed), so the two streams differ.
DROPOUT_SEED_OFFSET = 2**31


class NonFiniteLossError(RuntimeError):
    """A loss or gradient norm became NaN/Inf; training stops before the bad update is applied."""


def build_model(*, model_cfg: dict[str, Any], num_classes: int) -> VAEGAN:
    return VAEGAN(
        resolution=model_cfg["resolution"],
        latent_dim=model_cfg["latent_dim"],
        num_classes=num_classes,
        base_channels=model_cfg["base_channels"],
        max_channels=model_cfg["max_channels"],
        embed_dim=model_cfg["embed_dim"],
        **{key: model_cfg.get(key, default) for key, default in ARCHITECTURE_SWITCHES.items()},
    )


class VAEGANModule(pl.LightningModule):
    """`config` is the whole run config as plain types (so last.ckpt loads with weights_only=True)."""

    def __init__(
        self,
        *,
        config: dict[str, Any],
        class_names: list[str],
        image_size: int,
        data_fingerprint: str,
        architecture_version: int = ARCHITECTURE_VERSION,
    ) -> None:
        super().__init__()
        if config["vaegan"]["resolution"] == "auto":  # the data's own resolution (vaegan.model.resolution_for)
            config = {**config, "vaegan": {**config["vaegan"], "resolution": resolution_for(image_size)}}
        # Saved with the resolved config and architecture_version: resume refuses a checkpoint of another layout.
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.config = config
        self.model_cfg = config["vaegan"]
        self.loss_cfg = self.model_cfg["losses"]
        self.class_names = list(class_names)
        self.model = build_model(model_cfg=self.model_cfg, num_classes=len(class_names))
        self.output_dir = Path(config["output_dir"]) if config.get("output_dir") else None
        # Not submodules: frozen metric/loss networks must stay out of the checkpoints.
        self._aux: dict[str, nn.Module] = {}
        self._real_val_features: torch.Tensor | None = None
        self._steps_per_epoch = 1
        self._greyscale = False  # set at fit start from the training faces
        self._class_prior: torch.Tensor | None = None  # the fit split's class frequencies, set at fit start
        self._augment_policy = parse_policy(self.loss_cfg.get("diff_augment"))
        # The separate expression classifier's views: its real training faces and the decodes its label loss reads
        # (vaegan.losses.expression_augment; off when empty).
        self._expression_policy = parse_policy(
            self.loss_cfg.get("expression_augment"), setting="vaegan.losses.expression_augment"
        )

    # ----------------------------------------------------------------- set-up
    def configure_optimizers(self):
        optim = self.model_cfg["optim"]
        betas = tuple(optim["betas"])
        optimizers = [
            torch.optim.Adam(self.model.encoder.parameters(), lr=optim["lr"], betas=betas),
            torch.optim.Adam(self.model.decoder.parameters(), lr=optim["lr"], betas=betas),
            torch.optim.Adam(self.model.discriminator.parameters(), lr=optim["discriminator_lr"], betas=betas),
            torch.optim.Adam(self.model.latent_classifier.parameters(), lr=optim["latent_classifier_lr"], betas=betas),
        ]
        if self.model.expression_classifier is not None:
            classifier = self.model.expression_classifier
            optimizers.append(
                torch.optim.Adam(classifier.parameters(), lr=optim["expression_classifier_lr"], betas=betas)
            )
        return optimizers

    def setup(self, stage: str) -> None:
        if self.loss_cfg.get("imagenet_feature_weight", 0.0) > 0 and "imagenet_features" not in self._aux:
            self._aux["imagenet_features"] = L.ImageNetFeatures()
        if self.loss_cfg["lpips_weight"] > 0:
            self._aux["lpips_loss"] = L.load_lpips(
                net=self.loss_cfg["lpips_net"], allow_download=self.loss_cfg["lpips_download"]
            )

    def on_fit_start(self) -> None:
        precision = str(self.trainer.precision)
        if precision.startswith("16"):
            raise ValueError(
                f"trainer.precision={precision} is not supported (fp16 needs loss scaling); use bf16-mixed or 32-true"
            )
        if self._channels_last():
            self.model.to(memory_format=torch.channels_last)
        for module in self._aux.values():
            module.to(self.device)
        self._render_mode()  # a bad grid.perturbation / grid.render fails now, not at the first validation
        # A greyscale dataset (FER2013-style) gets greyscale grids and metric images, as augment.py's samples:
        # the decoder's RGB output would otherwise tint them and the figures would judge the tint.
        datamodule = getattr(self.trainer, "datamodule", None)
        self._greyscale = datamodule is not None and is_greyscale(datamodule.fit.images)
        if datamodule is not None:
            counts = torch.bincount(datamodule.fit.labels, minlength=len(self.class_names)).float()
            self._class_prior = (counts / counts.sum()).to(self.device)

    def on_train_start(self) -> None:
        # Known only once the train dataloader exists (after on_fit_start).
        self._steps_per_epoch = max(1, int(self.trainer.num_training_batches))
        self._pretrain_expression_classifier()

    def _pretrain_expression_classifier(self) -> None:
        """`vaegan.optim.expression_classifier_pretrain_epochs` passes of the separate expression classifier alone
        over the real fit faces (its own update: class-balanced, mirrored, expression_augment's views) before the
        VAE-GAN's first step. Why: from the first epochs the label loss otherwise answers to a classifier near
        chance (0.2 mean class recall at epoch 8 with blurred views; BENCHMARKS.md) and pushes noise into the
        decoder. Only on a fresh start: a resumed run's classifier comes back from its checkpoint. Every rank
        runs the same passes from the same seed, so their copies stay equal without a gradient exchange."""
        epochs = int(self.model_cfg["optim"].get("expression_classifier_pretrain_epochs") or 0)
        datamodule = getattr(self.trainer, "datamodule", None)
        if epochs <= 0 or self.model.expression_classifier is None or self.global_step > 0 or datamodule is None:
            return
        opt_expression = self.optimizers()[4]
        images, labels = datamodule.fit.images, datamodule.fit.labels
        batch_size = datamodule.batch_size
        generator = torch.Generator().manual_seed(int(self.config["seed"]) * 1_000_003 - 1)  # not a step's seed
        device_generator = torch.Generator(device=self.device).manual_seed(int(self.config["seed"]) * 1_000_003 - 2)
        losses = []
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(order) - batch_size + 1, batch_size):  # full batches only (batch norm)
                rows = order[start : start + batch_size]
                x = self._prepare(images[rows].to(self.device))
                losses.append(
                    self._expression_classifier_update(
                        x, labels[rows].to(self.device), opt_expression, device_generator
                    )
                )
        if not losses:  # fewer fit faces than one batch
            return
        log.info(
            "pretrained the separate expression classifier for %d epochs (%d steps): class-balanced cross-entropy "
            "%.3f -> %.3f",
            epochs,
            len(losses),
            float(losses[0]),
            float(losses[-1]),
        )

    def _step_index(self, batch_idx: int) -> int:
        # A pure function of (epoch, batch): resume from an epoch-end checkpoint replays exactly.
        return self.current_epoch * self._steps_per_epoch + batch_idx

    def _step_seed(self, step: int) -> int:
        """The seed of a training step's random draws: a pure function of (run seed, step), so a resumed run
        draws what an uninterrupted one would."""
        return int(self.config["seed"]) * 1_000_003 + step

    def _epochs_to_steps(self, epochs: float) -> int:
        return int(round(epochs * self._steps_per_epoch))

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = to_model_range(images)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last() else x

    def _channels_last(self) -> bool:
        """config channels_last: true | false | auto (CUDA only; on CPU it is a measured choice, BENCHMARKS.md)."""
        choice = self.config.get("channels_last", "auto")
        return self.device.type == "cuda" if choice == "auto" else bool(choice)

    def _guard(self, values: dict[str, torch.Tensor], *, step: int) -> None:
        """One host sync per step: stop with the name of the first non-finite value."""
        stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()])
        if bool(torch.isfinite(stacked).all()):
            return
        bad = [f"{name}={float(v.detach()):.4g}" for name, v in values.items() if not math.isfinite(float(v.detach()))]
        raise NonFiniteLossError(
            f"non-finite {', '.join(bad)} at step {step} (epoch {self.current_epoch}); training stopped before "
            "applying the encoder and decoder update."
        )

    def _clip(self, parameters) -> torch.Tensor:
        max_norm = self.model_cfg["optim"]["grad_clip"]
        params = [p for p in parameters if p.grad is not None]
        if not params:
            return torch.zeros((), device=self.device)
        return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm and max_norm > 0 else float("inf"))

    # -------------------------------------------------------------- training
    def training_step(self, batch, batch_idx: int) -> None:
        step = self._step_index(batch_idx)
        # Dropout (the expression classifier's head) draws from the global generator, which validation also
        # draws from (the feature network's construction) and a resumed run re-seeds: seeded per step inside a
        # fork, the weights depend on neither how often the run validates nor where it was resumed, and nothing
        # outside the step sees its draws.
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else [], device_type=self.device.type):
            seed = self._step_seed(step) + DROPOUT_SEED_OFFSET
            torch.random.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.manual_seed(seed)  # the current device's generator only
            self._training_step(batch, step)

    def _training_step(self, batch, step: int) -> None:
        images, labels = batch
        opt_encoder, opt_decoder, opt_discriminator, opt_latent, *opt_expression = self.optimizers()
        model = self.model
        x = self._prepare(images)
        n = x.shape[0]
        noise, z_prior, labels_prior, labels_swapped, generator = self._draw_step_randomness(x, labels, step)

        mu, logvar = model.encoder(x, labels)
        z = model.reparameterize(mu, logvar, noise=noise)
        fake_labels = torch.cat([labels, labels_prior, labels_swapped])
        decoded = model.decoder(torch.cat([z, z_prior, z]), fake_labels)
        # decoded[:n] reconstructions, [n:2n] prior samples, [2n:] swapped-label decodes; D and the GAN term use all three.
        reconstructed = decoded[:n]

        # D sees real and fake through the same random augmentation (vaegan.diff_augment; off when the policy is
        # empty), a fresh draw for its own step and for the generator's.
        d_out = self._discriminator_update(x, labels, decoded, fake_labels, opt_discriminator, generator)
        d_out["latent_class"] = self._latent_classifier_update(mu, labels, opt_latent)
        if opt_expression:
            d_out["expression_class"] = self._expression_classifier_update(x, labels, opt_expression[0], generator)
        values = self._generator_losses(x, labels, decoded, fake_labels, reconstructed, mu, logvar, generator)
        reconstruction = values.pop("reconstruction")
        kl_weight, adversarial_weight, label_weight, latent_weight = self._loss_weights(step)
        encoder_params = list(model.encoder.parameters())
        decoder_params = list(model.decoder.parameters())
        opt_encoder.zero_grad(set_to_none=True)
        opt_decoder.zero_grad(set_to_none=True)
        if adversarial_weight > 0 or label_weight > 0:
            self.manual_backward(
                adversarial_weight * values["adversarial"] + label_weight * values["label"],
                inputs=decoder_params,
                retain_graph=True,
            )
        self.manual_backward(
            reconstruction + kl_weight * values["kl"] + latent_weight * values["latent_confusion"],
            inputs=encoder_params + decoder_params,
        )
        norm_e, norm_g = self._clip(encoder_params), self._clip(decoder_params)
        # One host sync per step (not one per optimiser): D's values of this step are checked here too, so
        # a non-finite D update is applied in memory only; training stops and is never saved with it.
        self._guard(
            {
                "discriminator_hinge_loss": d_out["hinge"],
                "discriminator_class_loss": d_out["class"],
                "discriminator_grad_norm": d_out["grad_norm"],
                "latent_classifier_loss": d_out["latent_class"],
                **({"expression_classifier_loss": d_out["expression_class"]} if "expression_class" in d_out else {}),
                **values,
                "encoder_grad_norm": norm_e,
                "decoder_grad_norm": norm_g,
            },
            step=step,
        )
        opt_encoder.step()
        opt_decoder.step()
        model.update_ema(decay=self._ema_decay(step))
        self._log_training_step(
            values, d_out, (kl_weight, adversarial_weight, label_weight, latent_weight), batch_size=n
        )

    def _draw_step_randomness(self, x: torch.Tensor, labels: torch.Tensor, step: int):
        """This step's posterior noise, prior codes, prior labels and swapped labels, drawn in that order.

        One generator seeded from (seed, step), so a resumed run draws the same values at the same step; it comes
        back too, for the step's augmentation draws (made after these, so they leave these values unchanged).
        """
        n, num_classes = x.shape[0], self.model.num_classes
        generator = torch.Generator(device=x.device).manual_seed(self._step_seed(step))
        noise = torch.randn(n, self.model.latent_dim, generator=generator, device=x.device)
        z_prior = torch.randn(n, self.model.latent_dim, generator=generator, device=x.device)
        # Prior labels follow the batch's class mix, so D sees real and fake of each class equally often.
        labels_prior = labels[torch.randperm(n, generator=generator, device=x.device)]
        # A different label for every real face (y' != y): its code decoded with y' must show y' (AttGAN/StarGAN).
        labels_swapped = (
            labels + torch.randint(1, num_classes, (n,), generator=generator, device=x.device)
        ) % num_classes
        return noise, z_prior, labels_prior, labels_swapped, generator

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """DiffAugment on a stack of four equal blocks (real, reconstructions, prior samples, swapped-label
        decodes): row i of each block gets the same draw, so a face and its reconstruction stay comparable."""
        return diff_augment(images, policy=self._augment_policy, generator=generator, groups=4)

    def _discriminator_update(self, x, labels, decoded, fake_labels, opt_discriminator, generator) -> dict:
        """One discriminator step; it runs before the encoder/decoder step, which sees the updated D."""
        n = x.shape[0]
        # Discriminator: real vs the three kinds of fake (detached), and its expression classifier on real faces only.
        logits, class_logits = self.model.discriminator(
            self._augment(torch.cat([x, decoded.detach()]), generator),
            torch.cat([labels, fake_labels]),
            return_class_logits=True,
        )
        d_real, d_fake = logits[:n], logits[n:]
        loss_d_hinge = L.hinge_discriminator_loss(d_real, d_fake)
        loss_d_class = F.cross_entropy(class_logits[:n].float(), labels)
        loss_d = loss_d_hinge + self.loss_cfg["classifier_weight"] * loss_d_class
        opt_discriminator.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        norm_d = self._clip(self.model.discriminator.parameters())
        opt_discriminator.step()
        return {"hinge": loss_d_hinge, "class": loss_d_class, "grad_norm": norm_d, "real": d_real, "fake": d_fake}

    def _latent_classifier_update(self, mu: torch.Tensor, labels: torch.Tensor, opt_latent) -> torch.Tensor:
        """`latent_classifier_steps` steps of the latent classifier on this batch's codes (detached: the encoder
        is its adversary); returns the first step's loss (its reading before this batch's updates)."""
        codes, losses = mu.detach(), []
        for _ in range(int(self.model_cfg["optim"]["latent_classifier_steps"])):
            loss = F.cross_entropy(self.model.latent_classifier(codes), labels)
            opt_latent.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self._clip(self.model.latent_classifier.parameters())
            opt_latent.step()
            losses.append(loss.detach())
        return losses[0]

    def _expression_classifier_update(self, x, labels, opt_expression, generator) -> torch.Tensor:
        """One step of the separate expression classifier on this batch's real faces: class-balanced cross-entropy
        (weights 1 / (K p_k): on the prior's weights it sat at "everything is Happiness" for epochs), on faces
        mirrored at random (an expression is left-right symmetric)."""
        classifier = self.model.expression_classifier
        mirror = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
        faces = torch.where(mirror[:, None, None, None], x.flip(3), x)
        faces = self._expression_views(faces, generator)
        prior = self._class_prior
        weight = None if prior is None else (1.0 / (prior.clamp_min(1e-8) * len(prior))).float()
        classifier.train()
        loss = F.cross_entropy(classifier(faces), labels, weight=weight)
        opt_expression.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._clip(classifier.parameters())
        opt_expression.step()
        return loss.detach()

    def _expression_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`vaegan.losses.expression_augment` on images the separate classifier reads, an independent draw per
        image. Why on the decodes too: the label loss then asks for evidence that survives a shift and a colour
        change (expectation over transformation), which a face's brows and mouth do and a pixel-aligned speckle
        that happens to satisfy the classifier does not."""
        return diff_augment(images, policy=self._expression_policy, generator=generator)

    def _generator_losses(self, x, labels, decoded, fake_labels, reconstructed, mu, logvar, generator) -> dict:
        """Encoder/decoder loss terms; the weighted reconstruction sum comes back under "reconstruction"."""
        n = x.shape[0]
        # Encoder and decoder, against the updated discriminator. D's parameters get no gradient
        # here (backward `inputs=`), and real features are a fixed target.
        logits_g, features, class_logits_g = self.model.discriminator(
            self._augment(torch.cat([x, decoded]), generator),
            torch.cat([labels, fake_labels]),
            return_features=True,
            return_class_logits=True,
        )
        fake_logits = logits_g[n:]
        features_real, features_reconstructed = features[:n].detach(), features[n : 2 * n]
        loss_l1 = (reconstructed.float() - x.float()).abs().mean()
        loss_feature = L.feature_reconstruction_loss(features_reconstructed, features_real)
        loss_kl = L.kl_divergence(mu, logvar)
        loss_adv = L.hinge_generator_loss(fake_logits)
        # The decoder must draw the label it is given wherever the code does not fix the image: on prior
        # samples and on swapped-label decodes, the classifier must read the asked-for label (D's own, or the
        # separate expression classifier when the model has one; its parameters get no gradient here).
        expression_feature_weight = self.loss_cfg.get("expression_feature_weight", 0.0)
        loss_expression = None
        if self.model.expression_classifier is None:
            label_logits = class_logits_g[2 * n :]
        elif expression_feature_weight > 0:
            # One pass over all three kinds of decode: the reconstructions' blocks for the expression feature
            # loss, the others' logits (through expression_augment's views) for the label loss; the real faces'
            # blocks are a fixed target.
            views = torch.cat([reconstructed, self._expression_views(decoded[n:], generator)])
            logits_all, blocks = self.model.classify(views, return_features=True)
            with torch.no_grad():
                _, blocks_real = self.model.classify(x, return_features=True)
            loss_expression = L.expression_feature_loss([b[:n] for b in blocks], blocks_real)
            label_logits = logits_all[n:]
        else:
            label_logits = self.model.classify(self._expression_views(decoded[n:], generator))
        loss_label = F.cross_entropy(label_logits.float(), fake_labels[n:])
        # Fader: the encoder pushes the latent classifier's reading of its codes towards the class frequencies
        # (what it would read from codes that say nothing about the expression).
        loss_latent = L.latent_confusion(self.model.latent_classifier(mu), self._class_prior)
        reconstruction = self.loss_cfg["pixel_l1_weight"] * loss_l1 + self.loss_cfg["feature_weight"] * loss_feature
        values = {
            "l1": loss_l1,
            "feature": loss_feature,
            "kl": loss_kl,
            "adversarial": loss_adv,
            "label": loss_label,
            "latent_confusion": loss_latent,
        }
        if loss_expression is not None:
            reconstruction = reconstruction + expression_feature_weight * loss_expression
            values["expression_feature"] = loss_expression
        if "imagenet_features" in self._aux:
            features = self._aux["imagenet_features"]
            with torch.no_grad():
                blocks_real = features(x)
            loss_imagenet = L.blockwise_feature_loss(features(reconstructed), blocks_real)
            reconstruction = reconstruction + self.loss_cfg["imagenet_feature_weight"] * loss_imagenet
            values["imagenet_feature"] = loss_imagenet
        if "lpips_loss" in self._aux:
            loss_lpips = self._aux["lpips_loss"](reconstructed.float(), x.float()).mean()
            reconstruction = reconstruction + self.loss_cfg["lpips_weight"] * loss_lpips
            values["lpips"] = loss_lpips
        values["reconstruction"] = reconstruction
        return values

    def _loss_weights(self, step: int) -> tuple[float, float, float, float]:
        """KL, adversarial, label and latent-adversary weights at this step (warm-up and delayed-ramp schedules)."""
        kl_weight = L.kl_weight_at(
            step=step,
            weight=self.loss_cfg["kl_weight"],
            warmup_steps=self._epochs_to_steps(self.loss_cfg["kl_warmup_epochs"]),
        )
        schedule = dict(
            start_step=self._epochs_to_steps(self.loss_cfg["adversarial_start_epochs"]),
            ramp_steps=self._epochs_to_steps(self.loss_cfg["adversarial_ramp_epochs"]),
        )
        adversarial_weight = L.adversarial_weight_at(step=step, weight=self.loss_cfg["adversarial_weight"], **schedule)
        # Same schedule as the GAN term: D's classifier first learns the expressions from real faces.
        label_weight = L.adversarial_weight_at(step=step, weight=self.loss_cfg["label_weight"], **schedule)
        # Fader ramps its latent adversary in from 0: the latent classifier first learns to read the codes.
        latent_weight = L.adversarial_weight_at(
            step=step,
            weight=self.loss_cfg["latent_adversary_weight"],
            start_step=self._epochs_to_steps(self.loss_cfg["latent_adversary_start_epochs"]),
            ramp_steps=self._epochs_to_steps(self.loss_cfg["latent_adversary_ramp_epochs"]),
        )
        return kl_weight, adversarial_weight, label_weight, latent_weight

    def _log_training_step(self, values: dict, d_out: dict, weights: tuple, batch_size: int) -> None:
        kl_weight, adversarial_weight, label_weight, latent_weight = weights
        self.log_dict(
            {
                "train/l1": values["l1"],
                "train/feature": values["feature"],
                "train/kl": values["kl"],
                "train/adversarial": values["adversarial"],
                "train/label": values["label"],
                "train/latent_confusion": values["latent_confusion"],
                "train/latent_classifier": d_out["latent_class"],
                "train/discriminator": d_out["hinge"],
                "train/discriminator_class": d_out["class"],
                **({"train/expression_classifier": d_out["expression_class"]} if "expression_class" in d_out else {}),
                **{f"train/{key}": values[key] for key in ("expression_feature", "imagenet_feature") if key in values},
                "train/d_real": d_out["real"].float().mean(),
                "train/d_fake": d_out["fake"].float().mean(),
                "train/kl_weight": kl_weight,
                "train/adversarial_weight": adversarial_weight,
                "train/label_weight": label_weight,
                "train/latent_adversary_weight": latent_weight,
            },
            on_step=True,
            on_epoch=True,
            batch_size=batch_size,
        )
        self.log_dict(
            {"l1": values["l1"], "kl": values["kl"], "d": d_out["hinge"]},
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            logger=False,
        )

    def _ema_decay(self, step: int) -> float:
        # Warm-up form (as in many EMA implementations): early averages would otherwise be
        # dominated by the random initial weights.
        return min(self.model_cfg["ema_decay"], (1 + step) / (10 + step))

    # ------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_parts: dict[str, list[torch.Tensor]] = {"real": [], "recon": [], "labels": [], "mu": [], "logvar": []}

    @torch.no_grad()
    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        x = self._prepare(images)
        mu, logvar = self.model.encode(x, labels)
        reconstructed = self._decode(mu, labels)
        self._val_parts["real"].append(x.float())
        self._val_parts["recon"].append(reconstructed.float())
        self._val_parts["labels"].append(labels)
        self._val_parts["mu"].append(mu.float())
        self._val_parts["logvar"].append(logvar.float())

    def _feature_network(self) -> FeatureNetwork:
        if "features" not in self._aux:
            self._aux["features"] = FeatureNetwork(image_size=self.config["metrics"]["feature_image_size"]).to(
                self.device
            )
        return self._aux["features"]

    def _lpips_metric(self) -> nn.Module | None:
        mode = self.config["metrics"]["lpips"]
        if "lpips_loss" in self._aux:
            return self._aux["lpips_loss"]
        if "lpips_metric" not in self._aux:
            if mode is False or mode == "off" or (mode == "auto" and not L.lpips_available(self.loss_cfg["lpips_net"])):
                if mode == "auto" and not getattr(self, "_lpips_note", False):
                    self._lpips_note = True
                    log.info(
                        "LPIPS metric skipped: %s not found (metrics.lpips=auto; put the file there to enable it)",
                        L.lpips_backbone_path(self.loss_cfg["lpips_net"]),
                    )
                return None
            self._aux["lpips_metric"] = L.load_lpips(net=self.loss_cfg["lpips_net"]).to(self.device)
        return self._aux["lpips_metric"]

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if not self._val_parts["real"] or self.trainer.sanity_checking:
            return
        real = torch.cat(self._val_parts["real"])
        recon = torch.cat(self._val_parts["recon"])
        labels = torch.cat(self._val_parts["labels"])
        mu = torch.cat(self._val_parts["mu"])
        metrics = {
            "val/l1": reconstruction_l1(recon, real),
            "val/ssim": reconstruction_ssim(recon, real),
            "val/latent_label_recall": self._latent_label_recall(mu, labels),
        }
        lpips_model = self._lpips_metric()
        if lpips_model is not None:
            metrics["val/lpips"] = lpips_model(recon, real).mean()
        metrics.update(
            self._sample_metrics(
                real=real, recon=recon, labels=labels, mu=mu, logvar=torch.cat(self._val_parts["logvar"])
            )
        )
        metrics.update(self._generator_figures(real=real, recon=recon, labels=labels, mu=mu))
        self.log_dict(metrics, prog_bar=False, sync_dist=False)
        self.log("val_l1", metrics["val/l1"], prog_bar=True, logger=False)
        if self.trainer.is_global_zero and self.output_dir is not None:
            self.save_grids(tag=f"epoch{self.current_epoch + 1:03d}")

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The EMA decoder's images for the grids and metrics: luma only on a greyscale dataset."""
        images = self.model.decode(z, labels)
        return to_greyscale_float(images) if self._greyscale else images

    def _latent_label_recall(self, mu: torch.Tensor, labels: torch.Tensor) -> float:
        """How much expression the codes still carry: the latent classifier's mean class recall on the held-out
        codes (chance = 1 / number of classes; Fader's adversary pushes it there)."""
        predictions = self.model.latent_classifier(mu).argmax(dim=1)
        return mean_class_recall(predictions.cpu(), labels.cpu(), self.class_names)[0]

    def _flip_sources(self, labels: torch.Tensor, target: int) -> torch.Tensor:
        """Rows of real faces of the other classes to decode with `target` (the first few of each class, so every
        source class is present)."""
        per_class = self.config["metrics"]["flip_sources_per_class"]
        return torch.cat(
            [(labels == c).nonzero().flatten()[:per_class] for c in range(len(self.class_names)) if c != target]
        )

    def _generator_figures(
        self, *, real: torch.Tensor, recon: torch.Tensor, labels: torch.Tensor, mu: torch.Tensor
    ) -> dict[str, float]:
        """Whether the generator does its job, judged by the classifier the swapped-label loss answers to (D's, or
        the separate expression classifier; an in-training judge: the decoder is trained to satisfy it, so these
        read high; ablation's generation report uses the real-data judge): reconstruction fidelity, label-flip
        accuracy and the flips' high-frequency ratio per class, and with the feature network the identity kept by
        label flips and per-class KID of prior samples. Writes grids/figures_<epoch>.json with the sample sizes."""
        model, names = self.model, self.class_names

        def classify(images: torch.Tensor) -> torch.Tensor:
            chunks = range(0, len(images), 256)
            return torch.cat([model.classify(images[i : i + 256]).argmax(1) for i in chunks]).cpu()

        labels_cpu = labels.cpu()
        judge = "the discriminator's" if model.expression_classifier is None else "the separate"
        figures: dict[str, Any] = {"judge": f"{judge} expression classifier (trained with the generator)"}
        real_predictions = classify(real)
        figures["reconstruction_fidelity"] = reconstruction_fidelity(
            reconstructed_predictions=classify(recon),
            real_predictions=real_predictions,
            labels=labels_cpu,
            class_names=names,
        )
        # How well that judge knows the expressions on real faces it never trained on: a decoder can only obey a
        # label as well as the classifier it satisfies reads it (far below the real-data judge: BENCHMARKS.md).
        figures["label_classifier_recall"] = mean_class_recall(real_predictions, labels_cpu, names)[0]
        rows = [self._flip_sources(labels, target) for target in range(len(names))]
        sources = torch.cat(rows)
        targets = torch.cat([torch.full((len(r),), t, device=labels.device) for t, r in enumerate(rows)])
        flipped = torch.cat(
            [self._decode(mu[sources[i : i + 256]], targets[i : i + 256]) for i in range(0, len(sources), 256)]
        )
        flip_predictions = classify(flipped)
        use_features = self.config["metrics"]["frechet"]
        flip = dict(
            predictions=flip_predictions,
            target_labels=targets.cpu(),
            source_labels=labels_cpu[sources.cpu()],
            class_names=names,
            # Pixel-scale energy of the flips over the same faces' reconstructions: speckle that satisfies the
            # judge without drawing the expression shows here well above 1.
            flipped_high_frequency=high_frequency_energy(flipped).cpu(),
            reconstructed_high_frequency=high_frequency_energy(recon).cpu()[sources.cpu()],  # once per val face
        )
        if use_features:
            real_features = self._real_val_features
            figures["label_flip"] = label_flip_figures(
                **flip,
                flipped_features=self._feature_network()(flipped).cpu(),
                source_features=real_features[sources.cpu()],
                real_features=real_features,
                real_labels=labels_cpu,
            )
            figures[f"{KID_NAME}_prior"] = per_class_kid(
                generated=self._prior_features,
                generated_labels=self._prior_labels,
                real=real_features,
                real_labels=labels_cpu,
                class_names=names,
            )
        else:
            figures["label_flip"] = label_flip_figures(**flip)
        out = self._logged_figures(figures)
        if self.trainer.is_global_zero and self.output_dir is not None:
            write_json_atomic(
                self.output_dir / "grids" / f"figures_epoch{self.current_epoch + 1:03d}.json",
                figures,
                indent=1,
                allow_nan=True,
            )
        return out

    def _logged_figures(self, figures: dict[str, Any]) -> dict[str, float]:
        """The per-class generator figures as `val/<figure>/<class>` scalars (undefined ones left out)."""
        out: dict[str, float] = {"val/label_classifier_recall": figures["label_classifier_recall"]}
        kid = figures.get(f"{KID_NAME}_prior", {})
        for name in self.class_names:
            flip = figures["label_flip"][name]
            for key, value in (
                ("aux_reconstruction_fidelity", figures["reconstruction_fidelity"][name]["ratio"]),
                ("aux_label_flip_accuracy", flip["accuracy"]),
                ("identity_kept", flip["identity_kept"]),
                ("label_flip_high_frequency", flip["high_frequency_ratio"]),
                (f"{KID_NAME}_prior", kid[name]["kid"] if name in kid else math.nan),
            ):
                if math.isfinite(value):
                    out[f"val/{key}/{name}"] = value
        return out

    def _perturbation(self) -> tuple[Perturbation, float]:
        """The augmenter's perturbation (grid.perturbation, grid.strength) from the one registry."""
        cfg = self.config["grid"]
        perturbation = get_perturbation(str(cfg.get("perturbation", "gaussian")))
        strength = cfg.get("strength")
        return perturbation, perturbation.default_strength if strength is None else float(strength)

    def _render_mode(self) -> str:
        """grid.render, or the perturbation's own rendering (as augment.py without --render)."""
        return render_for(self._perturbation()[0], self.config["grid"].get("render") or None)

    def _render(
        self, z: torch.Tensor, labels: torch.Tensor, *, sources: torch.Tensor, source_mu: torch.Tensor
    ) -> torch.Tensor:
        """Codes -> float [-1, 1] images at the model's resolution with the augmenter's own rendering
        (vaegan.generation.render); `sources` float [-1, 1] are the real images the codes were made from."""
        mode = self._render_mode()
        grain = None
        if mode == "grain":
            # The noise matched to these real faces against dec(source_mu, labels): their reconstructions where the
            # labels are their own (the validation figures); for a donor strategy's grid row, the donor decoded
            # with the row's label, near enough for a picture.
            real = to_uint8(sources).cpu()
            real = to_greyscale(real) if self._greyscale else real
            reconstructed = to_uint8(self.model.decode(source_mu, labels)).cpu()
            reconstructed = to_greyscale(reconstructed) if self._greyscale else reconstructed
            std = grain_std_for(real, reconstructed)
            grain = Grain(std=std, generator=torch.Generator().manual_seed(0), greyscale=self._greyscale)
        images = render(
            self.model,
            z=z,
            labels=labels,
            mode=mode,
            image_size=self.model.resolution,
            source_images=to_uint8(sources).cpu(),
            source_mu=source_mu,
            source_labels=labels,
            grain=grain,
        )
        images = to_greyscale(images) if self._greyscale else images  # as augment.py writes them
        return to_model_range(images).to(self.device)

    def _perturb(
        self, mu: torch.Tensor, logvar: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        perturbation, strength = self._perturbation()
        return perturb_codes(perturbation, mu=mu, logvar=logvar, labels=labels, strength=strength, generator=generator)

    def _variants(self, mu: torch.Tensor, logvar: torch.Tensor, *, k: int, generator: torch.Generator) -> torch.Tensor:
        """k new codes around the first of one class's codes (the grid's row); the rest give the class's spread."""
        perturbation, strength = self._perturbation()
        first = lambda t: t[:1].expand(k, -1)  # noqa: E731
        partners = mu[(1 + torch.arange(k, device=mu.device)) % mu.shape[0]]
        batch = LatentBatch(
            mu=first(mu),
            logvar=first(logvar),
            partner_mu=partners,
            noise=torch.randn(k, mu.shape[1], generator=generator, device=mu.device),
            mix=torch.rand(k, 1, generator=generator, device=mu.device),
            class_scale=class_scale_for(perturbation, mu),
        )
        return perturbation.apply(batch, strength)

    def _sample_metrics(
        self,
        *,
        real: torch.Tensor,
        recon: torch.Tensor,
        labels: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
    ) -> dict[str, float]:
        cfg = self.config["metrics"]
        if not cfg["frechet"]:
            return {}
        network = self._feature_network()
        if self._real_val_features is None:  # val images never change: embed them once
            self._real_val_features = network(real).cpu()
        real_features = self._real_val_features
        generator = torch.Generator(device=self.device).manual_seed(int(self.config["seed"]) + 12345)
        # As many samples per class as the val set has, but at least `min_samples_per_class`
        # (per-class covariances need more than a handful of points).
        per_class = torch.bincount(labels, minlength=len(self.class_names)).clamp_min(cfg["min_samples_per_class"])
        sample_labels = torch.repeat_interleave(
            torch.arange(len(self.class_names), device=self.device), per_class.to(self.device)
        )
        z = torch.randn(sample_labels.shape[0], self.model.latent_dim, generator=generator, device=self.device)
        prior = torch.cat([self._decode(z[i : i + 256], sample_labels[i : i + 256]) for i in range(0, len(z), 256)])
        # Perturbed encodings of the held-out images with the augmenter's own perturbation (one registry).
        perturbed = self._render(
            self._perturb(mu, logvar, labels, generator=generator), labels, sources=real, source_mu=mu
        )
        prior_features, perturbed_features = network(prior).cpu(), network(perturbed).cpu()
        self._prior_features, self._prior_labels = prior_features, sample_labels.cpu()  # for the per-class KID
        labels_cpu, sample_labels_cpu = labels.cpu(), sample_labels.cpu()
        out: dict[str, float] = {}
        # Real vs generated, the bar the judge's fidelity does not set (README, the study): leave-one-out 1-NN
        # accuracy between the real val faces and the generated images, all classes pooled (a class has a few val
        # faces): 0.5 = indistinguishable, 1 = the decoder's images carry a signature. Reconstructions and
        # perturbed codes are made from these same faces, so a copy scores 0.
        reconstructed_features = network(recon).cpu()
        for kind, feats in (
            ("reconstructed", reconstructed_features),
            ("prior", prior_features),
            ("perturbed", perturbed_features),
        ):
            nn_accuracy = one_nn_two_sample_accuracy(real_features, feats)["accuracy"]
            if math.isfinite(nn_accuracy):
                out[f"val/real_vs_generated_{kind}"] = nn_accuracy
        for kind, feats, feat_labels in (
            ("prior", prior_features, sample_labels_cpu),
            ("perturbed", perturbed_features, labels_cpu),
        ):
            fd = per_class_frechet(
                generated=feats,
                generated_labels=feat_labels,
                real=real_features,
                real_labels=labels_cpu,
                class_names=self.class_names,
            )
            diversity = diversity_ratio(
                generated=feats,
                generated_labels=feat_labels,
                real=real_features,
                real_labels=labels_cpu,
                class_names=self.class_names,
            )
            for name, value in fd.items():
                key = f"val/{FRECHET_NAME}_{kind}" + ("" if name == "overall" else f"/{name}")
                if not math.isnan(value):
                    out[key] = value
            for name, value in diversity.items():
                key = f"val/diversity_ratio_{kind}" + ("" if name == "overall" else f"/{name}")
                if not math.isnan(value):
                    out[key] = value
        return out

    # ----------------------------------------------------------------- grids
    @torch.no_grad()
    def save_grids(self, *, tag: str) -> tuple[Path, Path]:
        """grids/reconstructions_<tag>.png and grids/samples_<tag>.png (+ copies without the tag = latest)."""
        datamodule = self.trainer.datamodule
        cfg = self.config["grid"]
        k = cfg["per_class"]
        was_training = self.model.training
        self.model.eval()
        picks = pick_per_class(
            labels=datamodule.val.labels,
            num_classes=len(self.class_names),
            per_class=k,
            fallback_labels=datamodule.fit.labels,
        )
        sources = ((datamodule.val.images, datamodule.val.labels), (datamodule.fit.images, datamodule.fit.labels))
        generator = torch.Generator(device=self.device).manual_seed(int(self.config["seed"]) + 777)
        recon_rows, encoded = self._reconstruction_rows(picks, sources)
        fit_counts = torch.bincount(datamodule.fit.labels, minlength=len(self.class_names)).tolist()
        sample_rows = self._sample_rows(len(picks), encoded, fit_counts=fit_counts, k=k, generator=generator)
        flip_rows, flip_names = self._label_flip_rows(encoded, fit_counts=fit_counts, k=k)
        self.model.train(was_training)
        return self._write_grids(tag, k=k, recon_rows=recon_rows, sample_rows=sample_rows, flip=(flip_rows, flip_names))

    def _reconstruction_rows(
        self, picks, sources
    ) -> tuple[list[torch.Tensor], dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """Per class: the picked real faces interleaved with their reconstructions, and their codes for reuse."""
        recon_rows = []
        encoded: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # label -> (x, mu, logvar)
        for label, chosen in enumerate(picks):
            if chosen:
                real = torch.stack([sources[s][0][i] for s, i in chosen]).to(self.device)
                x = self._prepare(real)
                y = torch.full((x.shape[0],), label, device=self.device, dtype=torch.long)
                mu, logvar = self.model.encode(x, y)
                recon = self._decode(mu, y)
                recon_rows.append(torch.stack([x, recon], dim=1).flatten(0, 1).float().cpu())
                encoded[label] = (x, mu.float(), logvar.float())
            else:
                recon_rows.append(torch.zeros(2, 3, self.model.resolution, self.model.resolution))
        return recon_rows, encoded

    def _sample_rows(
        self,
        num_rows: int,
        encoded: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        *,
        fit_counts: list[int],
        k: int,
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        """Per class: k prior samples, one real face and k perturbed variants of its code (draws in class order)."""
        perturbation = self._perturbation()[0]
        sample_rows = []
        for label in range(num_rows):
            source = label
            if perturbation.donors:  # the row's real face is a donor: the largest other class's first pick
                others = [c for c in sorted(encoded, key=lambda c: -fit_counts[c]) if c != label]
                source = others[0] if others else None
            if source in encoded:
                x, mu, logvar = encoded[source]
                anchor_x, anchor_mu = x[:1], mu[:1]
                perturbed_codes = self._variants(mu, logvar, k=k, generator=generator)
            else:
                anchor_x = torch.zeros(1, 3, self.model.resolution, self.model.resolution, device=self.device)
                anchor_mu = torch.zeros(1, self.model.latent_dim, device=self.device)
                perturbed_codes = torch.zeros(k, self.model.latent_dim, device=self.device)
            y = torch.full((k,), label, device=self.device, dtype=torch.long)
            prior = self._decode(torch.randn(k, self.model.latent_dim, generator=generator, device=self.device), y)
            perturbed = self._render(
                perturbed_codes, y, sources=anchor_x.expand(k, -1, -1, -1), source_mu=anchor_mu.expand(k, -1)
            )
            sample_rows.append(torch.cat([prior, anchor_x, perturbed]).float().cpu())
        return sample_rows

    def _write_grids(self, tag: str, *, k: int, recon_rows, sample_rows, flip) -> tuple[Path, Path]:
        """Write the reconstruction, sample and (if any) label-flip grids, each also as the untagged latest copy."""
        flip_rows, flip_names = flip
        grids = self.output_dir / "grids"
        # During fit current_epoch is the epoch in progress; after fit it already counts all of them.
        epoch = self.current_epoch if tag == "final" else self.current_epoch + 1
        recon_columns = ["real", "recon"] * k
        sample_columns = [f"prior {i + 1}" for i in range(k)] + ["real"] + [f"variant {i + 1}" for i in range(k)]
        paths = []
        for name, rows, columns, title in (
            (
                "reconstructions",
                recon_rows,
                recon_columns,
                f"epoch {epoch}: real | reconstruction (EMA decoder, z = mu)",
            ),
            (
                "samples",
                sample_rows,
                sample_columns,
                f"epoch {epoch}: {k} prior samples | a real face | {k} variants ({self._perturbation()[0].name}, "
                f"a={self._perturbation()[1]:g}, {self._render_mode()} rendering)",
            ),
        ):
            path = save_class_grid(
                rows=rows,
                class_names=self.class_names,
                path=grids / f"{name}_{tag}.png",
                title=title,
                column_labels=columns,
            )
            (grids / f"{name}.png").write_bytes(path.read_bytes())
            paths.append(path)
        if flip_rows:
            path = save_class_grid(
                rows=flip_rows,
                class_names=flip_names,
                path=grids / f"label_flip_{tag}.png",
                title=f"epoch {epoch}: real faces of other classes | the same codes decoded with the "
                "minority label (EMA decoder, z = mu)",
                column_labels=[],
            )
            (grids / "label_flip.png").write_bytes(path.read_bytes())
        return paths[0], paths[1]

    def _label_flip_rows(
        self, encoded: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], *, fit_counts: list[int], k: int
    ) -> tuple[list[torch.Tensor], list[str]]:
        """Two rows per minority class (every class smaller than the largest): k real faces of the other
        classes (the larger first, taken in turn) and dec(mu, minority label) of each."""
        rows, names = [], []
        largest = max(fit_counts)
        for target in [c for c in range(len(self.class_names)) if fit_counts[c] < largest]:
            donors = [c for c in sorted(encoded, key=lambda c: -fit_counts[c]) if c != target]
            picks = [(c, i) for i in range(k) for c in donors if i < encoded[c][0].shape[0]][:k]
            if not picks:
                continue
            x = torch.stack([encoded[c][0][i] for c, i in picks])
            mu = torch.stack([encoded[c][1][i] for c, i in picks])
            flipped = self._decode(mu, torch.full((len(picks),), target, device=self.device, dtype=torch.long))
            rows += [x.float().cpu(), flipped.float().cpu()]
            names += ["sources", f"as {self.class_names[target]}"]
        return rows, names
