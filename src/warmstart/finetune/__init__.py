"""The finetune stage (KFP component `finetune`): where an arm trains (launch: in-process, torchrun or a
Kubeflow Trainer TrainJob, trainjob), the training itself (train: the Trainer, successive halving over the
arm's learning rates, the outputs), the search and the plan of runs (tuning), the transfer strategies
(strategies) and the checkpoints a restart resumes from (checkpoints). `python -m warmstart.finetune`
trains one arm in this process (a torchrun worker, or a TrainJob node)."""
