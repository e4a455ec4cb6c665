"""The real-model suite (benchmarks/): a fast subset that keeps the pipeline honest on a real model."""
