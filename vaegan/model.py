"""Class-conditional VAE-GAN (Larsen et al. 2016) with a projection discriminator (Miyato & Koyama 2018).

Shapes read as einops patterns: images `b c h w` in [-1, 1], latents `b d`, labels `b`.
The parts are separate modules because they have separate optimizers and separate loss terms
(see `vaegan.module`): the encoder learns from KL + reconstruction + the latent adversary, the
decoder from reconstruction + adversarial + label terms, the discriminator from the hinge loss
and the latent classifier from reading the label off the codes.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from faces.features import imagenet_efficientnet_lite0_trunk, imagenet_stage_outputs

RESOLUTIONS = (32, 64, 128)
LATENT_DIMS = (32, 64, 128, 256, 512)
# Everything that shapes the weights; a checkpoint must agree on all of these to load.
ARCHITECTURE_KEYS = (
    "resolution",
    "latent_dim",
    "num_classes",
    "base_channels",
    "max_channels",
    "embed_dim",
    "encoder_sees_label",
    "expression_classifier",
    "decoder_full_resolution",
    "expression_classifier_imagenet",
)
# Keys whose value is a switch rather than a size; files written before a switch existed get its default.
ARCHITECTURE_SWITCHES = {
    "encoder_sees_label": True,
    "expression_classifier": False,
    "decoder_full_resolution": False,
    "expression_classifier_imagenet": False,
}
# The layout of the weights: 2 = space-to-depth stems in encoder and discriminator, a sub-pixel last
# decoder level and the discriminator's auxiliary expression classifier; 3 = and the latent classifier
# (Fader Networks' latent discriminator). A file of another version cannot be loaded into this code:
# vaegan.checkpoint refuses it and says to retrain.
ARCHITECTURE_VERSION = 3
# Encoder log-variance is clamped: exp(logvar) of an untrained or diverging encoder would
# otherwise overflow to Inf and poison the KL term (a classic VAE-GAN NaN source).
LOGVAR_RANGE = (-12.0, 8.0)


def _check_choice(name: str, value: object, choices: tuple[int, ...]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(choices)}")
    return value


def resolution_for(image_size: int) -> int:
    """The generator resolution for data of `image_size` px: the smallest supported one that does not
    lose the data's detail (32 -> 32, 48 -> 64, 64 -> 64, 100 -> 128), 128 above that.

    RAF-DB's 100 px faces go to 128 rather than 64: at 64 the brows, lids and lip corners that carry
    an expression are 1-2 px wide again, the failure README measured at 32 px for 64 px data.
    """
    return next((r for r in RESOLUTIONS if r >= image_size), RESOLUTIONS[-1])


def _channels(*, base_channels: int, max_channels: int, levels: int) -> list[int]:
    """Channel width per level, from full resolution (level 0) down to 4x4 (level `levels`)."""
    return [min(max_channels, base_channels * 2**level) for level in range(levels + 1)]


def _num_downsamplings(resolution: int) -> int:
    return int(math.log2(resolution // 4))


class Encoder(nn.Module):
    """q(z | x[, y]): a space-to-depth stem, strided convs down to 4x4, then a linear head for mean and log-variance.

    The stem folds each 2x2 pixel block into channels (pixel_unshuffle) and convolves at half
    resolution: a full-resolution conv costs 4x as much per output for what a 2x2 block already
    says. The label enters after the convolutions (concatenated to the flattened features), so the
    latent code need not carry the expression: the decoder gets it from the label instead.
    `sees_label=False` is Fader's and AttGAN's encoder, q(z | x): the code is a function of the image
    alone, so it cannot add a label-dependent offset that a latent adversary trained alongside chases
    but never catches (what the conditional encoder did; BENCHMARKS.md).
    """

    def __init__(
        self,
        *,
        resolution: int,
        latent_dim: int,
        num_classes: int,
        base_channels: int,
        max_channels: int,
        embed_dim: int,
        sees_label: bool = True,
    ) -> None:
        super().__init__()
        levels = _num_downsamplings(resolution)
        widths = _channels(base_channels=base_channels, max_channels=max_channels, levels=levels)
        layers: list[nn.Module] = [
            nn.PixelUnshuffle(2),
            nn.Conv2d(12, widths[1], 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for level in range(1, levels):
            layers += [
                nn.Conv2d(widths[level], widths[level + 1], 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(widths[level + 1]),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.label_embedding = nn.Embedding(num_classes, embed_dim) if sees_label else None
        self.head = nn.Linear(widths[-1] * 16 + (embed_dim if sees_label else 0), 2 * latent_dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = rearrange(self.features(images), "b c h w -> b (c h w)")
        # The head runs in fp32 even under bf16 autocast: near |mu| ~ 2 bf16's spacing (~0.016) reaches
        # the posterior sigma, so a*sigma perturbations of the codes would drown in rounding.
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = h.float()
            if self.label_embedding is not None:
                h = torch.cat([h, self.label_embedding(labels).float()], dim=1)
            mu, logvar = rearrange(self.head(h), "b (two d) -> two b d", two=2)
        return mu, logvar.clamp(*LOGVAR_RANGE)


class ConditionalUpBlock(nn.Module):
    """Nearest upsample + 3x3 conv + batch norm whose scale and shift come from the label (FiLM).

    Conditioning every scale, not only the input, keeps the label from being ignored when
    the latent code is informative (the decoder cannot route around it at the fine scales
    where mouth and brow shape live).
    """

    def __init__(self, *, in_channels: int, out_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, affine=False)
        self.film = nn.Linear(embed_dim, 2 * out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(self.upsample(h)))
        gamma, beta = rearrange(self.film(embedding).to(h.dtype), "b (two c) -> two b c 1 1", two=2)
        return self.act(h * (1 + gamma) + beta)


class Decoder(nn.Module):
    """p(x | z, y): [z, embed(y)] -> 4x4 map -> label-modulated upsampling blocks to half resolution ->
    a sub-pixel output layer (conv to 4x3 channels + pixel_shuffle) -> tanh image.

    The last level is sub-pixel (Shi et al. 2016): the conv runs at half resolution and each of its
    outputs paints a 2x2 block, a quarter of the cost of a full-resolution conv block.
    `full_resolution=True` replaces it with one more label-modulated block at full resolution (width
    `base_channels`) and a 3x3 RGB conv there. Why: the sub-pixel layer draws every 2x2 block linearly from
    one 16-channel half-resolution map, and the strokes that carry a 64 px face's expression (brows, lids,
    lip corners) are 1-2 px wide, and a 1 px Gaussian blur of real faces already costs the judge 80 % of its
    Disgust readings and a third of Fear's and Anger's (BENCHMARKS.md). Measured at 24 epochs it drew no
    sharper reconstructions and more speckle, so it is off by default; a training step costs 1.23x.
    """

    def __init__(
        self,
        *,
        resolution: int,
        latent_dim: int,
        num_classes: int,
        base_channels: int,
        max_channels: int,
        embed_dim: int,
        full_resolution: bool = False,
    ) -> None:
        super().__init__()
        levels = _num_downsamplings(resolution)
        widths = _channels(base_channels=base_channels, max_channels=max_channels, levels=levels)
        self.full_resolution = full_resolution
        last_level = 0 if full_resolution else 1
        self.label_embedding = nn.Embedding(num_classes, embed_dim)
        self.stem = nn.Linear(latent_dim + embed_dim, widths[-1] * 16)
        self.stem_norm = nn.BatchNorm2d(widths[-1])
        self.blocks = nn.ModuleList(
            ConditionalUpBlock(in_channels=widths[level + 1], out_channels=widths[level], embed_dim=embed_dim)
            for level in reversed(range(last_level, levels))
        )
        if full_resolution:
            self.to_rgb = nn.Conv2d(widths[0], 3, 3, padding=1)
            return
        self.to_rgb = nn.Conv2d(widths[1], 3 * 4, 3, padding=1)  # 4 = the 2x2 block each output paints
        # ICNR initialisation (Aitken et al. 2017): the four sub-pixel kernels of a colour start equal, so the
        # untrained layer is a nearest-neighbour upsampling instead of a checkerboard the GAN must unlearn.
        with torch.no_grad():
            self.to_rgb.weight.copy_(self.to_rgb.weight[::4].repeat_interleave(4, dim=0))
            self.to_rgb.bias.copy_(self.to_rgb.bias[::4].repeat_interleave(4))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embedding = self.label_embedding(labels)
        h = self.stem(torch.cat([z, embedding.to(z.dtype)], dim=1))
        h = torch.relu(self.stem_norm(rearrange(h, "b (c h w) -> b c h w", h=4, w=4)))
        for block in self.blocks:
            h = block(h, embedding)
        h = self.to_rgb(h)
        return torch.tanh(h if self.full_resolution else F.pixel_shuffle(h, 2))


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, spectrally normalised (Miyato et al. 2018), with an
    auxiliary expression classifier C(x) on the same pooled features (AC-GAN / AttGAN).

    `features(x)` exposes the block with 8x8 maps: Larsen's learned similarity metric compares
    real and reconstructed images there instead of pixel by pixel. `classify(x)` gives C's logits:
    C learns the expression from real images only, and the decoder is trained so that C reads the
    *asked-for* label on dec(z, y') (the swapped-label loss of `vaegan.module`).
    """

    def __init__(self, *, resolution: int, num_classes: int, base_channels: int, max_channels: int) -> None:
        super().__init__()
        levels = _num_downsamplings(resolution)
        widths = _channels(base_channels=base_channels, max_channels=max_channels, levels=levels)
        # Space-to-depth stem, as in the encoder: the first conv runs at half resolution.
        self.stem = nn.Sequential(
            nn.PixelUnshuffle(2), spectral_norm(nn.Conv2d(12, widths[1], 3, padding=1)), nn.LeakyReLU(0.2)
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                spectral_norm(nn.Conv2d(widths[level], widths[level + 1], 4, stride=2, padding=1)), nn.LeakyReLU(0.2)
            )
            for level in range(1, levels)
        )
        # The block whose output is the similarity feature: the one producing 8x8 maps.
        self.feature_block = levels - 3
        self.linear = spectral_norm(nn.Linear(widths[-1], 1))
        self.class_projection = spectral_norm(nn.Embedding(num_classes, widths[-1]))
        # Not spectrally normalised: a Lipschitz bound would only slow the classifier, whose loss is CE.
        self.classifier = nn.Linear(widths[-1], num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        h = self.stem(images)
        for block in self.blocks[: self.feature_block + 1]:
            h = block(h)
        return h

    def _pooled(self, features: torch.Tensor) -> torch.Tensor:
        h = features
        for block in self.blocks[self.feature_block + 1 :]:
            h = block(h)
        return h.sum(dim=(2, 3))  # sum pooling, as in the projection discriminator paper

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Expression logits `b num_classes` of the auxiliary classifier."""
        return self.classifier(self._pooled(self.features(images)).float())

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        return_features: bool = False,
        return_class_logits: bool = False,
    ):
        features = self.features(images)
        pooled = self._pooled(features)
        logits = self.linear(pooled).squeeze(1) + (self.class_projection(labels).to(pooled.dtype) * pooled).sum(dim=1)
        out = (logits,)
        if return_features:
            out += (features,)
        if return_class_logits:
            out += (self.classifier(pooled.float()),)
        return out if len(out) > 1 else logits


class LatentClassifier(nn.Module):
    """Reads the expression from a latent code alone: Fader Networks' latent discriminator (Lample et al. 2017).

    Trained to predict y from mu(x, y); the encoder is trained to leave it at chance, so the code keeps
    identity, pose and lighting but not the expression, and dec(z, y') must draw y' from the label.
    An MLP: the code is a vector, and Fader's own is two layers on its flattened latent map.
    """

    def __init__(self, *, latent_dim: int, num_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.float())


class ExpressionClassifier(nn.Module):
    """A separate expression classifier for the swapped-label loss (`expression_classifier: true`).

    Why not D's own classifier: on D's spectrally normalised trunk (base width 8, shared with the real/fake
    hinge) it read real validation faces at 0.31 mean class recall after 48 epochs while the decoder's
    label flips satisfied it at 0.90; a batch-normalised CNN trained alone on the same faces read 0.57-0.65
    after 12 epochs (BENCHMARKS.md). A decoder can only obey its label as well as the classifier it answers
    to reads expressions. Trained on real faces only; the decoder's images are judged in eval mode, so
    fakes never touch its batch-norm statistics. VGG-style double convolutions from full resolution down to
    4x4, width 16: a space-to-depth stem (as the other networks have) learned nothing in 12 epochs inside the
    VAE-GAN (balanced cross-entropy stayed at ln 7), and width 32 costs 4x for no gain measured yet.
    """

    def __init__(self, *, resolution: int, num_classes: int, width: int = 16, dropout: float = 0.3) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        layers: list[nn.Module] = []
        channels_in, channels = 3, width
        for _ in range(_num_downsamplings(resolution)):  # full resolution down to 4x4
            layers += [*conv(channels_in, channels), *conv(channels, channels), nn.MaxPool2d(2)]
            channels_in, channels = channels, 2 * channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels_in, num_classes))

    def forward(self, images: torch.Tensor, *, return_features: bool = False):
        """images float [-1, 1] `b 3 R R` -> expression logits `b num_classes`; with `return_features`, also
        each block's output (full resolution / 2, / 4, ... 4x4), for the expression feature loss."""
        blocks, h = [], images
        for layer in self.features:
            h = layer(h)
            if return_features and isinstance(layer, nn.MaxPool2d):
                blocks.append(h)
        logits = self.head(h.mean(dim=(2, 3)).float())
        return (logits, blocks) if return_features else logits


class ImageNetExpressionClassifier(nn.Module):
    """The separate expression classifier on an ImageNet trunk (`expression_classifier_imagenet: true`): the
    offline EfficientNet-Lite0's stem and first four stages (1/16 of the input: 4x4 at 64 px, 80 channels), the
    first three frozen with their batch norm in eval mode, the fourth fine-tuned, then a 1x1 conv, pooling and a
    linear layer. Why: the scratch CNN learns its filters from ~2,000 faces together with the decoder it judges,
    and the decoder's flips to Fear satisfied it with bands of coloured speckle; edge and blob detectors learned
    on ImageNet cannot be taught to accept such a pattern, so the label loss has to move the brows and mouth the
    detectors respond to. A probe on these stages read real validation faces at 0.59-0.67 mean class recall in
    5-30 epochs (frozen fourth stage: 0.39-0.48). The weights are stored with the VAE-GAN (about 0.2 M).
    Measured at 48 epochs (BENCHMARKS.md): no gain once the flips are judged by a classifier of another family,
    and the flips to Fear are still patterns; a judge from the same ImageNet weights overstates them."""

    FROZEN_STAGES = 3
    STAGES = 4

    def __init__(self, *, resolution: int, num_classes: int, width: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.stem, self.stages = imagenet_efficientnet_lite0_trunk(stages=self.STAGES)
        for module in self._frozen():
            module.requires_grad_(False)
        channels = self.stages[-1][-1].conv_pwl.out_channels
        self.head = nn.Sequential(
            nn.Conv2d(channels, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(width, num_classes),
        )

    def train(self, mode: bool = True) -> ImageNetExpressionClassifier:
        super().train(mode)
        for module in self._frozen():
            module.eval()  # frozen: their batch-norm statistics are ImageNet's and must never move
        return self

    def _frozen(self) -> tuple[nn.Module, ...]:
        """The stem and the first FROZEN_STAGES stages: ImageNet's, never trained."""
        return (self.stem, *self.stages[: self.FROZEN_STAGES])

    def forward(self, images: torch.Tensor, *, return_features: bool = False):
        """images float [-1, 1] `b 3 R R` -> expression logits `b num_classes`; with `return_features`, also the
        outputs of stages 2-4 (1/4, 1/8, 1/16 of the input), for the expression feature loss."""
        stage_outputs = imagenet_stage_outputs(self.stem, self.stages, images)
        logits = self.head(stage_outputs[-1]).float()
        return (logits, stage_outputs[1:]) if return_features else logits


class VAEGAN(nn.Module):
    """Encoder, class-conditional decoder, projection discriminator (with its auxiliary classifier), latent
    classifier and an EMA copy of the decoder.

    `encode(images, labels)` uses the label unless `encoder_sees_label=False` (then it ignores them);
    `decode(z, labels)` uses the EMA decoder by default, which is what sampling and augmentation should
    see (smoother than the raw weights after adversarial updates). `decode(..., ema=False)` is the trained copy.
    """

    def __init__(
        self,
        *,
        resolution: int,
        latent_dim: int,
        num_classes: int,
        base_channels: int = 64,
        max_channels: int = 512,
        embed_dim: int = 64,
        encoder_sees_label: bool = True,
        expression_classifier: bool = False,
        decoder_full_resolution: bool = False,
        expression_classifier_imagenet: bool = False,
    ) -> None:
        super().__init__()
        _check_choice("resolution", resolution, RESOLUTIONS)
        _check_choice("latent_dim", latent_dim, LATENT_DIMS)
        for name, value in (
            ("num_classes", num_classes),
            ("base_channels", base_channels),
            ("max_channels", max_channels),
            ("embed_dim", embed_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        for name, value in (
            ("encoder_sees_label", encoder_sees_label),
            ("expression_classifier", expression_classifier),
            ("decoder_full_resolution", decoder_full_resolution),
            ("expression_classifier_imagenet", expression_classifier_imagenet),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"{name}={value!r} must be true or false")
        if expression_classifier_imagenet and not expression_classifier:
            raise ValueError(
                "expression_classifier_imagenet=true is the separate expression classifier's trunk: it needs "
                "expression_classifier=true"
            )
        if max_channels < base_channels:
            raise ValueError(f"max_channels={max_channels} must be >= base_channels={base_channels}")
        self.resolution = resolution
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.architecture = dict(
            resolution=resolution,
            latent_dim=latent_dim,
            num_classes=num_classes,
            base_channels=base_channels,
            max_channels=max_channels,
            embed_dim=embed_dim,
            encoder_sees_label=encoder_sees_label,
            expression_classifier=expression_classifier,
            decoder_full_resolution=decoder_full_resolution,
            expression_classifier_imagenet=expression_classifier_imagenet,
        )
        shared = dict(
            resolution=resolution, num_classes=num_classes, base_channels=base_channels, max_channels=max_channels
        )
        self.encoder = Encoder(latent_dim=latent_dim, embed_dim=embed_dim, sees_label=encoder_sees_label, **shared)
        self.decoder = Decoder(
            latent_dim=latent_dim, embed_dim=embed_dim, full_resolution=decoder_full_resolution, **shared
        )
        self.discriminator = ProjectionDiscriminator(**shared)
        self.latent_classifier = LatentClassifier(latent_dim=latent_dim, num_classes=num_classes)
        # Only when asked for: files without it (the default) keep their layout.
        classifier_class = ImageNetExpressionClassifier if expression_classifier_imagenet else ExpressionClassifier
        self.expression_classifier = (
            classifier_class(resolution=resolution, num_classes=num_classes) if expression_classifier else None
        )
        self.decoder_ema = copy.deepcopy(self.decoder).requires_grad_(False).eval()

    def classify(self, images: torch.Tensor, *, return_features: bool = False):
        """The expression logits the swapped-label loss answers to: the separate classifier when there is one
        (in eval mode: the decoder's images never touch its batch-norm statistics), else D's own.
        `return_features` (the separate classifier only): also its block outputs, see ExpressionClassifier."""
        if self.expression_classifier is None:
            if return_features:
                raise ValueError("expression features need the separate classifier (vaegan.expression_classifier=true)")
            return self.discriminator.classify(images)
        was_training = self.expression_classifier.training
        self.expression_classifier.eval()
        try:
            return self.expression_classifier(images, return_features=return_features)
        finally:
            self.expression_classifier.train(was_training)

    def train(self, mode: bool = True) -> VAEGAN:
        super().train(mode)
        self.decoder_ema.eval()  # the EMA copy always decodes with its averaged batch-norm statistics
        return self

    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images float [-1, 1] `b 3 R R`, labels `b` -> (mu, logvar), each `b latent_dim`."""
        self._check_images(images)
        return self.encoder(images, labels)

    def decode(self, z: torch.Tensor, labels: torch.Tensor, *, ema: bool = True) -> torch.Tensor:
        """z `b latent_dim`, labels `b` -> images float [-1, 1] `b 3 R R` (EMA decoder unless ema=False)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [N, {self.latent_dim}], got {tuple(z.shape)}")
        return (self.decoder_ema if ema else self.decoder)(z, labels)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, *, noise: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * logvar) * noise

    @torch.no_grad()
    def update_ema(self, *, decay: float) -> None:
        for ema_param, param in zip(self.decoder_ema.parameters(), self.decoder.parameters()):
            ema_param.lerp_(param.detach(), 1.0 - decay)
        # Batch-norm running statistics are already averages: copy them.
        for ema_buffer, buffer in zip(self.decoder_ema.buffers(), self.decoder.buffers()):
            ema_buffer.copy_(buffer)

    def _check_images(self, images: torch.Tensor) -> None:
        if (
            images.ndim != 4
            or images.shape[1] != 3
            or images.shape[-1] != self.resolution
            or images.shape[-2] != self.resolution
        ):
            raise ValueError(
                f"images must be float [N, 3, {self.resolution}, {self.resolution}] in [-1, 1], got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise TypeError(f"images must be float in [-1, 1] (use vaegan.images.to_model_range), got {images.dtype}")
