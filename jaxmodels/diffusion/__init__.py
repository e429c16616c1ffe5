"""Diffusion models (system S6): schedules, U-Net, objectives, samplers, likelihood, evaluation."""
