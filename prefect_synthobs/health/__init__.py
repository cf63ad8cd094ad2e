"""The health store: the table contract, Parquet store, row recorder and spool."""
