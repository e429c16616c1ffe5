"""jaxmodels.projects."""
