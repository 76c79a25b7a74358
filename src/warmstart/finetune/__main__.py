"""`python -m warmstart.finetune`: one arm in this process (see warmstart.finetune.train.main)."""

from warmstart.finetune.train import main

main()
