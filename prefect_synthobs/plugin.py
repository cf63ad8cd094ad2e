"""synthobs' Prefect plugin (the ``prefect.plugins`` entry point): settings and ``observe_all`` in every process."""
