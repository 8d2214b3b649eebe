"""Training constants. Every value here is set by an Accepted ADR in decisions/; `make decisions` checks it.

To change one: `make adr TITLE="..."`, argue it, mark it Accepted, then edit the value here.
For a one-off experiment instead: `make train ARGS="--set KEY=VALUE"` (the run is recorded as exploratory).
"""

# Data
DATASET = "shapes"  # "shapes" (embedded, drawn at start-up), "cifar10" or "folder" (from DATA_DIR) (ADR 0002, 0019)
DATA_DIR = ""  # folder of the cifar10 or folder dataset; decoded once into runs/.data-cache (ADR 0019)
CAPTION_COLUMN = "text"  # the caption's column in a folder's metadata.jsonl / metadata.csv (Hugging Face imagefolder) (ADR 0052)
DATASET_SIZE = 10000  # images in the shapes training set (ADR 0002)
DATASET_SEED = 1234  # seed of the dataset generator, separate from SEED (ADR 0002)
DATASET_SPLIT = "train"  # shapes: "train" (all but the held-out pairs), "heldout", "all"; a folder with split folders: "train", "test", "validation" (ADR 0016, 0052)
IMAGE_SIZE = 32  # pixels per side (ADR 0002)
RESIZE = "crop"  # real images: "crop" (shorter side to IMAGE_SIZE, centre square) or "pad" (ADR 0019)
BACKGROUND = (255, 255, 255)  # RGB that transparent pixels are composited on, and "pad" fills with (ADR 0019)
FLIP = "auto"  # random left-right flip: "on", "off", "auto" (on for cifar10, off for shapes and folder) (ADR 0019)
BAD_FILES = "skip"  # unusable image or caption: "skip" (listed in the run's data_report.txt) or "stop" (ADR 0019)
CIFAR10_CAPTION = "a photo of {}"  # caption template; {} becomes "a cat", "an airplane" (ADR 0019)

# Diffusion
TIMESTEPS = 1000  # T, number of diffusion steps (ADR 0003)
BETA_SCHEDULE = "cosine"  # "linear" or "cosine" (ADR 0003)
BETA_START = 0.0001  # β_1 of the linear schedule (ADR 0003)
BETA_END = 0.02  # β_T of the linear schedule (ADR 0003)
PREDICTION = "epsilon"  # the UNet predicts "epsilon" (ε), "v" (√ᾱ·ε − √(1−ᾱ)·x_0, Salimans & Ho 2022) or "edm" (EDM's preconditioned F, Karras et al. 2022) (ADR 0028, 0055)
OBJECTIVE = "ddpm"  # "ddpm" (Gaussian diffusion) or "flow" (flow matching on the straight path, Lipman et al. 2023; SAMPLER "euler" or "heun") (ADR 0055)
TIMESTEP_DENSITY = "uniform"  # training timesteps: "uniform", "logit_normal" (SD3) or "lognormal_sigma" (EDM) (ADR 0055)
DENSITY_LOC = 0.0  # logit_normal: the logit's mean (SD3: 0); lognormal_sigma: the mean of ln σ (EDM: -1.2) (ADR 0055)
DENSITY_SCALE = 1.0  # logit_normal: the logit's std (SD3: 1); lognormal_sigma: the std of ln σ (EDM: 1.2) (ADR 0055)
SIGMA_DATA = 0.5  # σ_data of EDM's preconditioning, used by PREDICTION = "edm" (ADR 0055)
OFFSET_NOISE = 0.0  # offset-noise strength s: ε += s·N(0, 1) per image and channel; 0 = off (Guttenberg 2023) (ADR 0028)

# UNet
BASE_CHANNELS = 24  # channels at full resolution (ADR 0006; 32 → 24 by ADR 0050)
CHANNEL_MULTS = (1, 2, 2)  # channel multiplier per resolution level, 32 → 16 → 8 (ADR 0006)
NUM_RES_BLOCKS = 1  # residual blocks per level on the way down (ADR 0006)
ATTENTION_RESOLUTIONS = (16, 8)  # resolutions with self- and cross-attention (ADR 0006)
ATTENTION_HEADS = 4  # heads in every attention layer (ADR 0006)
TIME_EMB_DIM = 128  # sinusoidal timestep embedding width (ADR 0006)
NORM_GROUPS = 8  # groups of the feature maps' normalisation (GroupNorm, or group-wise RMSNorm) (ADR 0006)
NORM = "group"  # "group" (GroupNorm on feature maps, LayerNorm on tokens) or "rms" (RMSNorm on both) (ADR 0030)
LINEAR_BIAS = True  # biases of the UNet's nn.Linear layers (time MLP, attention output, feed-forward) (ADR 0029)
POOLED_TEXT = True  # add the prompt's mean token embedding, projected, to the timestep embedding (ADR 0032, 0044)
SCALE_SHIFT = True  # residual blocks take the embedding as norm(h)·(1 + scale) + shift, not a bias (AdaGN) (ADR 0034, 0044)
DROPOUT = 0.0  # dropout in residual blocks (ADR 0006)

# Text encoder
TEXT_ENCODER = "scratch"  # "scratch" (trained jointly) or "open_clip" (pretrained; frozen unless TRAIN_TEXT_TOWER) (ADR 0004)
TEXT_CONTEXT_LENGTH = 16  # tokens per prompt incl. SOT/EOT; 77 for pretrained open_clip towers (ADR 0004)
TEXT_WIDTH = 128  # width of the scratch text transformer (ADR 0004)
TEXT_HEADS = 4  # attention heads of the scratch text transformer (ADR 0004)
TEXT_LAYERS = 2  # layers of the scratch text transformer (ADR 0004)
OPEN_CLIP_MODEL = "ViT-B-32"  # open_clip model name, used when TEXT_ENCODER = "open_clip" (ADR 0004)
OPEN_CLIP_PRETRAINED = ""  # pretrained tag or local weights file, used when TEXT_ENCODER = "open_clip" (ADR 0004)
TRAIN_TEXT_TOWER = False  # fine-tune the open_clip tower (at TEXT_LEARNING_RATE); ignored by "scratch" (ADR 0031)
TEXT_CACHE_MB = 1024  # frozen encoder: cache caption embeddings up to this size, else encode per batch (ADR 0020)

# Classifier-free guidance and sampling
CAPTION_DROPOUT = 0.1  # probability of training on the empty prompt instead of the caption (ADR 0005)
GUIDANCE_SCALE = 3.0  # s in ε_u + s·(ε_c − ε_u); 1 means no guidance (ADR 0011, 0048)
SAMPLER = "dpmpp2m_sde"  # "ddim", "ddpm" (ancestral, all TIMESTEPS), "dpmpp2m" (DPM-Solver++(2M)), "dpmpp2m_sde" (its SDE form, η = DDIM_ETA); "euler", "heun" for OBJECTIVE = "flow" (ADR 0003, 0055, 0061)
NUM_INFERENCE_STEPS = 12  # sampling steps of the samples, make sample and make eval (ADR 0003, 0059, 0061)
DDIM_ETA = 0.5  # stochasticity η of DDIM and dpmpp2m_sde; 0 is deterministic, 1 ≈ DDPM's ancestral steps (ADR 0003, 0046, 0061)
CLIP_DENOISED = True  # clamp the predicted x_0 to [-1, 1] at every sampling step (ADR 0003)

# Optimisation
MIN_SNR_GAMMA = 5.0  # Min-SNR-γ loss weighting min(SNR, γ)/SNR; 0 = plain L_simple (ADR 0010)
LEARNING_RATE = 0.002  # peak AdamW learning rate (ADR 0007, 0044)
WARMUP_STEPS = 200  # linear learning-rate warm-up, in optimizer steps (ADR 0007)
WEIGHT_DECAY = 0.0  # AdamW decoupled weight decay (ADR 0007)
OPTIMIZER = "adamw"  # "adamw", "lion", "adafactor" or "adamw8bit" (bitsandbytes, not in requirements) (ADR 0025)
ADAM_BETAS = (0.9, 0.95)  # Adam's (β1, β2); Lion's (β1, β2) when OPTIMIZER = "lion" (ADR 0025, 0040, 0044)
ADAM_EPS = 1e-08  # Adam's ε (ADR 0025)
LR_SCHEDULE = "cosine"  # after the warm-up: "constant" or "cosine" decay to LR_MIN_RATIO × peak at the last step (ADR 0025, 0044)
LR_MIN_RATIO = 0.1  # floor of the cosine decay as a fraction of the peak learning rate (ADR 0025)
TEXT_LEARNING_RATE = 0.0  # peak learning rate of a trained text encoder; 0 = LEARNING_RATE (ADR 0027)
GRAD_ACCUM_STEPS = 1  # micro-batches of BATCH_SIZE / GRAD_ACCUM_STEPS images per optimizer step (ADR 0026)
BATCH_SIZE = 32  # images per optimizer step (ADR 0010)
EPOCHS = 8  # passes over the dataset: 2,496 steps (ADR 0007, 0044)
TRAIN_STEPS = 0  # the run's length in optimizer steps, whatever the dataset's size; 0 = EPOCHS epochs (ADR 0056)
GRAD_CLIP = 1.0  # max global gradient norm (ADR 0007)
EMA_DECAY = 0.98  # exponential moving average of the weights, used for sampling; a 50-step horizon (ADR 0007, 0042, 0044)
TRAIN_UNET_PARTS = "all"  # UNet parts trained: "all", or a comma list of down, mid, up, attention (ADR 0015)
SEED = 0  # seed of model init, batching, noise and sample grids (ADR 0007)

# Speed
PRECISION = "auto"  # "auto" (bf16 where the device has it natively, else fp32), "fp32", "bf16" (autocast) (ADR 0035)
CHANNELS_LAST = True  # NHWC memory layout for the convolutions (ADR 0006)
COMPILE = True  # torch.compile the UNet for training; falls back to eager with a warning where it cannot (ADR 0013)

# Monitoring
GENERATE_SAMPLES_EVERY = 1  # epochs between sample grids (ADR 0007)
CHECKPOINT_EVERY = 1  # epochs between checkpoints (ADR 0007)
SAMPLE_GRID_SIZE = 16  # images in each training-time sample grid (ADR 0007)
KEEP_CHECKPOINTS = 3  # newest checkpoints kept per run; older ones are deleted (ADR 0007)
EVAL_EVERY = 1  # epochs between cheap probe evaluations (16 samples, TensorBoard eval/*); 0 = off (ADR 0008)
EVAL_EVERY_STEPS = 0  # optimizer steps between probe evaluations, for short sweep trials; 0 = every EVAL_EVERY epochs (ADR 0023)
PROBE_GUIDANCE_SCALE = 5.0  # guidance of the probe's samples, apart from GUIDANCE_SCALE: a fixed yardstick (ADR 0047)
PROBE_DDIM_ETA = 0.0  # DDIM η of the probe's samples, apart from DDIM_ETA: a fixed yardstick (ADR 0046, 0047)
PROBE_NUM_STEPS = 50  # DDIM steps of the probe's samples, apart from NUM_INFERENCE_STEPS: a fixed yardstick (ADR 0059)
