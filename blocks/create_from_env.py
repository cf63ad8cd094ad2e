"""Create (or update) prefect-synthobs block documents from environment variables.

Reads the same variables as ``configure`` (``PREFECT_INTEGRATIONS_SYNTHOBS_*``),
the standard ``OTEL_EXPORTER_OTLP_*`` ones, ``SYNTHOBS_OTLP_TOKEN`` and, for an
``s3://`` store, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` and ``AWS_ENDPOINT_URL``. Saves a
``SynthObsConfig`` named NAME and its component blocks as NAME-store,
NAME-metrics and NAME-otlp. Secrets are stored as secret fields.

    PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=s3://bucket/synthobs \\
    OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 SYNTHOBS_OTLP_TOKEN=... \\
        python blocks/create_from_env.py prod

Then ``@observe(..., config="prod")`` or
``PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK=prod`` in a deployment's environment.
"""

from __future__ import annotations

import argparse

from prefect_synthobs.blocks import BLOCKS, config_from_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="default", help="name of the SynthObsConfig block")
    args = parser.parse_args()
    for block in BLOCKS:
        block.register_type_and_schema()
    config = config_from_environment()
    for suffix, part in (("store", config.store), ("metrics", config.metrics), ("otlp", config.tracing)):
        if part is not None:
            part.save(f"{args.name}-{suffix}", overwrite=True)
            print(f"saved {part.get_block_type_slug()}/{args.name}-{suffix}")
    config.save(args.name, overwrite=True)
    print(f"saved {config.get_block_type_slug()}/{args.name}")
    print(f"use it: @observe(..., config={args.name!r}) or PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK={args.name}")


if __name__ == "__main__":
    main()
