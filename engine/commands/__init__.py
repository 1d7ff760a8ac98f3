"""What users run: the evaluation scripts, denoise.py, the built-in report and the weights export.
Each module parses its arguments and calls into `engine.train` / `engine.inference`."""
