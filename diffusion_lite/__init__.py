"""diffusion_lite: text-to-image diffusion from scratch, small enough for a laptop CPU.

The public API, by chapter of the course (notebooks/):

    from diffusion_lite import Schedule, ScheduleConfig, q_sample                # 01-02 forward process, schedules
    from diffusion_lite import UNet, UNetConfig                                  # 03 the U-Net
    from diffusion_lite import TrainConfig, fit, diffusion_loss                  # 04 training
    from diffusion_lite import sample, sample_ddpm, sample_ddim, eps_model_fn    # 05 sampling
    from diffusion_lite import sample_dpmpp_2m                                   # 05 a second-order solver
    from diffusion_lite import Tokenizer, CLIPConfig, CLIPModel, train_clip      # 06 CLIP
    from diffusion_lite import text_training                                     # 07 text-conditional training
    from diffusion_lite import classifier_free_guidance, CADS                    # 08 guidance
    from diffusion_lite import img2img, inpaint, edit                            # 08 editing an image
    from diffusion_lite import load_pretrained, load, DiffusionPipeline          # shipped models
    from diffusion_lite import load_dataset, get_device, seed_everything
"""

__version__ = "0.1.0"

from .checkpoints import CheckpointError, list_pretrained, load, load_pretrained
from .clip import CLIPConfig, CLIPModel
from .clip_train import train_clip
from .config import ScheduleConfig, TrainConfig, UNetConfig
from .data import load_dataset
from .dpm_solver import sample_dpmpp_2m
from .editing import edit, img2img, inpaint
from .guidance import CADS, classifier_free_guidance
from .pipeline import DiffusionPipeline, text_training
from .sampling import eps_model_fn, sample, sample_ddim, sample_ddpm
from .schedules import Schedule, q_sample
from .tokenizer import Tokenizer
from .train import diffusion_loss, fit
from .unet import UNet
from .utils import get_device, seed_everything

__all__ = [
    "CADS", "CLIPConfig", "CLIPModel", "CheckpointError", "DiffusionPipeline", "Schedule", "ScheduleConfig",
    "Tokenizer", "TrainConfig", "UNet", "UNetConfig", "classifier_free_guidance", "diffusion_loss", "edit",
    "eps_model_fn", "fit", "get_device", "img2img", "inpaint", "list_pretrained", "load", "load_dataset",
    "load_pretrained", "sample", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "q_sample", "seed_everything",
    "text_training", "train_clip", "__version__",
]
