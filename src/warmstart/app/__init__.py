"""The application layer: the `warmstart` command (cli), running the pipeline on this machine through
kfp.local (local_run), talking to a KFP backend (submit: upload, run, schedule, runs) and the Kubernetes
settings of the compiled tasks (cluster). The library (the stages and the shared modules) never imports
this package."""
