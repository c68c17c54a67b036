"""The pipeline's stages, from the events that announce uploads to the results."""
