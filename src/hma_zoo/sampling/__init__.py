"""Inference loops: MaskGIT (``vq``) and MAR (``mar``) frame samplers, the KV-cached :class:`FrameStepper`,
``generate`` (autoregressive rollouts) and ``teacher_forced`` (one-step predictions from ground truth)."""

from hma_zoo.sampling.accelerate import compile_for_inference
from hma_zoo.sampling.frame import mar_frame, maskgit_frame, sample_factors
from hma_zoo.sampling.schedule import masked_after_step
from hma_zoo.sampling.stepper import FrameStepper, generate, teacher_forced

__all__ = ["FrameStepper", "generate", "teacher_forced", "maskgit_frame", "mar_frame", "sample_factors",
           "masked_after_step", "compile_for_inference"]
