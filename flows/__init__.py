"""Sample flows users copy or deploy (installed as ``prefect_synthobs.sample_flows``)."""
