"""jaxmodels.projects.vit."""
