"""jaxmodels.projects.gpt."""
