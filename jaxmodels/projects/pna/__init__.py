"""jaxmodels.projects.pna."""
