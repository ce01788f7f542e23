"""Stages of a signal chain, one interface for all: synthesizer sources, the room, effect
twins; parameters (:mod:`.params`), the interface (:mod:`.base`), the chain (:mod:`.chain`)
and every name with the chain syntax (:mod:`.registry`).

Imports nothing at package level: black-box worker processes use :mod:`.params` without
torch.
"""
