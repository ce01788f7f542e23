"""Black boxes: devices we can only run (pedalboard built-ins, VST3/AU plugins, command-line
effects, Python callables): their picklable recipes (:mod:`.specs`), JSON device files
(:mod:`.device_files`), the running instances (:mod:`.processors`), the worker pool that owns
them (:mod:`.pool`, :mod:`.worker`) and the stage that renders through them (:mod:`.stage`).

Imports nothing at package level: worker processes start without torch.
"""
