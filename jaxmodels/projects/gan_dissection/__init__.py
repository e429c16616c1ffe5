"""jaxmodels.projects.gan_dissection."""
