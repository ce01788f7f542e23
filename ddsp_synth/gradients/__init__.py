"""How a gradient crosses a device: autodiff (the twin), SPSA, a neural proxy, the hybrid
(real forward, proxy backward), and gradient-free CMA-ES::

    from ddsp_synth.chains import make_chain

    chain = make_chain("peak,compressor@spsa", 16000)
    y, _ = chain(audio, params)        # real compressor forward; SPSA estimate backward

:mod:`.methods` turns a device into the stage of a method, :mod:`.wrappers` holds the stages
that run the real devices, :mod:`.spsa` the one SPSA, :mod:`.proxy` the neural proxies,
:mod:`.cma_search` CMA-ES.
"""
