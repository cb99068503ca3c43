"""SourceValidator: the TFX gate on a feature-source snapshot."""
