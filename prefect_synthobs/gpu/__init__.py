"""GPU state: the NVML edge and the sampler."""
