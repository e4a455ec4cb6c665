"""The real-model suite behind `python -m benchmarks`: cases (models + data), direct (each library's own
recipe), measure (convert, parity, `edgekit bench`), target_all (fresh-process comparisons), report."""
