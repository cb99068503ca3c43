"""ShadowValidator: the shadow replay gate as a TFX component (spec, executor)."""
