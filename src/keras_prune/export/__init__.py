"""Export: the compressed array format and the `.kpz` model file."""
