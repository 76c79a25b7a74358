"""The ingest stage (KFP component `ingest`): read (readers), clean and split the data and write the data
card (dataset, card), and decide whether the run has anything new to learn against the registry's
champion (freshness)."""
