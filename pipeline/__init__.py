"""tandem pipeline: what the DAG is and where it runs (config, create_pipeline, runners, CLI)."""
