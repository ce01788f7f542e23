"""CREPE's grid: the rate and window of the audio it reads, and its 360 pitch bins of 20
cents. Shared by the tracker (:mod:`ddsp_synth.pitch`) and the harmonic check
(:mod:`ddsp_synth.harmonic_check`), which reads CREPE's activations near sub-multiples of the
tracked pitch."""

CREPE_SAMPLE_RATE = 16000
CREPE_WINDOW = 1024
CREPE_BINS = 360
CREPE_CENTS_PER_BIN = 20.0
CREPE_CENTS_OFFSET = 1997.3794084376191  # cents of bin 0 (re 10 Hz)
