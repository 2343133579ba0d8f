"""The DVC stages, one module each (`python -m pipeline.stages.<name>`); they talk only through the files dvc.yaml declares."""
