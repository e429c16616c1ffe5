"""jaxmodels.projects.vqa_counting."""
