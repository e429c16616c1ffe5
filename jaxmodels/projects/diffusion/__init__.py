"""jaxmodels.projects.diffusion."""
