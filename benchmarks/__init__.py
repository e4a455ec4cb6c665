"""Measurements that print numbers and ratios from one run; never pass/fail gates in CI."""
