"""Measurement of deployed models: latency, memory and size, locally and on remote devices."""
