"""Weight converters from other frameworks' checkpoints to jaxmodels parameter trees."""
