"""The fetch_model stage (KFP component `fetch_model`): resolve a model URI into safe local files with a
manifest (sources), pre-screen model.candidates by LogME (screen, transferability), and measure the start
with a linear probe of the frozen encoder against its random init (probe)."""
