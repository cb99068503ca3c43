"""tandem components: code that TFX executors and Beam workers run."""
