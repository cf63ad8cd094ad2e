"""Register the prefect-synthobs block types with the Prefect API in use.

Same as ``prefect block register -m prefect_synthobs``.

    python blocks/register.py
"""

from __future__ import annotations

from prefect_synthobs.blocks import BLOCKS


def main() -> None:
    for block in BLOCKS:
        block.register_type_and_schema()
        print(f"registered block type {block.get_block_type_slug()!r}")


if __name__ == "__main__":
    main()
