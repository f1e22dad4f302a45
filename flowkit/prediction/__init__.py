"""Prediction on new videos with a trained run: `flowkit predict VIDEO... --run RUN`.

The top layer beside the commands: it extracts flow (extraction) and scores it with a run's saved
models (training), so neither of those needs the other.
"""
