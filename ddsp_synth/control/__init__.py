"""Controllers: networks that listen to a recording (and a reference) and set an effect
chain's parameters, once per clip or per 10 ms frame, trained through the chain by any
gradient method (the seed's ``f(x) -> p -> h(x, p)``).

* :mod:`.controller` / :mod:`.encoder`: the network (a shared log-mel conv encoder, a head
  onto the chain's raw parameters);
* :mod:`.data` / :mod:`.style`: training examples from pairs of files or self-supervised
  style transfer (random settings rendered by the real devices);
* :mod:`.train` / :mod:`.run`: the training run (``train``'s checkpoints, TensorBoard,
  exact resume, DDP);
* :mod:`.files` / :mod:`.card`: self-describing controller folders;
* :mod:`.apply`: whole files at any rate and channel count, through the real devices;
* :mod:`.baselines` / :mod:`.metrics`: the rule baseline, rel_spec and BS.1770 loudness.
"""

from .apply import Applied, apply_controller, predict_settings
from .baselines import rule_baseline
from .config import ControlDataConfig, ControlError, ControllerConfig
from .controller import Controller
from .files import ControllerFileError, load_controller, save_controller
from .metrics import integrated_loudness
from .run import control_train_config
from .train import train_controller

__all__ = ["Applied", "ControlDataConfig", "ControlError", "Controller", "ControllerConfig",
           "ControllerFileError", "apply_controller", "control_train_config",
           "integrated_loudness", "load_controller", "predict_settings", "rule_baseline",
           "save_controller", "train_controller"]
