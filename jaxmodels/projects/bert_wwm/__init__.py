"""jaxmodels.projects.bert_wwm."""
