"""How a gradient crosses a device: autodiff, SPSA, neural proxy, hybrid, and CMA-ES.

    from ddsp_synth.effects import make_chain
    from ddsp_synth.gradients import device_function

    chain = make_chain("peak,compressor", 16000)
    with chain.pool(n_workers=2) as pool:
        f = device_function(chain, "spsa", pool=pool)
        y = f(audio, params01)          # real device; backward = SPSA estimate
"""

from .cma_search import CMAConfig, cma_minimize
from .methods import GRADIENT_METHODS, METHODS, DeviceFunction, device_function, local_models
from .proxy import (Proxy, ProxyConfig, ProxyFileError, ProxyTCN, ProxyTrainConfig,
                    evaluate_proxy, find_proxy, load_proxy, save_proxy, train_proxy)
from .spsa import SPSAConfig, SPSAFunction, spsa_gradient

__all__ = [
    "CMAConfig", "cma_minimize", "GRADIENT_METHODS", "METHODS", "DeviceFunction",
    "device_function", "local_models", "Proxy", "ProxyConfig", "ProxyFileError", "ProxyTCN",
    "ProxyTrainConfig", "evaluate_proxy", "find_proxy", "load_proxy", "save_proxy",
    "train_proxy", "SPSAConfig", "SPSAFunction", "spsa_gradient",
]
