"""The sections of a training configuration: frozen dataclasses, one per concern.

Every field carries a ``#:`` doc comment (the Sphinx convention); :mod:`faceforge.config.docs`
reads them to document the keys in ``faceforge train --help``, so the comment is the one
place a setting is explained.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic-faces source used when ``data.source == 'synthetic'``."""

    #: identities rendered for training
    num_identities: int = 300
    #: training images rendered per identity
    images_per_identity: int = 24
    #: seed of the rendered identities and pairs
    seed: int = 0
    #: held-out verification identities (never used for training) and pair count
    val_identities: int = 600
    val_pairs: int = 6000
    #: render the training images once and keep them in memory instead of on every access
    cache: bool = True


@dataclass(frozen=True)
class DataConfig:
    """Where training images come from and how they are loaded."""

    #: synthetic | folder | list | recordio | lmdb
    source: str = "synthetic"
    #: image folder root (folder), list file (list: ``path label`` lines), folder holding
    #: train.rec/train.idx/property or a .rec file (recordio), .lmdb database (lmdb)
    path: str = ""
    #: root that relative paths in a list file are resolved against (default: its folder)
    root: str = ""
    #: model input height (and width unless ``image_width`` is set); backbones take 112
    image_size: int = 112
    #: model input width: 0 = square, 96 = SphereFace-style 112x96 crops (the centre 96
    #: columns of 112x112 ArcFace-aligned images, the same template shifted 8 px left)
    image_width: int = 0
    #: data loader worker processes (0: load in the training process)
    num_workers: int = 0
    #: skip unreadable images (counted and reported; another image takes each one's place in
    #: its batch) instead of stopping with an error
    skip_corrupt: bool = False
    #: the most pixels an image may declare in its header: larger ones are refused before
    #: decoding (a decompression-bomb guard). 1024x1024 is the largest size public face
    #: datasets store and 83x a 112x112 crop (faceforge.data.image_io.MAX_DATASET_PIXELS)
    max_pixels: int = 1024 * 1024
    #: keep loader worker processes alive from one epoch to the next (faster epoch starts)
    persistent_workers: bool = False
    #: epoch (a shuffled permutation) | pk (P identities x ``pk_images`` images per batch, for
    #: triplet mining)
    sampler: str = "epoch"
    #: images of each identity in a ``pk`` batch
    pk_images: int = 4
    #: decode a recordio source on the GPU with NVIDIA DALI when it is installed (CUDA only;
    #: falls back to the CPU loader with a warning otherwise)
    dali: bool = False
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (height, width)."""
        return self.image_size, self.image_width or self.image_size


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentations (all operate on uint8 HWC RGB before normalisation)."""

    #: probability of a horizontal flip
    hflip: float = 0.5
    #: brightness and contrast jitter: factors drawn from [1 - x, 1 + x]
    brightness: float = 0.0
    contrast: float = 0.0
    #: resize by a factor in [1, 1 + random_crop_scale] then crop back to image_size
    random_crop_scale: float = 0.0
    #: probability of Cutout (a random ``cutout_size`` square blanked)
    cutout_prob: float = 0.0
    cutout_size: int = 32
    #: probability of blanking the upper or lower half of the face (occlusion robustness)
    half_face_prob: float = 0.0
    #: probability of a wavy line mesh over the face, as printed on ID-photo scans (MeshFace,
    #: https://arxiv.org/abs/1611.05271); the ranges [low, high] its wavelength and line
    #: thickness are drawn from (pixels of a 112-pixel-high crop) and its opacity's range
    mesh_prob: float = 0.0
    mesh_period: tuple[float, ...] = (12.0, 36.0)
    mesh_thickness: tuple[float, ...] = (1.0, 2.5)
    mesh_opacity: tuple[float, ...] = (0.3, 0.8)
    #: probability of a synthetic face mask from the nose bridge to the chin, placed from the
    #: ArcFace template's landmarks (training crops are aligned); shapes drawn from
    #: ``mask_shapes`` (surgical | cloth | kn95), colours from a palette
    mask_prob: float = 0.0
    mask_shapes: tuple[str, ...] = ("surgical", "cloth", "kn95")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone architecture; names come from :func:`faceforge.models.build_backbone`."""

    #: backbone name (see ``faceforge models``)
    backbone: str = "mobilefacenet"
    #: length of the face embedding
    embedding_size: int = 512
    #: dropout before the embedding layer
    dropout: float = 0.0
    #: recompute activations in the backward pass (IResNet): far less memory, ~1/3 more time
    grad_checkpointing: bool = False
    #: a faceforge checkpoint whose backbone starts this run (fine-tuning; same architecture,
    #: loaded strictly; its head and training state are not used)
    init_from: str = ""


@dataclass(frozen=True)
class HeadConfig:
    """Classification head: a (normalised) linear layer followed by a margin.

    type: softmax | normface | arcface | cosface | sphereface | combined | adaface |
    curricularface | magface | subcenter_arcface | elasticface | elasticface_cos | none (no
    classifier: embedding losses only, e.g. triplet fine-tuning). Angular margins are
    in radians everywhere (arcface ``margin``, combined ``m2``); cosface ``margin`` is on the
    cosine; sphereface ``margin`` is the integer multiplier of the angle.
    """

    #: margin head; see the section's description for the names
    type: str = "arcface"
    #: logit scale s applied to the cosines
    scale: float = 64.0
    #: margin m (radians for arcface, on the cosine for cosface, the integer multiplier for
    #: sphereface); unset (null), the paper's value for head.type: 0.5 for arcface,
    #: curricularface, subcenter_arcface and elasticface, 0.35 for cosface and
    #: elasticface_cos, 0.4 for adaface, 4 for sphereface
    margin: float | None = None
    #: arcface, magface: apply the margin only where cos(theta) > 0 (theta < pi/2); unset
    #: (null), the reference code's choice: off for arcface (insightface), on for magface
    easy_margin: bool | None = None
    #: combined margin cos(m1 * theta + m2) - m3 (insightface's "combined")
    m1: float = 1.0
    m2: float = 0.3
    m3: float = 0.2
    #: SphereFace lambda annealing: lambda = max(lambda_min, base * (1 + gamma * it) ** -power)
    sphere_base: float = 1000.0
    sphere_gamma: float = 0.12
    sphere_power: float = 1.0
    sphere_lambda_min: float = 5.0
    #: AdaFace (margin 0.4 in the paper): norm concentration h, and the EMA momentum of the
    #: AdaFace norm statistics and of CurricularFace's t
    adaface_h: float = 0.333
    ema_alpha: float = 0.01
    #: MagFace: the norm range [l_a, u_a] mapped linearly to margins [l_m, u_m], and the
    #: weight lambda_g of the norm regulariser
    mag_l_a: float = 10.0
    mag_u_a: float = 110.0
    mag_l_m: float = 0.45
    mag_u_m: float = 0.8
    mag_lambda_g: float = 35.0
    #: sub-center ArcFace: centres per class; after ``subcenter_drop_step`` training steps
    #: (optimizer steps, each of ``train.accumulate`` batches; 0: never)
    #: keep only the dominant sub-centre and drop samples farther than ``subcenter_drop_angle``
    #: radians (75 degrees in the paper) from their class
    subcenters: int = 3
    subcenter_drop_step: int = 0
    subcenter_drop_angle: float = 1.309
    #: ElasticFace: std of the per-sample margin N(margin, sigma) (arc: margin 0.5, cos: 0.35);
    #: ``elastic_plus`` gives samples nearer their centre smaller margins (ElasticFace+)
    elastic_sigma: float = 0.05
    elastic_plus: bool = False
    #: Partial FC (An et al. 2021): class centers sharded over the processes of a
    #: torchrun job, a ``sample_rate`` fraction of each shard's negatives used per step
    partial_fc: bool = False
    sample_rate: float = 1.0


@dataclass(frozen=True)
class LossConfig:
    """Losses composed on top of the head's logits and the embeddings."""

    #: focal loss exponent; 0 means plain cross-entropy
    focal_gamma: float = 0.0
    #: label smoothing of the cross-entropy targets
    label_smoothing: float = 0.0
    #: weight of the center loss (0 disables it); the seeds' recipe uses 0.005
    center_weight: float = 0.0
    #: the centers' own SGD learning rate (as in Wen et al. 2016)
    center_lr: float = 0.5
    #: weight of the triplet loss on the L2-normalised embeddings (0 disables it)
    triplet_weight: float = 0.0
    #: triplet margin, in the units of ``triplet_distance``
    triplet_margin: float = 0.2
    #: batch_hard | semi_hard (online mining inside each batch)
    triplet_mining: str = "batch_hard"
    #: l2 | squared_l2 | cosine (1 - cosine similarity)
    triplet_distance: str = "l2"


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    #: sgd | adamw
    name: str = "sgd"
    #: peak learning rate (per global batch, reached after warm-up)
    lr: float = 0.1
    #: SGD momentum (adamw: beta1)
    momentum: float = 0.9
    #: L2 weight decay
    weight_decay: float = 5e-4
    #: exclude BatchNorm/PReLU weights and biases from weight decay
    no_decay_bn_bias: bool = True
    #: cosine | step | poly | constant
    schedule: str = "cosine"
    #: steps of linear warm-up from 0 to ``lr``
    warmup_steps: int = 0
    #: step schedule: multiply by ``gamma`` at these fractions of the total steps
    milestones: tuple[float, ...] = (0.5, 0.75, 0.9)
    gamma: float = 0.1
    #: poly schedule exponent
    power: float = 2.0
    #: clip the global gradient norm (0 disables)
    grad_clip: float = 5.0


@dataclass(frozen=True)
class EvalConfig:
    """Periodic verification during training."""

    #: evaluate every N steps (0: only at the end)
    every: int = 0
    #: include the synthetic held-out pairs (synthetic source) in the evaluation sets
    synthetic_pairs: bool = True
    #: insightface .bin verification sets evaluated beside the synthetic pairs
    bins: tuple[str, ...] = ()
    #: images per batch when embedding the evaluation sets
    batch_size: int = 128
    #: add the mirrored face's embedding (flip test-time augmentation); the stored decision
    #: thresholds are calibrated with it
    flip: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """The training run itself."""

    #: folder of checkpoints, logs and the resolved config
    output_dir: str = "runs/quickstart"
    #: passes over the training set
    epochs: int = 1
    #: if > 0, overrides epochs
    max_steps: int = 0
    #: images per process and step (the global batch is batch_size x processes x accumulate)
    batch_size: int = 64
    #: batches whose gradients are summed before each optimizer step
    accumulate: int = 1
    #: seed of initialisation, sampling and augmentation
    seed: int = 0
    #: auto | cpu | cuda
    device: str = "auto"
    #: fp32 | bf16 | fp16 | auto: fp16 on CUDA (with a GradScaler), bf16 on a CPU that computes
    #: it natively, else fp32 (see core/precision.py)
    amp: str = "auto"
    #: NHWC memory layout (faster convolutions on recent GPUs)
    channels_last: bool = False
    #: synchronise BatchNorm statistics across processes (CUDA only)
    sync_bn: bool = False
    #: fp16 only: steps skipped for a non-finite loss in a row before training stops
    max_skipped_steps: int = 50
    #: run the training forward through torch.compile (slow first step, faster after)
    compile: bool = False
    #: log loss, learning rate and speed every N steps
    log_every: int = 20
    #: write last.pt every N steps (0: off) and every ``save_minutes`` of training (0: off)
    save_every: int = 0
    save_minutes: float = 10.0
    #: under torchrun: minutes a process waits for the others (rank 0's evaluation, a
    #: checkpoint gathered from every process, a gradient all-reduce) before the run ends
    #: with an error naming what it waited for
    collective_timeout_minutes: float = 30.0
    #: write TensorBoard event files to ``output_dir``
    tensorboard: bool = True
    #: show a progress bar (``faceforge train --no-progress`` turns it off)
    progress: bool = True


@dataclass(frozen=True)
class Config:
    """Everything a training run needs; saved inside every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
